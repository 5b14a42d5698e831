"""Shared fixtures: a fresh database on SQLite and on PostgreSQL, the shared corpora, the CLI."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("INKLESS_SHARED", ROOT.parent / "shared"))
CORPORA = SHARED / "corpora"
PG_ADMIN = os.environ.get("INKLESS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = [b.strip() for b in os.environ.get("INKLESS_TEST_BACKENDS", "sqlite,postgresql").split(",") if b.strip()]


def _pg_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN.replace("postgresql+psycopg", "postgresql"), connect_timeout=3):
            return None
    except Exception as exc:  # the reason is shown in the skip message
        return f"PostgreSQL not reachable at {PG_ADMIN}: {str(exc).strip().splitlines()[0][:120]}"


_PG_REASON: list[str | None] = []


def pg_skip_reason() -> str | None:
    if not _PG_REASON:
        _PG_REASON.append(_pg_available())
    return _PG_REASON[0]


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards. In CI a missing server is a
    failure (CI installs and starts it); elsewhere the test is skipped with the reason."""
    reason = pg_skip_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    import psycopg

    name = f"inkless_t_{secrets.token_hex(6)}"
    admin = PG_ADMIN.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'inkless.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def sessions(db_url: str):
    from store.db import open_db

    engine, maker = open_db(db_url)
    yield maker
    engine.dispose()


def corpus(*parts: str) -> Path:
    p = CORPORA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared corpus not present: {p}")
    return p


def run_cli(
    *args: str, db: str, env: dict[str, str] | None = None, check: bool = True, timeout: int = 600, stdin: str = ""
):
    """Run the real console entry point in a subprocess (what a user types)."""
    full_env = {**os.environ, "INKLESS_DATABASE_URL": db, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        timeout=timeout,
        input=stdin,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"inkless {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
