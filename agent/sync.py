"""The sync engine: every source, batch by batch, from its cursor, one transaction per batch.

A batch's items, its sync state and the source's new cursor are committed together: killing the
process at any instant leaves either all of a batch or none of it, and the next run resumes from the
last committed cursor. A source's failure is recorded on that source; the others carry on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from matching.index import CrmIndex, Team
from providers.base import SyncContext, make_source
from providers.errors import AuthExpired, CursorExpired, InklessError, ProviderError, RateLimited
from store.models import Source, SyncState
from store.queries import internal_domains, load_index, refresh_due_rollups, source_owners

from .ingest import BatchStats, EmptySnapshot, Ingestor

log = logging.getLogger("inkless.sync")
Progress = Callable[[str, int, int | None], None]


@dataclass
class SourceReport:
    source_id: int
    label: str
    stats: BatchStats = field(default_factory=BatchStats)
    error: str | None = None
    batches: int = 0
    stopped: bool = False


@contextlib.contextmanager
def parallel_map(workers: int) -> Iterator[Callable[..., Any]]:
    """A map that parses on several processes when it pays off, else the builtin map."""
    if workers <= 1:
        yield map
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:

        def pmap(fn: Callable[[Any], Any], jobs: Any) -> Any:
            jobs = list(jobs)
            if len(jobs) < 64:
                return map(fn, jobs)
            return pool.map(fn, jobs, chunksize=max(8, len(jobs) // (workers * 4)))

        yield pmap


def default_workers() -> int:
    env = os.environ.get("INKLESS_WORKERS")
    if env and env.isdigit():
        return int(env)
    return min(4, os.cpu_count() or 1)


class SyncEngine:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        now: datetime,
        batch_size: int = 500,
        workers: int | None = None,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        #: set by SIGINT/SIGTERM: the batch in hand is committed, then the run ends
        self.stop = stop or threading.Event()
        self.sessions = sessions
        self.now = now
        self.batch_size = batch_size
        self.workers = default_workers() if workers is None else workers
        self.progress = progress

    def run(self, source_ids: list[int] | None = None) -> list[SourceReport]:
        with self.sessions() as s:
            q = select(Source.id).order_by(Source.id)
            if source_ids:
                q = q.where(Source.id.in_(source_ids))
            ids = [i for (i,) in s.execute(q)]
        reports = []
        with parallel_map(self.workers) as pmap:
            for sid in ids:
                if self.stop.is_set():
                    break
                reports.append(self.sync_source(sid, pmap))
        with self.sessions.begin() as s:
            refresh_due_rollups(s, self.now)
        return reports

    def sync_source(self, source_id: int, pmap: Callable[..., Any] = map) -> SourceReport:
        with self.sessions() as s:
            src = s.get(Source, source_id)
            assert src is not None
            kind, location, owner, settings, cursor = src.kind, src.location, src.owner, src.settings, src.cursor
            team = Team(internal_domains(s), source_owners(s))
            index = load_index(s)
        report = SourceReport(source_id, f"{kind} {location}")

        def is_known(ids: list[str]) -> set[str]:
            with self.sessions() as ks:
                out: set[str] = set()
                for i in range(0, len(ids), 500):
                    q = select(SyncState.provider_id).where(
                        SyncState.source_id == source_id, SyncState.provider_id.in_(ids[i : i + 500])
                    )
                    out.update(p for (p,) in ks.execute(q))
                return out

        ctx = SyncContext(self.now, self.batch_size, pmap, is_known, self.stop)
        try:
            try:
                self._pull(source_id, kind, location, owner, settings, cursor, ctx, team, index, report)
            except CursorExpired as exc:
                # the provider no longer accepts our place in its history: read everything again;
                # already-stored items are recognised (sync state, Message-ID, UID) and not duplicated
                log.warning("source %s: %s; doing a full resync", source_id, exc)
                self._pull(source_id, kind, location, owner, settings, None, ctx, team, index, report)
            with self.sessions.begin() as s:
                row = s.get(Source, source_id)
                assert row is not None
                row.status, row.last_error, row.last_sync_at = "ok", None, self.now
                if (row.settings or {}).get("confirm_empty"):  # a confirmation is good for one sync
                    row.settings = {k: v for k, v in row.settings.items() if k != "confirm_empty"}
        except AuthExpired as exc:
            report.error = str(exc)
            self._mark_error(source_id, str(exc), status="needs_reconnect")
        except RateLimited as exc:
            wait = f" (the provider asked to wait {exc.retry_after:.0f} s)" if exc.retry_after else ""
            report.error = f"{exc}{wait}; what was fetched so far is stored, the next sync continues"
            self._mark_error(source_id, report.error, status="backoff")
        except InklessError as exc:
            report.error = str(exc)
            self._mark_error(source_id, str(exc))
        except OSError as exc:
            report.error = f"cannot read {location}: {exc.strerror or exc}"
            self._mark_error(source_id, report.error)
        except Exception as exc:  # a bug must not stop the other sources; the batch was rolled back
            log.exception("sync of source %s failed", source_id)
            report.error = f"internal error ({type(exc).__name__}); the batch was rolled back, see the log"
            self._mark_error(source_id, report.error)
        return report

    def _pull(
        self,
        source_id: int,
        kind: str,
        location: str,
        owner: str,
        settings: dict[str, Any],
        cursor: dict[str, Any] | None,
        ctx: SyncContext,
        team: Team,
        index: CrmIndex,
        report: SourceReport,
    ) -> None:
        """Every batch of one source from ``cursor``, each committed with its cursor."""
        source = make_source(kind, location, owner, settings)
        try:
            done = 0
            for batch in source.batches(cursor, ctx):
                with self.sessions.begin() as s:
                    ing = Ingestor(s, source_id, owner, team, index, self.now)
                    ing.allow_empty = bool((settings or {}).get("confirm_empty"))
                    try:
                        stats = ing.apply(batch)
                    except EmptySnapshot as e:
                        raise ProviderError(
                            f"the calendar now lists no events where it had {e.count}; nothing was removed. "
                            f"If that is right, run: inkless source confirm-empty {source_id}"
                        ) from None
                    row = s.get(Source, source_id)
                    assert row is not None
                    row.cursor = batch.cursor
                    row.status = "ok"
                    row.last_error = None
                    row.last_sync_at = self.now
                    row.item_count = (row.item_count or 0) + stats.seen
                report.stats.add(stats)
                report.batches += 1
                done += len(batch.items)
                if self.progress:
                    total = done + batch.total_hint if batch.total_hint is not None else None
                    self.progress(report.label, done, total)
                if self.stop.is_set():
                    report.stopped = True
                    break
        finally:
            source.close()

    def _mark_error(self, source_id: int, message: str, status: str = "error") -> None:
        with self.sessions.begin() as s:
            row = s.get(Source, source_id)
            if row is not None:
                row.status = status
                row.last_error = message[:1000]
                row.last_sync_at = self.now
