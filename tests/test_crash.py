"""Killing `inkless sync` with SIGKILL mid-backfill and running it again gives exactly the export of an
uninterrupted run: nothing lost, nothing duplicated (one transaction per batch, cursor included)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import ROOT, corpus, fresh_pg_database, run_cli

pytestmark = pytest.mark.slow


def load(db: str, root: Path, now: str) -> None:
    meta = json.loads((root / "meta.json").read_text())
    env = {"INKLESS_NOW": now}
    run_cli("init", *[a for d in meta["internal_domains"] for a in ("--internal-domain", d)], db=db, env=env)
    crm = root / "crm"
    run_cli(
        "crm",
        "import",
        "--companies",
        str(crm / "companies.csv"),
        "--contacts",
        str(crm / "contacts.csv"),
        "--deals",
        str(crm / "deals.csv"),
        db=db,
        env=env,
    )
    for box in meta["mailboxes"][:3]:
        run_cli("source", "add", "maildir", str(root / box["maildir"]), "--owner", box["owner"], db=db, env=env)
        run_cli("source", "add", "ics", str(root / box["calendar"]), "--owner", box["owner"], db=db, env=env)


def export(db: str, tmp: Path, now: str, name: str) -> str:
    path = tmp / f"{name}.jsonl"
    run_cli("export", "activities", "--format", "jsonl", "--out", str(path), db=db, env={"INKLESS_NOW": now})
    ents = tmp / f"{name}-entities.jsonl"
    run_cli("export", "entities", "--format", "jsonl", "--out", str(ents), db=db, env={"INKLESS_NOW": now})
    return path.read_text() + ents.read_text()


def stored(db: str) -> int:
    engine = create_engine(db.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as c:
            return int(c.execute(text("SELECT count(*) FROM sync_state")).scalar_one())
    finally:
        engine.dispose()


@pytest.fixture
def second_db(db_url: str, tmp_path: Path) -> Iterator[str]:
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'second.db'}"
        return
    with fresh_pg_database() as url:  # pg_url is per test: a second, separate database
        yield url


def test_sigkill_mid_backfill_then_rerun_equals_uninterrupted_run(db_url: str, second_db: str, tmp_path: Path) -> None:
    root = corpus("synthetic-dev", "medium")
    now = json.loads((root / "meta.json").read_text())["now"]

    load(db_url, root, now)
    run_cli("sync", "--quiet", db=db_url, env={"INKLESS_NOW": now})
    reference = export(db_url, tmp_path, now, "reference")

    load(second_db, root, now)
    env = {**os.environ, "INKLESS_DATABASE_URL": second_db, "INKLESS_NOW": now}
    total = stored(db_url)
    kills: list[int] = []
    for threshold in (total // 5, total // 2):  # kill twice, at different depths of the backfill
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "sync", "--quiet", "--batch-size", "100"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while proc.poll() is None and stored(second_db) < threshold and time.monotonic() < deadline:
            time.sleep(0.02)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills.append(stored(second_db))
        proc.wait()
    assert kills and kills[0] < total, "the sync finished before it could be killed; the corpus is too small"
    run_cli("sync", "--quiet", db=second_db, env={"INKLESS_NOW": now})
    assert stored(second_db) == total
    resumed = export(second_db, tmp_path, now, "resumed")
    assert resumed == reference
