"""Pins the anchor products' rule in bench/baseline.py on a tiny hand-made corpus."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

BASELINE_PATH = Path(__file__).resolve().parents[1] / "bench" / "baseline.py"


def _load_baseline() -> Any:
    spec = importlib.util.spec_from_file_location("inkless_bench_baseline", BASELINE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


baseline = _load_baseline()

NOW = "2026-06-10T12:00:00Z"

COMPANIES = """id,name,domains
co1,Acme Corp,acme.com;acme.eu
co2,Globex,globex.com
"""

# Jane's primary address is stored in mixed case: matching must ignore case.
CONTACTS = """id,first_name,last_name,email,other_emails,company_id,title,phone
c1,Jane,Doe,Jane.Doe@Acme.com,jd.private@gmail.com,co1,CTO,
c2,Bob,Stone,bob@globex.com,,co2,Buyer,
c3,Carl,News,carl@acme.com,,co1,Marketing,
"""

# Jane: d1 open (old), d2 open (newer), d3 won (newest) -> d2. Bob: d4 open, older than d2.
DEALS = """id,name,company_id,stage,status,amount,created_at,close_date,owner_email,contact_ids
d1,Acme Pilot,co1,Proposal,open,1000,2025-01-01T00:00:00Z,2026-09-01,ana@northwind.io,c1
d2,Acme Rollout,co1,Negotiation,open,5000,2026-01-15T00:00:00Z,2026-10-01,ana@northwind.io,c1;c3x
d3,Acme Renewal,co1,Closed Won,won,3000,2026-03-01T00:00:00Z,2026-04-01,ana@northwind.io,c1
d4,Globex Expansion,co2,Discovery,open,2000,2025-06-01T00:00:00Z,2026-12-01,ben@northwind.io,c2
"""


def _mail(mid: str, sender: str, to: str, subject: str, *, extra: str = "", day: int = 1) -> str:
    return (
        f"From: {sender}\r\nTo: {to}\r\n{extra}Subject: {subject}\r\n"
        f"Date: Mon, {day:02d} Jun 2026 10:00:00 +0000\r\nMessage-ID: <{mid}>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello.\r\n"
    )


def _ics(*events: str) -> str:
    return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n" + "".join(events) + "END:VCALENDAR\r\n"


def _event(uid: str, organizer: str, attendees: list[str], start: str, summary: str, rrule: str = "") -> str:
    lines = [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20260501T000000Z",
        f"DTSTART:{start}",
        "DURATION:PT30M",
        f"SUMMARY:{summary}",
        f"ORGANIZER:mailto:{organizer}",
        *(f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:{a}" for a in attendees),
        *([f"RRULE:{rrule}"] if rrule else []),
        "END:VEVENT",
    ]
    return "".join(line + "\r\n" for line in lines)


def _put(maildir: Path, folder: str, name: str, raw: str) -> None:
    base = maildir / folder if folder else maildir
    for sub in ("cur", "new", "tmp"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "cur" / f"{name}:2,S").write_text(raw, encoding="utf-8")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "crm").mkdir(parents=True)
    (root / "crm" / "companies.csv").write_text(COMPANIES, encoding="utf-8")
    (root / "crm" / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
    (root / "crm" / "deals.csv").write_text(DEALS, encoding="utf-8")
    meta = {
        "now": NOW,
        "internal_domains": ["northwind.io"],
        "mailboxes": [
            {"owner": "ana@northwind.io", "name": "Ana", "maildir": "mail/ana", "calendar": "calendar/ana.ics"},
            {"owner": "ben@northwind.io", "name": "Ben", "maildir": "mail/ben", "calendar": "calendar/ben.ics"},
        ],
    }
    (root / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    ana, ben = root / "mail" / "ana", root / "mail" / "ben"
    # the same email in both reps' inboxes
    shared = _mail("shared@acme.com", "Jane Doe <jane.doe@acme.com>", "ana@northwind.io, ben@northwind.io", "Rollout")
    _put(ana, "", "1001.M1.host", shared)
    _put(ben, "", "2001.M1.host", shared)
    _put(ana, ".Sent", "1002.M1.host", _mail("upper@northwind.io", "ana@northwind.io", "JANE.DOE@ACME.COM", "Re: x"))
    _put(ana, "", "1003.M1.host", _mail("plus@acme.com", "jane.doe+sales@acme.com", "ana@northwind.io", "Plus"))
    _put(ana, "", "1004.M1.host", _mail("other@gmail.com", "jd.private@gmail.com", "ana@northwind.io", "Private"))
    _put(ana, "", "1005.M1.host", _mail("internal@northwind.io", "ben@northwind.io", "ana@northwind.io", "Lunch"))
    _put(ana, "", "1006.M1.host", _mail("stranger@acme.com", "pat@acme.com", "ana@northwind.io", "Hi"))
    newsletter = _mail(
        "news@acme.com",
        "Carl News <carl@acme.com>",
        "ana@northwind.io",
        "Acme monthly",
        extra="List-Unsubscribe: <mailto:unsub@acme.com>\r\nPrecedence: bulk\r\n",
    )
    _put(ana, "", "1007.M1.host", newsletter)
    both = _mail("two@globex.com", "bob@globex.com", "ana@northwind.io, jane.doe@acme.com", "Both")
    _put(ana, "", "1008.M1.host", both)
    # Ben Bcc'd Bob: only Ben's sent copy shows it; Ana's copy (read first) matches nobody
    bcc = "ben@northwind.io", "ana@northwind.io", "FYI"
    _put(ana, "", "1009.M1.host", _mail("bcc@northwind.io", *bcc))
    _put(ben, ".Sent", "2002.M1.host", _mail("bcc@northwind.io", *bcc, extra="Bcc: bob@globex.com\r\n"))

    (root / "calendar").mkdir()
    call = _event("call-1", "ana@northwind.io", ["bob@globex.com", "ben@northwind.io"], "20260605T140000Z", "Call")
    weekly = _event(
        "weekly-1", "jane.doe@acme.com", ["ana@northwind.io"], "20260601T090000Z", "Weekly", rrule="FREQ=WEEKLY;COUNT=2"
    )
    team = _event("team-1", "ana@northwind.io", ["ben@northwind.io"], "20260602T090000Z", "Team")
    (root / "calendar" / "ana.ics").write_text(_ics(call, weekly, team), encoding="utf-8")
    (root / "calendar" / "ben.ics").write_text(_ics(call, team), encoding="utf-8")
    return root


def _export(corpus: Path) -> list[dict[str, Any]]:
    out = corpus.parent / "baseline.jsonl"
    count = baseline.baseline_export(corpus, out)
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert count == len(lines)
    return lines


def _by_key(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for line in lines:
        key = line["message_ids"][0] if line["kind"] == "email" else f"{line['ical_uid']}|{line['recurrence_id']}"
        assert key not in out, f"{key} exported twice"
        out[key] = line
    return out


def _contacts(line: dict[str, Any]) -> list[str]:
    return [c["crm_id"] for c in line["contacts"]]


def test_baseline_logs_exactly_the_items_with_an_exact_crm_address(corpus: Path) -> None:
    assert set(_by_key(_export(corpus))) == {
        "<shared@acme.com>",
        "<upper@northwind.io>",
        "<news@acme.com>",
        "<two@globex.com>",
        "<bcc@northwind.io>",
        "call-1|None",
        "weekly-1|2026-06-01T09:00:00Z",
        "weekly-1|2026-06-08T09:00:00Z",
    }


def test_baseline_export_line_follows_the_export_contract(corpus: Path) -> None:
    line = _by_key(_export(corpus))["<shared@acme.com>"]
    assert line == {
        "kind": "email",
        "message_ids": ["<shared@acme.com>"],
        "ical_uid": None,
        "recurrence_id": None,
        "occurred_at": "2026-06-01T10:00:00Z",
        "subject": "Rollout",
        "contacts": [{"crm_id": "c1", "email": "jane.doe@acme.com", "name": "Jane Doe"}],
        "companies": [{"crm_id": "co1", "domain": "acme.com", "name": "Acme Corp"}],
        "deal": {"crm_id": "d2", "name": "Acme Rollout"},
        "status": "auto",
        "confidence": 1.0,
        "evidence": ["exact email"],
    }


def test_baseline_ignores_case_but_not_plus_tags_or_other_emails(corpus: Path) -> None:
    lines = _by_key(_export(corpus))
    assert _contacts(lines["<upper@northwind.io>"]) == ["c1"]
    assert "<plus@acme.com>" not in lines
    assert "<other@gmail.com>" not in lines


def test_baseline_skips_internal_mail_and_unknown_people_at_known_companies(corpus: Path) -> None:
    lines = _by_key(_export(corpus))
    assert "<internal@northwind.io>" not in lines
    assert "<stranger@acme.com>" not in lines
    assert "team-1|None" not in lines


def test_baseline_picks_the_newest_open_deal_of_the_matched_contacts(corpus: Path) -> None:
    lines = _by_key(_export(corpus))
    # d3 is newer but won; d1 is open but older than d2
    assert lines["<shared@acme.com>"]["deal"] == {"crm_id": "d2", "name": "Acme Rollout"}
    # Jane's d2 (2026-01) is newer than Bob's d4 (2025-06)
    both = lines["<two@globex.com>"]
    assert _contacts(both) == ["c2", "c1"]
    assert [c["crm_id"] for c in both["companies"]] == ["co2", "co1"]
    assert both["deal"]["crm_id"] == "d2"
    assert lines["call-1|None"]["deal"]["crm_id"] == "d4"


def test_baseline_logs_a_newsletter_from_a_known_contact_without_a_deal(corpus: Path) -> None:
    line = _by_key(_export(corpus))["<news@acme.com>"]
    assert _contacts(line) == ["c3"]
    assert [c["crm_id"] for c in line["companies"]] == ["co1"]
    assert line["deal"] is None  # "c3x" on d2 is not c3: ids are not normalised either


def test_baseline_logs_an_item_seen_in_two_mailboxes_once(corpus: Path) -> None:
    lines = _export(corpus)
    assert sum(1 for ln in lines if ln["message_ids"] == ["<shared@acme.com>"]) == 1
    assert sum(1 for ln in lines if ln["ical_uid"] == "call-1") == 1


def test_baseline_uses_the_copy_that_shows_the_bcc(corpus: Path) -> None:
    line = _by_key(_export(corpus))["<bcc@northwind.io>"]
    assert _contacts(line) == ["c2"]
    assert line["deal"]["crm_id"] == "d4"


def test_baseline_matches_meeting_organizer_and_attendees(corpus: Path) -> None:
    lines = _by_key(_export(corpus))
    assert _contacts(lines["call-1|None"]) == ["c2"]
    first = lines["weekly-1|2026-06-01T09:00:00Z"]
    assert (first["kind"], first["subject"], first["occurred_at"]) == ("meeting", "Weekly", "2026-06-01T09:00:00Z")
    assert first["message_ids"] == []
    assert _contacts(first) == ["c1"]


def test_main_prints_baseline_inkless_and_difference(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = [
        {"kind": "email", "message_id": "<shared@acme.com>", "log": True, "contacts": ["c1"], "companies": ["co1"]},
        {"kind": "email", "message_id": "<news@acme.com>", "log": False, "family": ["newsletter"]},
    ]
    (corpus / "truth").mkdir()
    (corpus / "truth" / "activities.jsonl").write_text("".join(json.dumps(t) + "\n" for t in truth))
    inkless = corpus.parent / "inkless.jsonl"
    inkless_line = {"kind": "email", "message_ids": ["<shared@acme.com>"], "contacts": [{"crm_id": "c1"}]}
    inkless.write_text(json.dumps(inkless_line) + "\n")

    baseline.main([str(corpus), "--inkless-activities", str(inkless), "--json"])
    metrics = {m["metric"]: m for m in json.loads(capsys.readouterr().out)["metrics"]}
    assert metrics["privacy leaks"] == {
        "metric": "privacy leaks",
        "unit": "count",
        "baseline": 1.0,
        "inkless": 0.0,
        "difference": -1.0,
    }
    assert metrics["log precision"]["baseline"] == pytest.approx(0.5)
    assert metrics["log precision"]["difference"] == pytest.approx(0.5)
    assert metrics["deal precision"]["inkless"] is None
    assert metrics["deal precision"]["difference"] is None

    baseline.main([str(corpus), "--inkless-activities", str(inkless)])
    text = capsys.readouterr().out
    assert "privacy leaks" in text
    assert "-50.0 pp" not in text and "+50.0 pp" in text
