"""`inkless export activities --changed`: what a correction, a review decision or a CRM change re-linked since
the last export, and only that, so the team's CRM can be brought up to date without a full re-import."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from tests.conftest import run_cli
from tests.test_cli import import_demo_crm, loaded  # noqa: F401  (fixture)

# the clock moves on between steps: a change made at the instant of an export comes again in the next one
T = {h: {"INKLESS_NOW": f"2026-11-20T{h}:00:00Z"} for h in range(12, 21)}


def _export(db: str, tmp_path: Path, *opts: str, at: int | str, what: str = "activities") -> list[dict]:
    out = tmp_path / f"{what}.jsonl"
    env = T[at] if isinstance(at, int) else {"INKLESS_NOW": at}
    run_cli("export", what, "--out", str(out), *opts, db=db, env=env)
    return [json.loads(x) for x in out.read_text().splitlines()]


def _move_fleet_thread(db: str) -> None:
    """Move the demo's "Fleet telemetry rollout - next steps" thread (4 messages) to the Crew Portal Pilot deal."""
    view = json.loads(
        run_cli("timeline", "deal", "Fleet Telemetry Rollout", "--json", "--limit", "100", db=db, env=T[14]).stdout
    )
    aid = next(i["id"] for i in view["items"] if i["subject"] == "Fleet telemetry rollout - next steps")
    run_cli("reassign", str(aid), "--deal", "crew portal pilot", "--scope", "thread", db=db, env=T[14])


def test_only_what_changed_since_the_last_export_comes_out(loaded: str, tmp_path: Path) -> None:  # noqa: F811
    db = loaded
    run_cli("sync", db=db, env=T[12])
    everything = _export(db, tmp_path, at=13)
    assert len(everything) > 40 and all("updated_at" not in r for r in everything)  # the contract's rows
    assert _export(db, tmp_path, "--changed", at=13) == []  # nothing changed since

    # a thread moved to another deal: exactly its messages, with their new deal, status and time of change
    _move_fleet_thread(db)
    changed = _export(db, tmp_path, "--changed", at=15)
    assert len(changed) == 4 and all("Fleet telemetry" in r["subject"] for r in changed)
    assert {r["deal"]["name"] for r in changed} == {"Halvorsen Marine – Crew Portal Pilot"}
    assert {r["status"] for r in changed} == {"corrected"} and {r["updated_at"] for r in changed} == {
        "2026-11-20T14:00:00Z"
    }

    # the same CRM imported again re-attributes what it touches, but nothing changes: nothing comes out
    import_demo_crm(db, T[16])
    again = _export(db, tmp_path, "--changed", at=17)
    assert again == [], [(r["subject"], r["status"], r["updated_at"], r["deal"]) for r in again]

    # mail marked not business comes once more, without links, for the CRM to remove it
    run_cli("ignore", "--sender", "rosa.delgado@lumenorchard.es", db=db, env=T[18])
    gone = _export(db, tmp_path, "--changed", at=19)
    assert gone and all(r["status"] == "ignored" for r in gone)
    assert all(r["contacts"] == [] and r["companies"] == [] and r["deal"] is None for r in gone)
    assert len(_export(db, tmp_path, at=20)) == len(everything) - len(gone)  # the full export leaves them out

    # an explicit instant, and one-line errors
    since = _export(db, tmp_path, "--changed-since", "2026-11-20T13:30:00Z", at=20)
    assert len(since) == 4 + len(gone)
    bad = run_cli(
        "export", "activities", "--out", str(tmp_path / "x"), "--changed-since", "yesterday", db=db, check=False
    )
    assert bad.returncode == 2 and "not a date and time" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli(
        "export",
        "activities",
        "--out",
        str(tmp_path / "x"),
        "--changed",
        "--changed-since",
        "2026-11-20",
        db=db,
        check=False,
    )
    assert bad.returncode == 2 and "not both" in bad.stderr


def test_entities_whose_last_contact_or_next_meeting_changed_come_out(loaded: str, tmp_path: Path) -> None:  # noqa: F811
    db = loaded
    run_cli("sync", db=db, env=T[12])
    everything = _export(db, tmp_path, at=13, what="entities")
    assert len(everything) > 20 and all("updated_at" not in r for r in everything)  # the contract's rows
    assert _export(db, tmp_path, "--changed", at=13, what="entities") == []
    before = {(r["type"], r["name"]): r for r in everything}

    # a thread moved between two deals: those two deals' roll-ups change, and nothing else's
    _move_fleet_thread(db)
    changed = _export(db, tmp_path, "--changed", at=15, what="entities")
    names = {(r["type"], r["name"]) for r in changed}
    assert names == {
        ("deal", "Halvorsen Marine – Fleet Telemetry Rollout"),
        ("deal", "Halvorsen Marine – Crew Portal Pilot"),
    }, names
    for r in changed:
        assert r["updated_at"] == "2026-11-20T14:00:00Z"
        assert r["activity_count"] != before[(r["type"], r["name"])]["activity_count"]

    # the same CRM imported again and a sync with nothing new change no roll-up
    import_demo_crm(db, T[16])
    run_cli("sync", db=db, env=T[16])
    assert _export(db, tmp_path, "--changed", at=17, what="entities") == []

    # time passing: a meeting that has started is no longer anyone's next meeting
    upcoming = sorted(r["next_meeting_at"] for r in everything if r["next_meeting_at"])
    assert upcoming, "the demo calendar has meetings ahead of the sync"
    first = upcoming[0]
    later = datetime.fromisoformat(first.replace("Z", "+00:00")) + timedelta(minutes=1)
    moved = _export(db, tmp_path, "--changed", at=later.strftime("%Y-%m-%dT%H:%M:%SZ"), what="entities")
    assert moved and all(r["next_meeting_at"] != first for r in moved)
    assert {(r["type"], r["name"]) for r in moved} >= {
        (r["type"], r["name"]) for r in everything if r["next_meeting_at"] == first
    }

    bad = run_cli("export", "entities", "--out", str(tmp_path / "x"), "--changed-since", "soon", db=db, check=False)
    assert bad.returncode == 2 and "not a date and time" in bad.stderr and "Traceback" not in bad.stderr
