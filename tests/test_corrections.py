"""Corrections that teach: a scope, a rule, applied at once and to future mail, never overwritten, undone.

Runs the real pipeline (demo CRM + mbox through the sync engine) on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from agent.corrections import ignore, reassign, rules_view, undo
from agent.crm import import_and_reattribute
from agent.sync import SyncEngine
from providers.errors import BadInput
from store.export import activity_rows
from store.models import Activity, AuditEntry, Deal, Skipped
from tests.test_pipeline import DEMO, DEMO_NOW, setup_demo

FLEET = "Halvorsen Marine – Fleet Telemetry Rollout"
CREW = "Halvorsen Marine – Crew Portal Pilot"
LATER = DEMO_NOW + timedelta(hours=1)


def _sync(sessions, now=DEMO_NOW) -> None:
    SyncEngine(sessions, now, workers=1).run()


def _rows(sessions) -> list[dict]:
    with sessions() as s:
        return list(activity_rows(s))


def _deal_id(sessions, name: str) -> int:
    with sessions() as s:
        return s.execute(select(Deal.id).where(Deal.name == name)).scalar_one()


def _fleet_thread(sessions) -> list[int]:
    with sessions() as s:
        first = s.execute(
            select(Activity).where(Activity.subject == "Fleet telemetry rollout - next steps")
        ).scalar_one()
        return list(s.execute(select(Activity.id).where(Activity.thread_key == first.thread_key)).scalars())


def _append(mbox: Path, raw: str) -> None:
    with open(mbox, "ab") as fh:
        fh.write(("From x Fri Nov 20 09:00:00 2026\n" + raw.strip() + "\n\n").encode())


def _deal_of(row: dict) -> str | None:
    return row["deal"]["name"] if row["deal"] else None


@pytest.fixture
def demo(sessions, tmp_path: Path):
    setup_demo(sessions, tmp_path)
    _sync(sessions)
    return sessions


def test_reassign_thread_moves_every_message_and_future_replies_and_undo_restores(demo, tmp_path: Path) -> None:
    sessions = demo
    thread = _fleet_thread(sessions)
    assert len(thread) >= 4
    before = {r["subject"] + r["occurred_at"]: r for r in _rows(sessions)}
    assert {_deal_of(r) for r in before.values() if "Fleet telemetry" in r["subject"]} == {FLEET}
    crew = _deal_id(sessions, CREW)
    fleet = _deal_id(sessions, FLEET)
    with sessions() as s:
        crew_count_before = s.get(Deal, crew).activity_count
        fleet_last_before = s.get(Deal, fleet).last_contact_at

    with sessions.begin() as s:
        corr = reassign(s, thread[0], "deal", crew, "thread", "ana", LATER)
        assert corr.affected == len(thread) and corr.rule_id is not None
        cid = corr.id
    rows = [r for r in _rows(sessions) if "Fleet telemetry" in r["subject"]]
    assert {_deal_of(r) for r in rows} == {CREW}
    assert all(r["status"] == "corrected" and r["confidence"] == 1.0 for r in rows)
    assert all(any("the whole thread" in e and "ana" in e for e in r["evidence"]) for r in rows)
    with sessions() as s:  # roll-ups recomputed at once
        assert s.get(Deal, crew).activity_count == crew_count_before + len(thread)
        assert s.get(Deal, fleet).last_contact_at != fleet_last_before
        assert [a.action for a in s.execute(select(AuditEntry)).scalars()][-1] == "reassign"

    # a resync and a CRM re-import never overwrite it
    c = DEMO / "crm"
    import_and_reattribute(sessions, LATER, c / "companies.csv", c / "contacts.csv", c / "deals.csv")
    _sync(sessions, LATER)
    assert {_deal_of(r) for r in _rows(sessions) if "Fleet telemetry" in r["subject"]} == {CREW}

    # a future reply in the thread follows the rule
    mbox = tmp_path / "mail.mbox"
    _append(
        mbox,
        """
