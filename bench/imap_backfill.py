"""Benchmark: IMAP backfill through the sync engine, and the cost of a sync that finds nothing new.

Loads the Enron folders (shared/corpora/enron, ~10k messages) into a throw-away Dovecot on loopback
(IMAP MULTIAPPEND; not timed), then for a 1k and the full mailbox:

- times a full backfill with ImapSource through the SyncEngine into a temporary SQLite database
  (parse, classify, match, store; messages per second);
- runs a sync that finds nothing new and counts the IMAP commands it sends (a recording client), to
  show the count does not grow with the mailbox;
- runs the hourly completeness check (UID SEARCH ALL against what is stored) and counts it too.

    python bench/imap_backfill.py [--corpus ../shared/corpora/enron] [--batch-size 500] [--workers N]

Needs Dovecot (apt-get install dovecot-imapd); runs as root (mail owned by nobody) or as a normal user.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest_enron import make_crm  # noqa: E402

from agent.crm import import_and_reattribute  # noqa: E402
from agent.sync import SyncEngine  # noqa: E402
from providers.base import SyncContext  # noqa: E402
from providers.imap import ImapSource  # noqa: E402
from store.db import open_db  # noqa: E402
from store.models import Source, SyncState  # noqa: E402
from store.queries import set_setting  # noqa: E402
from tests.dovecot import CommandLog, Dovecot  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "corpora" / "enron"
SENT_FOLDERS = {"sent", "_sent", "_sent_mail", "sent_items"}
OWNER = "kenneth.lay@enron.com"
NOW = datetime(2002, 1, 1, tzinfo=UTC)
PW_ENV = "INKLESS_BENCH_IMAP_PASSWORD"


def corpus_messages(corpus: Path) -> tuple[list[bytes], list[bytes]]:
    """(received, sent) raw messages of every user folder, in a stable order."""
    inbox: list[bytes] = []
    sent: list[bytes] = []
    for user in sorted(p for p in corpus.iterdir() if p.is_dir()):
        for folder in sorted(p for p in user.iterdir() if p.is_dir()):
            files = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: (str(p.parent), p.name))
            (sent if folder.name in SENT_FOLDERS else inbox).extend(p.read_bytes() for p in files)
    return inbox, sent


def take(inbox: list[bytes], sent: list[bytes], n: int) -> tuple[list[bytes], list[bytes]]:
    """n messages with the corpus's share of sent mail."""
    share = len(sent) / (len(inbox) + len(sent))
    n_sent = round(n * share)
    return inbox[: n - n_sent], sent[:n_sent]


