"""Real-world corpora go through `sync` without a crash: every file is processed, skipped or
quarantined with a reason, and one bad file never stops the others."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from agent.sync import SyncEngine
from store.models import Activity, Quarantine, Skipped, Source, SyncState
from store.queries import set_setting
from tests.conftest import corpus

NOW = datetime(2026, 11, 24, 13, tzinfo=UTC)


def add(sessions, kind: str, location: Path, owner: str) -> int:
    with sessions.begin() as s:
        src = Source(kind=kind, location=str(location), owner=owner, settings={}, created_at=NOW)
        s.add(src)
        s.flush()
        return src.id


def files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]


@pytest.mark.parametrize("folder", ["eml-tricky", "enron"])
def test_every_message_file_is_processed_or_quarantined(sessions, folder: str) -> None:
    root = corpus(folder)
    with sessions.begin() as s:
        set_setting(s, "internal_domains", ["enron.com"])
    sid = add(sessions, "eml", root, "kenneth.lay@enron.com")
    reports = SyncEngine(sessions, NOW, workers=2).run()
    assert reports[0].error is None
    with sessions() as s:
        states = dict(
            s.execute(
                select(SyncState.outcome, func.count()).where(SyncState.source_id == sid).group_by(SyncState.outcome)
            ).all()
        )
        assert sum(states.values()) == len(files(root)), states
        quarantined = s.execute(select(Quarantine.reason)).scalars().all()
        assert all(r and "\n" not in r for r in quarantined)
        assert states.get("quarantined", 0) == len(quarantined)
        # with no CRM nothing is anybody's customer: nothing may be logged, everything has a reason
        assert s.execute(select(func.count()).select_from(Activity)).scalar_one() == 0
        assert s.execute(select(func.count()).where(Skipped.reason == "")).scalar_one() == 0
    again = SyncEngine(sessions, NOW, workers=1).run()
    assert again[0].stats.seen == 0


def test_every_calendar_file_syncs_without_stopping_the_others(sessions) -> None:
    root = corpus("ics")
    paths = sorted(p for p in root.rglob("*") if p.is_file())
    with sessions.begin() as s:
        set_setting(s, "internal_domains", ["example.com"])
        for p in paths:
            s.add(Source(kind="ics", location=str(p), owner="owner@example.com", settings={}, created_at=NOW))
    reports = SyncEngine(sessions, NOW, workers=1).run()
    assert len(reports) == len(paths)
    errors = [r for r in reports if r.error]
    # a file that cannot be read at all is a source-level, one-line error; nothing may crash
    assert all("internal error" not in (r.error or "") and "\n" not in (r.error or "") for r in reports), errors[:3]
    assert len(errors) == 0, [(r.label, r.error) for r in errors[:5]]
    with sessions() as s:
        n_quarantined = s.execute(select(func.count()).select_from(Quarantine)).scalar_one()
    assert n_quarantined > 0  # the corpora hold deliberately broken calendars
