"""The whole pipeline on SQLite and PostgreSQL: demo sample scored against its truth, idempotent
re-sync, CRM changes flowing back, meeting changes and deletions, the safety rail."""

from __future__ import annotations

import json
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from agent.crm import import_and_reattribute
from agent.sync import SyncEngine
from store.export import activity_rows, entity_rows
from store.models import Activity, Contact, Skipped, Source
from store.queries import set_setting

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "agent" / "demo_data"
DEMO_NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
sys.path.insert(0, str(ROOT / "bench"))
from score_synthetic import score  # noqa: E402


def add_source(sessions, kind: str, location: Path | str, owner: str = "ana@northwind.io") -> int:
    with sessions.begin() as s:
        src = Source(kind=kind, location=str(location), owner=owner, settings={}, created_at=DEMO_NOW)
        s.add(src)
        s.flush()
        return src.id


def setup_demo(sessions, tmp_path: Path, crm: bool = True) -> tuple[int, int]:
    with sessions.begin() as s:
        set_setting(s, "internal_domains", ["northwind.io", "northwindlabs.com"])
    mbox = tmp_path / "mail.mbox"
    ics = tmp_path / "calendar.ics"
    shutil.copy(DEMO / "mail.mbox", mbox)
    shutil.copy(DEMO / "calendar.ics", ics)
    if crm:
        c = DEMO / "crm"
        import_and_reattribute(sessions, DEMO_NOW, c / "companies.csv", c / "contacts.csv", c / "deals.csv")
    return add_source(sessions, "mbox", mbox), add_source(sessions, "ics", ics)


def export(sessions, tmp_path: Path) -> tuple[Path, Path]:
    acts, ents = tmp_path / "acts.jsonl", tmp_path / "ents.jsonl"
    with sessions() as s:
        acts.write_text("".join(json.dumps(r) + "\n" for r in activity_rows(s)))
        ents.write_text("".join(json.dumps(r) + "\n" for r in entity_rows(s)))
    return acts, ents


def test_demo_sample_is_logged_attributed_and_rolled_up_exactly(sessions, tmp_path: Path) -> None:
    setup_demo(sessions, tmp_path)
    reports = SyncEngine(sessions, DEMO_NOW, workers=1).run()
    assert all(r.error is None for r in reports)
    acts, ents = export(sessions, tmp_path)
    res = score(DEMO, acts, ents)
    assert res["leaks"] == 0
    assert res["duplicates"] == 0
    assert res["log"]["recall"] == 1.0 and res["log"]["precision"] == 1.0 and res["log"]["extras"] == 0
    assert res["contacts"]["f1"] == 1.0 and res["companies"]["f1"] == 1.0
    assert res["meetings"]["exported_exactly_once"] == res["meetings"]["truth_log"] == 16
    assert res["exact_family_contacts_found"]["share"] == 1.0
    assert res["deal"]["precision"] == 1.0 and res["ambiguous"]["share_without_deal"] == 1.0
    for t in ("contact", "company", "deal"):
        for f in ("last_contact_at", "next_meeting_at"):
            assert res["entities"][t][f]["rate"] == 1.0, (t, f, res["entities"][t][f]["sample_mismatches"])


def test_second_sync_stores_nothing_new_and_parses_nothing(sessions, tmp_path: Path) -> None:
    setup_demo(sessions, tmp_path)
    SyncEngine(sessions, DEMO_NOW, workers=1).run()
    with sessions() as s:
        before = s.execute(select(func.count()).select_from(Activity)).scalar_one()
    again = SyncEngine(sessions, DEMO_NOW, workers=1).run()
    assert [r.stats.seen for r in again] == [0, 0]
    with sessions() as s:
        assert s.execute(select(func.count()).select_from(Activity)).scalar_one() == before


def test_crm_import_after_sync_logs_mail_that_was_skipped_as_personal(sessions, tmp_path: Path) -> None:
    setup_demo(sessions, tmp_path, crm=False)
    SyncEngine(sessions, DEMO_NOW, workers=1).run()
    with sessions() as s:
        assert s.execute(select(func.count()).select_from(Activity)).scalar_one() == 0
        personal = s.execute(select(func.count()).where(Skipped.reason == "personal")).scalar_one()
        assert personal > 20
    c = DEMO / "crm"
    rep = import_and_reattribute(sessions, DEMO_NOW, c / "companies.csv", c / "contacts.csv", c / "deals.csv")
    assert rep.revived >= 40
    acts, ents = export(sessions, tmp_path)
    res = score(DEMO, acts, ents)
    assert res["leaks"] == 0 and res["duplicates"] == 0
    assert res["log"]["recall"] == 1.0
    assert res["contacts"]["f1"] == 1.0