From: Mats Eriksen <mats.eriksen@halvorsen-marine.com>
To: Ana Ruiz <ana@northwind.io>
Subject: Re: Fleet telemetry rollout - next steps
Date: Fri, 20 Nov 2026 10:00:00 +0000
Message-ID: <future-reply-1@halvorsen-marine.com>
In-Reply-To: <826b1fb1.aa255ea3bb1d@halvorsenmarine.no>
References: <826b1fb1.aa255ea3bb1d@halvorsenmarine.no>

Fleet telemetry rollout: the telemetry units arrive Monday.
""",
    )
    _sync(sessions, LATER)
    reply = next(r for r in _rows(sessions) if "<future-reply-1@halvorsen-marine.com>" in r["message_ids"])
    assert _deal_of(reply) == CREW and reply["status"] == "corrected"
    assert any(f"rule #{corr.rule_id}" in e for e in reply["evidence"])
    with sessions() as s:
        assert rules_view(s)[0]["items"] == len(thread) + 1

    # undo: the thread as it was, the rule retired, the later reply handed back to the matcher
    with sessions.begin() as s:
        undo(s, "ana", LATER, cid)
    after = [r for r in _rows(sessions) if "Fleet telemetry" in r["subject"]]
    for r in after:
        if "<future-reply-1@halvorsen-marine.com>" in r["message_ids"]:
            assert r["status"] == "auto" and _deal_of(r) == FLEET
        else:
            old = before[r["subject"] + r["occurred_at"]]
            assert (_deal_of(r), r["status"], r["confidence"], r["evidence"]) == (
                _deal_of(old),
                old["status"],
                old["confidence"],
                old["evidence"],
            )
    with sessions() as s:
        assert rules_view(s) == [] and rules_view(s, include_undone=True)[0]["undone_at"] is not None
        # the reply went back to the deal the matcher finds for it: the thread's own
        assert s.get(Deal, fleet).last_contact_at.isoformat().startswith("2026-11-20T10:00")
        assert s.get(Deal, crew).activity_count == crew_count_before
    with sessions.begin() as s, pytest.raises(BadInput, match="already undone"):
        undo(s, "ana", LATER, cid)


def test_ignore_sender_hides_its_mail_now_skips_it_later_and_undo_brings_it_back(demo, tmp_path: Path) -> None:
    sessions = demo
    sender = "rosa.delgado@lumenorchard.es"
    mine = [r for r in _rows(sessions) if any(c["email"] == sender for c in r["contacts"])]
    assert mine
    with sessions.begin() as s:
        corr = ignore(s, "ana", LATER, scope="sender", address=sender.upper())
        cid = corr.id
    rows = _rows(sessions)
    gone = {r["occurred_at"] for r in mine} - {r["occurred_at"] for r in rows}
    assert gone, "mail from only the ignored sender leaves the export"
    with sessions() as s:
        ignored = s.execute(select(Activity).where(Activity.status == "ignored")).scalars().all()
        assert ignored and all(a.snippet is None for a in ignored)  # its excerpt is erased
    _append(
        tmp_path / "mail.mbox",
        f"""
From: Rosa Delgado <{sender}>
To: Ana Ruiz <ana@northwind.io>
Subject: Weekend plans
Date: Fri, 20 Nov 2026 10:30:00 +0000
Message-ID: <ignored-later@lumenorchard.es>

See you Saturday.
""",
    )
    _sync(sessions, LATER)
    with sessions() as s:
        skip = s.execute(select(Skipped).where(Skipped.reason == "ignored")).scalar_one()
        assert f"rule #{corr.rule_id}" in skip.detail
    assert not any("<ignored-later@lumenorchard.es>" in r["message_ids"] for r in _rows(sessions))
    with sessions.begin() as s:
        undo(s, "ana", LATER, cid)
    back = {r["occurred_at"] for r in _rows(sessions)}
    assert {r["occurred_at"] for r in mine} <= back


def test_domain_to_company_teaches_the_matcher_and_reaches_new_addresses(demo, tmp_path: Path) -> None:
    sessions = demo
    rows = _rows(sessions)
    falk = [r for r in rows if any(c.get("domain") == "falkenried-freight.de" for c in r["companies"])]
    assert falk
    with sessions() as s:
        target = s.execute(select(Activity.id).where(Activity.subject == falk[0]["subject"])).scalars().first()
        lumen = s.execute(select(Deal.company_id).where(Deal.name.like("Lumen Orchard%"))).scalar_one()
    with sessions.begin() as s:
        corr = reassign(s, target, "company", lumen, "domain", "ops", LATER, address="k.vogel@falkenried-freight.de")
        cid = corr.id
    rows = _rows(sessions)
    for r in rows:
        if r["subject"] in {f["subject"] for f in falk}:
            assert [c["name"] for c in r["companies"]] == ["Lumen Orchard Foods S.L."]
    # a new address at that domain is linked to the taught company
    _append(
        tmp_path / "mail.mbox",
        """
