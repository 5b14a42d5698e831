"""The command line as a user types it (real subprocesses), including its one-line errors."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

DEMO = ROOT / "agent" / "demo_data"
NOW = {"INKLESS_NOW": "2026-11-20T12:00:00Z"}


def import_demo_crm(db: str, env: dict[str, str]) -> None:
    crm = DEMO / "crm"
    files = [(f"--{n}", str(crm / f"{n}.csv")) for n in ("companies", "contacts", "deals")]
    run_cli("crm", "import", *(x for pair in files for x in pair), db=db, env=env)


@pytest.fixture
def loaded(db_url: str, tmp_path: Path) -> str:
    shutil.copy(DEMO / "mail.mbox", tmp_path / "mail.mbox")
    shutil.copy(DEMO / "calendar.ics", tmp_path / "calendar.ics")
    run_cli("init", "--internal-domain", "northwind.io", db=db_url, env=NOW)
    run_cli("init", "--internal-domain", "northwindlabs.com", db=db_url, env=NOW)
    import_demo_crm(db_url, NOW)
    run_cli("source", "add", "mbox", str(tmp_path / "mail.mbox"), "--owner", "ana@northwind.io", db=db_url, env=NOW)
    run_cli("source", "add", "ics", str(tmp_path / "calendar.ics"), "--owner", "Ana@Northwind.io", db=db_url, env=NOW)
    return db_url


def test_tour_init_import_add_sync_timeline_export(loaded: str, tmp_path: Path) -> None:
    db = loaded
    first = run_cli("sync", db=db, env=NOW)
    assert "31 logged" in first.stdout and "16 logged" in first.stdout
    second = run_cli("sync", db=db, env=NOW)
    assert second.stdout.count("0 new items") == 2
    lst = json.loads(run_cli("source", "list", "--json", db=db, env=NOW).stdout)
    assert [s["status"] for s in lst] == ["ok", "ok"] and lst[1]["owner"] == "ana@northwind.io"

    view = json.loads(run_cli("timeline", "company", "bluefern", "--json", db=db, env=NOW).stdout)
    assert view["entity"]["name"].startswith("Bluefern")
    assert view["entity"]["next_meeting_at"] == "2026-11-26T08:30:00Z"
    upcoming = [i for i in view["items"] if i["upcoming"]]
    assert upcoming and all(i["kind"] == "meeting" for i in upcoming)
    assert view["items"][: len(upcoming)] == upcoming  # upcoming on top, soonest first
    past = [i["when"] for i in view["items"] if not i["upcoming"]]
    assert past == sorted(past, reverse=True)

    text = run_cli("timeline", "contact", "olly.pennington@gmail.com", db=db, env=NOW).stdout
    assert "Oliver" in text and "next meeting 2026-11-26" in text

    acts = tmp_path / "acts.jsonl"
    run_cli("export", "activities", "--format", "jsonl", "--out", str(acts), db=db, env=NOW)
    rows = [json.loads(line) for line in acts.read_text().splitlines()]
    assert len(rows) == 47
    keys = {
        "kind",
        "message_ids",
        "ical_uid",
        "recurrence_id",
        "occurred_at",
        "subject",
        "contacts",
        "companies",
        "deal",
        "status",
        "confidence",
        "evidence",
    }
    assert all(set(r) == keys for r in rows)
    assert all(0 <= r["confidence"] <= 1 and r["evidence"] for r in rows)
    ents = tmp_path / "ents.csv"
    run_cli("export", "entities", "--format", "csv", "--out", str(ents), db=db, env=NOW)
    with open(ents, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert {
        "type",
        "crm_id",
        "name",
        "last_contact_at",
        "last_inbound_at",
        "last_outbound_at",
        "next_meeting_at",
        "activity_count",
    } <= set(table[0])

    skipped = json.loads(run_cli("skipped", "--json", db=db, env=NOW).stdout)
    assert {
        "internal",
        "bulk",
        "automated",
        "personal",
        "invite-email",
        "meeting-cancelled",
        "meeting-declined",
    } <= set(skipped["counts"])
    first_id = 1
    explained = run_cli("explain", str(first_id), db=db, env=NOW).stdout
    assert "confidence" in explained


def test_bad_crm_file_is_reported_with_file_line_reason_and_nothing_changes(loaded: str, tmp_path: Path) -> None:
    bad = tmp_path / "contacts.csv"
    bad.write_text(
        "id,first_name,last_name,email,other_emails,company_id,title,phone\n"
        "x1,Ok,Person,ok.person@bluefern.io,,co2,,\n"
        "x2,Bad,Mail,not-an-address,,co2,,\n"
    )
    proc = run_cli("crm", "import", "--contacts", str(bad), db=loaded, env=NOW, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "contacts.csv:3" in proc.stderr
    found = run_cli("timeline", "contact", "ok.person@bluefern.io", db=loaded, env=NOW, check=False)
    assert "Ok Person" not in found.stdout  # all or nothing: the good row was not imported either


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("source", "add", "maildir", "/no/such/folder", "--owner", "a@b.io"), 1, "not found"),
        (("source", "add", "maildir", "/tmp", "--owner", "not an address"), 2, "--owner"),
        (("source", "add", "pop3", "/tmp", "--owner", "a@b.io"), 2, "unknown source kind"),
        (("timeline", "company", "zzzzqqqq-nothing"), 3, "no company matches"),
        (("crm", "import", "--deals", "/no/such.csv"), 2, "no such file"),
        (("explain", "999999"), 3, "no activity"),
    ],
)
def test_errors_are_one_clear_line(loaded: str, args: tuple[str, ...], code: int, needle: str) -> None:
    proc = run_cli(*args, db=loaded, env=NOW, check=False)
    assert proc.returncode == code, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    proc = run_cli("source", "list", db="postgresql://nobody@127.0.0.1:1/none", check=False)
    assert proc.returncode == 1 and "cannot open the database" in proc.stderr and "Traceback" not in proc.stderr


def test_hostile_subject_is_printed_as_text(db_url: str, tmp_path: Path) -> None:
    mbox = tmp_path / "m.mbox"
    mbox.write_bytes(
        b"From x Thu Oct  1 09:00:00 2026\nFrom: Oliver <olly.pennington@gmail.com>\nTo: ana@northwind.io\n"
        b"Subject: [bold red]PWNED[/bold red] <script>alert(1)</script>\nDate: Thu, 1 Oct 2026 09:00:00 +0000\n"
        b"Message-ID: <hostile@x>\n\nhi\n"
    )
    run_cli("init", "--internal-domain", "northwind.io", db=db_url, env=NOW)
    crm = DEMO / "crm"
    run_cli(
        "crm",
        "import",
        "--companies",
        str(crm / "companies.csv"),
        "--contacts",
        str(crm / "contacts.csv"),
        db=db_url,
        env=NOW,
    )
    run_cli("source", "add", "mbox", str(mbox), "--owner", "ana@northwind.io", db=db_url, env=NOW)
    run_cli("sync", db=db_url, env=NOW)
    out = run_cli("timeline", "contact", "Oliver Pennington", db=db_url, env=NOW).stdout
    assert "[bold red]PWNED[/bold red]" in out and "<script>" in out