def test_new_contact_in_crm_reattributes_existing_activities(sessions, tmp_path: Path) -> None:
    setup_demo(sessions, tmp_path)
    SyncEngine(sessions, DEMO_NOW, workers=1).run()
    with sessions() as s:
        suggested = s.execute(select(Contact).where(Contact.origin == "suggested")).scalars().all()
        assert suggested, "the sample has an unknown person at a known company"
        target = suggested[0]
        email, company = target.email, target.company_id
        from store.models import Company

        co_crm = s.get(Company, company).crm_id
    contacts = tmp_path / "more_contacts.csv"
    contacts.write_text(
        "id,first_name,last_name,email,other_emails,company_id,title,phone\n"
        f"cNEW,New,Person,{email},,{co_crm},Engineer,\n"
    )
    import_and_reattribute(sessions, DEMO_NOW, contacts=contacts)
    with sessions() as s:
        c = s.execute(select(Contact).where(Contact.crm_id == "cNEW")).scalar_one()
        assert c.id == target.id and c.origin == "crm"  # the suggestion was adopted, not duplicated
        assert c.activity_count >= 1 and c.last_contact_at is not None


def test_moved_and_deleted_meetings_follow_the_calendar(sessions, tmp_path: Path) -> None:
    _, ics_id = setup_demo(sessions, tmp_path)
    SyncEngine(sessions, DEMO_NOW, workers=1).run()
    ics = tmp_path / "calendar.ics"
    text = ics.read_text()
    with sessions() as s:
        n_meetings = s.execute(select(func.count()).where(Activity.kind == "meeting")).scalar_one()
    # drop the first single (non-recurring) external event from the file
    blocks = text.split("BEGIN:VEVENT")
    victim = next(
        i
        for i, b in enumerate(blocks[1:], 1)
        if "RRULE" not in b
        and "RECURRENCE-ID" not in b
        and "STATUS:CANCELLED" not in b
        and "DECLINED" not in b
        and "ATTENDEE" in b
    )
    uid = next(line.split(":", 1)[1].strip() for line in blocks[victim].splitlines() if line.startswith("UID:"))
    ics.write_text("BEGIN:VEVENT".join(blocks[:victim] + blocks[victim + 1 :]))
    reports = SyncEngine(sessions, DEMO_NOW, workers=1).run([ics_id])
    assert reports[0].error is None and reports[0].stats.removed >= 1
    with sessions() as s:
        assert s.execute(select(func.count()).where(Activity.ical_uid == uid)).scalar_one() == 0
        assert s.execute(select(func.count()).where(Activity.kind == "meeting")).scalar_one() < n_meetings


def test_a_calendar_that_suddenly_lists_nothing_wipes_nothing(sessions, tmp_path: Path) -> None:
    _, ics_id = setup_demo(sessions, tmp_path)
    SyncEngine(sessions, DEMO_NOW, workers=1).run()
    with sessions() as s:
        n = s.execute(select(func.count()).where(Activity.kind == "meeting")).scalar_one()
    (tmp_path / "calendar.ics").write_text("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nEND:VCALENDAR\r\n")
    rep = SyncEngine(sessions, DEMO_NOW, workers=1).run([ics_id])[0]
    assert rep.error and "nothing was removed" in rep.error
    with sessions() as s:
        assert s.execute(select(func.count()).where(Activity.kind == "meeting")).scalar_one() == n
        assert s.get(Source, ics_id).status == "error"
    with sessions.begin() as s:  # what `inkless source confirm-empty` does
        src = s.get(Source, ics_id)
        src.settings = {**src.settings, "confirm_empty": True}
    rep = SyncEngine(sessions, DEMO_NOW, workers=1).run([ics_id])[0]
    assert rep.error is None and rep.stats.removed == n
    with sessions() as s:
        assert s.execute(select(func.count()).where(Activity.kind == "meeting")).scalar_one() == 0
        assert "confirm_empty" not in s.get(Source, ics_id).settings


def test_one_broken_source_does_not_stop_the_others(sessions, tmp_path: Path) -> None:
    setup_demo(sessions, tmp_path)
    bad = add_source(sessions, "maildir", tmp_path / "does-not-exist")
    reports = {r.source_id: r for r in SyncEngine(sessions, DEMO_NOW, workers=1).run()}
    assert "not found" in (reports[bad].error or "")
    assert sum(r.stats.logged for r in reports.values()) > 40


@pytest.mark.parametrize("workers", [2])
def test_parallel_parsing_gives_the_same_export(sessions, tmp_path: Path, workers: int) -> None:
    setup_demo(sessions, tmp_path)
    SyncEngine(sessions, DEMO_NOW, workers=workers).run()
    acts, _ = export(sessions, tmp_path)
    res = score(DEMO, acts, None)
    assert res["log"]["recall"] == 1.0 and res["duplicates"] == 0