From: Jonas Weber <j.weber@falkenried-freight.de>
To: Ana Ruiz <ana@northwind.io>
Subject: Pallet sensors for the Hamburg depot
Date: Fri, 20 Nov 2026 10:40:00 +0000
Message-ID: <new-address@falkenried-freight.de>

Could you send the sensor list?
""",
    )
    _sync(sessions, LATER)
    new = next(r for r in _rows(sessions) if "<new-address@falkenried-freight.de>" in r["message_ids"])
    assert [c["name"] for c in new["companies"]] == ["Lumen Orchard Foods S.L."]
    with sessions.begin() as s:
        undo(s, "ops", LATER, cid)
    new = next(r for r in _rows(sessions) if "<new-address@falkenried-freight.de>" in r["message_ids"])
    assert [c["name"] for c in new["companies"]] == ["Falkenried Freight GmbH"]


def test_reassign_contact_for_one_address_and_item(demo) -> None:
    sessions = demo
    rows = _rows(sessions)
    row = next(r for r in rows if any(c["email"] == "olly.pennington@gmail.com" for c in r["contacts"]) or any(
        c["email"] == "oliver.pennington@bluefern.co.uk" for c in r["contacts"]))  # fmt: skip
    with sessions() as s:
        aid = s.execute(select(Activity.id).where(Activity.subject == row["subject"])).scalars().first()
        from store.models import Contact

        other = s.execute(select(Contact).where(Contact.email == "grace.whitfield@bluefern.co.uk")).scalar_one()
        addr = row["contacts"][0]["email"]
    with sessions.begin() as s:
        reassign(s, aid, "contact", other.id, "item", "ana", LATER, address=addr)
    with sessions() as s:
        a = s.get(Activity, aid)
        out = next(r for r in activity_rows(s) if r["occurred_at"] == row["occurred_at"] and r["subject"] == a.subject)
    assert "grace.whitfield@bluefern.co.uk" in [c["email"] for c in out["contacts"]]
    assert addr not in [c["email"] for c in out["contacts"]]


def test_bad_corrections_are_one_line_errors(demo) -> None:
    sessions = demo
    thread = _fleet_thread(sessions)
    with sessions.begin() as s, pytest.raises(BadInput, match="only be reassigned to a company"):
        reassign(s, thread[0], "deal", _deal_id(sessions, CREW), "domain", "ana", LATER)
    with sessions.begin() as s, pytest.raises(BadInput, match="no deal 999999"):
        reassign(s, thread[0], "deal", 999999, "item", "ana", LATER)
    with sessions.begin() as s, pytest.raises(BadInput, match="team's own domains"):
        ignore(s, "ana", LATER, scope="domain", domain="northwind.io")


def test_undo_refuses_while_a_later_correction_changed_the_same_items(demo) -> None:
    sessions = demo
    thread = _fleet_thread(sessions)
    crew, fleet = _deal_id(sessions, CREW), _deal_id(sessions, FLEET)
    with sessions.begin() as s:
        first = reassign(s, thread[0], "deal", crew, "thread", "ana", LATER).id
    with sessions.begin() as s:
        second = reassign(s, thread[0], "deal", fleet, "item", "ana", LATER).id
    with sessions.begin() as s, pytest.raises(BadInput, match=f"correction {second} changed the same items"):
        undo(s, "ana", LATER, first)
    with sessions.begin() as s:
        undo(s, "ana", LATER)  # the latest: the item correction
        undo(s, "ana", LATER, first)
    assert {_deal_of(r) for r in _rows(sessions) if "Fleet telemetry" in r["subject"]} == {FLEET}
