"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL, and
downgrade cleanly."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from store.db import _alembic_config, open_db
from store.models import Base


def test_migrations_match_the_models_and_round_trip(db_url: str) -> None:
    engine, _ = open_db(db_url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    cfg = _alembic_config(engine)
    command.downgrade(cfg, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    command.upgrade(cfg, "head")
    assert {"activities", "sync_state", "attributions", "contacts"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_opening_twice_is_a_no_op(db_url: str) -> None:
    e1, _ = open_db(db_url)
    e1.dispose()
    e2, _ = open_db(db_url)
    with e2.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "0004"
    e2.dispose()
