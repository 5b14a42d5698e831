"""One real-world email is one activity whichever provider and mailbox it is seen through: here the
same mail read by one rep through Gmail and by another through Microsoft Graph."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from agent.sync import SyncEngine
from store.export import activity_rows
from store.models import Activity
from store.models import Source as SourceRow
from tests.test_gmail import demo_mailbox, setup_demo
from tests.test_graph import NOW, FakeGraph, fake, load_demo_mail, wired  # noqa: F401  (fixtures)


def test_the_same_email_via_gmail_and_via_graph_is_one_activity(
    sessions: sessionmaker[Session],
    wired: FakeGraph,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gmail_id = setup_demo(sessions, monkeypatch, demo_mailbox())  # Ana's Gmail
    load_demo_mail(wired)
    with sessions.begin() as s:  # Ben's Microsoft 365 mailbox holds the same messages
        row = SourceRow(
            kind="graph_mail",
            location="microsoft:ben@northwind.io",
            owner="ben@northwind.io",
            settings={"token_ref": "microsoft:ben@northwind.io", "page_size": 10},
            created_at=NOW,
        )
        s.add(row)
        s.flush()
        graph_id = row.id
    first = SyncEngine(sessions, NOW, workers=1).run([gmail_id])[0]
    assert first.error is None and first.stats.logged > 20

    def snapshot() -> tuple[int, list[Any]]:
        with sessions() as s:
            n = int(s.execute(select(func.count()).select_from(Activity)).scalar_one())
            return n, sorted((r["message_ids"], r["deal"], r["status"]) for r in activity_rows(s))

    before = snapshot()
    second = SyncEngine(sessions, NOW, workers=1).run([graph_id])[0]
    assert second.error is None and second.stats.seen == 41
    assert second.stats.logged == 0 and second.stats.merged == first.stats.logged + first.stats.merged
    assert snapshot() == before
