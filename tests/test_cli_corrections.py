"""The correction commands as a user types them: reassign, ignore, rules, undo, stale, user, serve."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT, run_cli
from tests.test_cli import NOW, loaded  # noqa: F401  (fixture)


def _acts(db: str, tmp_path: Path) -> list[dict]:
    out = tmp_path / "acts.jsonl"
    run_cli("export", "activities", "--out", str(out), db=db, env=NOW)
    return [json.loads(x) for x in out.read_text().splitlines()]


def _fleet_item(db: str) -> int:
    view = json.loads(
        run_cli("timeline", "deal", "Fleet Telemetry Rollout", "--json", "--limit", "100", db=db, env=NOW).stdout
    )
    return next(i["id"] for i in view["items"] if i["subject"] == "Fleet telemetry rollout - next steps")


def test_reassign_thread_rules_and_undo_from_the_command_line(loaded: str, tmp_path: Path) -> None:  # noqa: F811
    db = loaded
    run_cli("sync", db=db, env=NOW)
    aid = _fleet_item(db)
    out = run_cli(
        "reassign", str(aid), "--deal", "crew portal pilot", "--scope", "thread", "--actor", "ana", db=db, env=NOW
    )
    assert "4 item(s) → deal Halvorsen Marine – Crew Portal Pilot" in out.stdout and "rule #1" in out.stdout
    fleet = [a for a in _acts(db, tmp_path) if "Fleet telemetry" in a["subject"]]
    assert {a["deal"]["name"] for a in fleet} == {"Halvorsen Marine – Crew Portal Pilot"}
    rules = json.loads(run_cli("rules", "--json", db=db, env=NOW).stdout)
    assert rules[0]["scope"] == "thread" and rules[0]["actor"] == "ana" and rules[0]["items"] == 4
    assert "the whole thread" in run_cli("rules", db=db, env=NOW).stdout
    assert "undid correction #1" in run_cli("undo", db=db, env=NOW).stdout
    fleet = [a for a in _acts(db, tmp_path) if "Fleet telemetry" in a["subject"]]
    assert {a["deal"]["name"] for a in fleet} == {"Halvorsen Marine – Fleet Telemetry Rollout"}
    assert json.loads(run_cli("rules", "--json", db=db, env=NOW).stdout) == []
    # one-line errors, no traceback
    bad = run_cli("reassign", str(aid), "--deal", "x", "--company", "y", db=db, env=NOW, check=False)
    assert bad.returncode != 0 and "exactly one of" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("reassign", "999999", "--deal", "crew portal", db=db, env=NOW, check=False)
    assert bad.returncode != 0 and "no activity 999999" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("undo", "1", db=db, env=NOW, check=False)
    assert "already undone" in bad.stderr and "Traceback" not in bad.stderr


def test_ignore_a_sender_and_a_domain(loaded: str, tmp_path: Path) -> None:  # noqa: F811
    db = loaded
    run_cli("sync", db=db, env=NOW)
    before = len(_acts(db, tmp_path))
    out = run_cli("ignore", "--sender", "rosa.delgado@lumenorchard.es", db=db, env=NOW).stdout
    assert "marked not business" in out
    out = run_cli("ignore", "--domain", "falkenried-freight.de", db=db, env=NOW).stdout
    acts = _acts(db, tmp_path)
    assert len(acts) < before
    assert not any(c["domain"] == "falkenried-freight.de" for a in acts for c in a["companies"])
    covers = {r["covers"] for r in json.loads(run_cli("rules", "--json", db=db, env=NOW).stdout)}
    assert covers == {"everything from rosa.delgado@lumenorchard.es", "everything from falkenried-freight.de"}
    bad = run_cli("ignore", "--domain", "northwind.io", db=db, env=NOW, check=False)
    assert "your team's own domains" in bad.stderr


def test_stale_lists_cold_open_deals_and_deals_with_no_meeting(loaded: str) -> None:  # noqa: F811
    db = loaded
    run_cli("sync", db=db, env=NOW)
    view = json.loads(run_cli("stale", "--days", "14", "--json", db=db, env=NOW).stdout)
    cold = {d["name"]: d for d in view["cold"]}
    assert cold and all(d["reasons"] for d in cold.values())
    assert not any(n.startswith(("Falkenried", "Cedarloop")) for n in cold)  # won / lost deals never go cold
    wider = json.loads(run_cli("stale", "--days", "365", "--json", db=db, env=NOW).stdout)
    assert len(wider["cold"]) <= len(view["cold"])
    assert "going cold" in run_cli("stale", db=db, env=NOW).stdout


def test_user_add_and_serve_asks_for_a_sign_in_beyond_loopback(loaded: str, tmp_path: Path) -> None:  # noqa: F811
    db = loaded
    out = run_cli("user", "add", "ana", db=db, env=NOW, stdin="a long enough secret\n").stdout
    assert "user ana added" in out
    short = run_cli("user", "add", "bob", db=db, env=NOW, stdin="short\n", check=False)
    assert short.returncode != 0 and "at least 8 characters" in short.stderr
    tok = run_cli("user", "add", "ci-bot", "--token", db=db, env=NOW).stdout
    assert "sign-in token" in tok
    assert run_cli("user", "list", db=db, env=NOW).stdout.split() == ["ana", "ci-bot"]

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "INKLESS_DATABASE_URL": db,
        **NOW,
        "INKLESS_SECRET_BACKEND": "file",  # the session key goes to a throw-away encrypted file
        "INKLESS_SECRET_FILE": str(tmp_path / "data" / "secrets.bin"),
        "INKLESS_SECRET_KEY_FILE": str(tmp_path / "config" / "secret.key"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "serve", "--host", "0.0.0.0", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                r = httpx.get(base + "/today.json")
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        else:
            raise AssertionError("serve did not start")
        assert r.status_code == 401
        with httpx.Client(base_url=base) as c:
            page = c.get("/login").text
            token = page.split('data-csrf="')[1].split('"')[0]
            r = c.post("/login", data={"csrf": token, "name": "ana", "password": "a long enough secret"})
            assert r.status_code == 303
            assert c.get("/today.json").json()["review_count"] >= 0
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert b"Traceback" not in err