def measure(label: str, inbox: list[bytes], sent: list[bytes], crm: Path, args: argparse.Namespace) -> dict[str, Any]:
    server = Dovecot()
    server.start()
    try:
        t = time.perf_counter()
        server.append_many("INBOX", inbox)
        server.append_many("Sent", sent)
        load_s = time.perf_counter() - t
        os.environ[PW_ENV] = server.password
        settings = server.settings(password_env=PW_ENV)
        location = f"imap://{server.user}@{server.host}:{server.port}"
        with tempfile.TemporaryDirectory() as tmp:
            engine, sessions = open_db(f"sqlite:///{Path(tmp) / 'bench.db'}")
            with sessions.begin() as s:
                set_setting(s, "internal_domains", ["enron.com"])
            import_and_reattribute(sessions, NOW, crm / "companies.csv", crm / "contacts.csv", crm / "deals.csv")
            with sessions.begin() as s:
                row = Source(kind="imap", location=location, owner=OWNER, settings=settings, created_at=NOW)
                s.add(row)
                s.flush()
                sid = row.id

            t = time.perf_counter()
            rep = SyncEngine(sessions, NOW, batch_size=args.batch_size, workers=args.workers).run()[0]
            backfill_s = time.perf_counter() - t
            if rep.error:
                raise SystemExit(f"backfill failed: {rep.error}")

            with sessions() as s:
                row2 = s.get(Source, sid)
                assert row2 is not None
                cursor = row2.cursor
                stored = s.query(SyncState).count()

            def is_known(ids: list[str]) -> set[str]:
                with sessions() as ks:
                    out: set[str] = set()
                    for i in range(0, len(ids), 500):
                        q = ks.query(SyncState.provider_id).filter(
                            SyncState.source_id == sid, SyncState.provider_id.in_(ids[i : i + 500])
                        )
                        out.update(p for (p,) in q)
                    return out

            def quiet_sync(now: datetime) -> tuple[list[str], float, int]:
                log = CommandLog()
                src = ImapSource(location, OWNER, settings, connect=log.connect(server))
                ctx = SyncContext(now, args.batch_size, is_known=is_known)
                t = time.perf_counter()
                items = sum(len(b.items) for b in src.batches(cursor, ctx))
                return log.commands, time.perf_counter() - t, items

            no_change, no_change_s, n1 = quiet_sync(NOW)
            verify, verify_s, n2 = quiet_sync(NOW + timedelta(hours=2))
            t = time.perf_counter()
            again = SyncEngine(sessions, NOW, batch_size=args.batch_size, workers=1).run()[0]
            engine_no_change_s = time.perf_counter() - t
            engine.dispose()
        assert n1 == 0 and n2 == 0 and again.stats.seen == 0, (n1, n2, again.stats.seen)
        n = len(inbox) + len(sent)
        return {
            "label": label,
            "messages": n,
            "stored": stored,
            "logged": rep.stats.logged,
            "load_s": load_s,
            "backfill_s": backfill_s,
            "rate": n / backfill_s,
            "no_change": no_change,
            "no_change_ms": no_change_s * 1000,
            "engine_no_change_ms": engine_no_change_s * 1000,
            "verify": verify,
            "verify_ms": verify_s * 1000,
        }
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--workers", type=int, help="parser processes (default: the engine's, cores up to 4)")
    ap.add_argument("--small", type=int, default=1000, help="size of the small mailbox")
    args = ap.parse_args()
    if not args.corpus.is_dir():
        raise SystemExit(f"corpus not found: {args.corpus}")
    if not Path("/usr/sbin/dovecot").exists():
        raise SystemExit("Dovecot is not installed (apt-get install dovecot-imapd)")
    inbox, sent = corpus_messages(args.corpus)
    with tempfile.TemporaryDirectory() as tmp:
        crm = Path(tmp) / "crm"
        make_crm(args.corpus, crm)
        results = [
            measure(f"{args.small} messages", *take(inbox, sent, args.small), crm, args),
            measure("whole corpus", inbox, sent, crm, args),
        ]
    print()
    print(f"IMAP backfill through the engine (SQLite, batch size {args.batch_size}, Dovecot on loopback)")
    head = (
        f"{'mailbox':<16}{'messages':>9}{'load s':>8}{'backfill s':>11}{'msgs/s':>8}{'logged':>8}"
        f"{'no-change cmds':>15}{'ms':>7}{'engine ms':>10}{'verify cmds':>12}{'ms':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r['label']:<16}{r['messages']:>9}{r['load_s']:>8.1f}{r['backfill_s']:>11.1f}{r['rate']:>8.0f}"
            f"{r['logged']:>8}{len(r['no_change']):>15}{r['no_change_ms']:>7.1f}{r['engine_no_change_ms']:>10.1f}"
            f"{len(r['verify']):>12}{r['verify_ms']:>7.1f}"
        )
    print()
    for r in results:
        print(f"{r['label']}: no-change sync sends {' '.join(r['no_change'])}")
        print(f"{r['label']}: completeness check sends {' '.join(r['verify'])}")
    if [len(r["no_change"]) for r in results] != [len(results[0]["no_change"])] * len(results):
        raise SystemExit("the no-change command count grew with the mailbox")


if __name__ == "__main__":
    main()
