"""`inkless sync --watch` keeps sources current until a signal, and a signal always ends cleanly:
the batch in hand is committed, nothing half-stored, the next run continues."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.conftest import ROOT, run_cli
from tests.test_cli import DEMO, NOW

NEW_MAIL = b"""From x Thu Nov 19 09:00:00 2026
From: Oliver Pennington <oliver.pennington@bluefern.co.uk>
To: Ana Ruiz <ana@northwind.io>
Subject: Watch mode picked this up
Date: Thu, 19 Nov 2026 09:00:00 +0000
Message-ID: <watch-mode-test@bluefern.co.uk>

Hello Ana, a quick note about the data quality add-on.

"""


def count(db: str, sql: str) -> int:
    engine = create_engine(db.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as c:
            return int(c.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def wait_until(predicate, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def start(db: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "INKLESS_DATABASE_URL": db, **NOW}
    return subprocess.Popen([sys.executable, "-m", "agent.cli", "sync", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def test_watch_picks_up_new_mail_and_stops_cleanly_on_sigterm(db_url: str, tmp_path: Path) -> None:
    mbox = tmp_path / "mail.mbox"
    shutil.copy(DEMO / "mail.mbox", mbox)
    run_cli("init", "--internal-domain", "northwind.io", db=db_url, env=NOW)
    crm = DEMO / "crm"
    run_cli("crm", "import", "--companies", str(crm / "companies.csv"), "--contacts", str(crm / "contacts.csv"),
            "--deals", str(crm / "deals.csv"), db=db_url, env=NOW)  # fmt: skip
    run_cli("source", "add", "mbox", str(mbox), "--owner", "ana@northwind.io", db=db_url, env=NOW)
    proc = start(db_url, "--watch", "--interval", "0.5")
    try:
        assert wait_until(lambda: count(db_url, "SELECT count(*) FROM activities") >= 31)
        with open(mbox, "ab") as fh:
            fh.write(NEW_MAIL)
        assert wait_until(
            lambda: count(db_url, "SELECT count(*) FROM activities WHERE subject = 'Watch mode picked this up'") == 1
        )
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err
    assert "Watch mode picked this up" not in err


def test_sigint_mid_backfill_commits_the_batch_in_hand_and_the_rerun_completes(db_url: str, tmp_path: Path) -> None:
    maildir = tmp_path / "md"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    base = NEW_MAIL.split(b"\n", 1)[1]
    for i in range(3000):
        raw = base.replace(b"<watch-mode-test@", f"<bulk-{i}@".encode()).replace(b"picked this up", f"#{i}".encode())
        (maildir / "cur" / f"17000{i:05d}.M{i}P1.host:2,S").write_bytes(raw)
    run_cli("init", "--internal-domain", "northwind.io", db=db_url, env=NOW)
    crm = DEMO / "crm"
    run_cli("crm", "import", "--companies", str(crm / "companies.csv"), "--contacts", str(crm / "contacts.csv"),
            db=db_url, env=NOW)  # fmt: skip
    run_cli("source", "add", "maildir", str(maildir), "--owner", "ana@northwind.io", db=db_url, env=NOW)
    proc = start(db_url, "--batch-size", "50", "--workers", "1")
    assert wait_until(lambda: count(db_url, "SELECT count(*) FROM sync_state") >= 100)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err
    partial = count(db_url, "SELECT count(*) FROM sync_state")
    assert partial % 50 == 0 and partial < 3000  # whole batches only
    assert count(db_url, "SELECT count(*) FROM activities") == partial
    run_cli("sync", "--quiet", db=db_url, env=NOW)
    assert count(db_url, "SELECT count(*) FROM sync_state") == 3000
    assert count(db_url, "SELECT count(*) FROM activities") == 3000
