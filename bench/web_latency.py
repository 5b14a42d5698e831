"""Web page latency on a big account: a company with 10,000 activities and a 500-message thread.

    python bench/web_latency.py [--db URL | --pg [ADMIN_URL]] [--activities 10000] [--thread 500]
                                [--requests 200] [--runs 5] [--json]

Builds, fast (bulk inserts straight into activities / participants / attributions / activity_keys, then
``store.queries.refresh_rollups``), one company with two open deals, twenty contacts and ``--activities``
activities over three years, of which one thread of ``--thread`` messages on deal A and three upcoming
meetings. Then measures, with the clock pinned to 2026-11-20 12:00 UTC:

* the company timeline ``/company/{id}`` (first page, and the deep page ``?offset=9000``) and deal A's
  timeline: p50 / p95 / max over ``--requests`` GETs, in process (``fastapi.testclient.TestClient``) and
  over real HTTP to uvicorn in a separate process (keep-alive ``httpx`` client);
* a thread correction: the time from ``POST /activity/{id}/reassign`` (scope thread, to deal B, with
  ``?next=/deal/B``) until deal B's updated page has arrived (the redirect followed, the 500 messages
  checked on it), p50 over ``--runs`` runs, undoing between runs with ``POST /corrections/{id}/undo``
  (timed too).

``--db`` defaults to a temporary SQLite file. ``--pg`` creates a throwaway PostgreSQL database on the
server of ADMIN_URL (default ``postgresql://postgres@127.0.0.1:5432/test``, or ``$INKLESS_TEST_PG``) and
drops it afterwards. An existing database given with ``--db`` must be empty (the schema is migrated).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from matching.identity import email_key  # noqa: E402
from store.models import (  # noqa: E402
    Activity,
    ActivityKey,
    Attribution,
    Company,
    CompanyDomain,
    Contact,
    ContactEmail,
    Deal,
    DealContact,
    Participant,
)
from store.queries import refresh_rollups, set_setting  # noqa: E402

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
NOW_ISO = "2026-11-20T12:00:00Z"
OWNER = ("Ana Ruiz", "ana@northwind.io")
DOMAIN = "benchship.example"
SECRET = "web-latency-bench-session-key"
PG_ADMIN = os.environ.get("INKLESS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
CHUNK = 2000


# -- the data ------------------------------------------------------------------------------------------


def build(sessions: sessionmaker[Session], n_activities: int, thread_len: int) -> dict[str, Any]:
    """One big company, bulk-inserted. Returns the ids the measurements need."""
    with sessions.begin() as s:
        if s.execute(select(func.count()).select_from(Activity)).scalar_one():
            raise SystemExit("the database already holds activities: give an empty one")
        set_setting(s, "internal_domains", ["northwind.io"])
        co = Company(crm_id="bench-co", name="Benchmark Shipping AS", activity_count=0)
        s.add(co)
        s.flush()
        s.add(CompanyDomain(domain=DOMAIN, company_id=co.id))
        contacts = []
        for i in range(20):
            first, last = f"Person{i:02d}", "Bench"
            email = f"person{i:02d}@{DOMAIN}"
            c = Contact(
                crm_id=f"bench-c{i}", first_name=first, last_name=last, name=f"{first} {last}", email=email,
                company_id=co.id, origin="crm",
            )  # fmt: skip
            s.add(c)
            contacts.append(c)
        s.flush()
        for c in contacts:
            s.add(ContactEmail(key=email_key(c.email or ""), contact_id=c.id, email=c.email, is_primary=True))
        deal_a = Deal(crm_id="bench-d1", name="Benchmark Shipping – Fleet Rollout", company_id=co.id, status="open",
                      stage="Proposal", created_at=NOW - timedelta(days=1200))  # fmt: skip
        deal_b = Deal(crm_id="bench-d2", name="Benchmark Shipping – Crew Portal", company_id=co.id, status="open",
                      stage="Discovery", created_at=NOW - timedelta(days=1200))  # fmt: skip
        s.add_all([deal_a, deal_b])
        s.flush()
        for i, c in enumerate(contacts):
            s.add(DealContact(deal_id=(deal_a if i % 2 else deal_b).id, contact_id=c.id))
        ids: dict[str, Any] = {
            "company": co.id,
            "deal_a": deal_a.id,
            "deal_b": deal_b.id,
            "contacts": [c.id for c in contacts],
        }

    # activities: the thread (the newest mail of the account), the rest spread over three years
    rows: list[dict[str, Any]] = []
    meta: list[tuple[int, str | None, int]] = []
    thread: str | None
    deal: str | None  # contact index, deal ("a" | "b" | None), upcoming
    span = 3 * 365 * 24 * 3600
    for i in range(n_activities):
        c_idx = (i * 7) % 20
        if i < thread_len:
            when = NOW - timedelta(hours=2 + (thread_len - i) * 3)
            kind, thread, deal = "email", "bench-thread", "a"
            subject = (
                "Fleet rollout: the crew portal questions" if i == 0 else "Re: Fleet rollout: the crew portal questions"
            )
        elif i < thread_len + 3:
            when = NOW + timedelta(days=2 + 7 * (i - thread_len))
            kind, thread, deal = "meeting", None, "a"
            subject = f"Weekly steering {i - thread_len + 1}"
        else:
            when = NOW - timedelta(seconds=span * (i - thread_len) // max(1, n_activities - thread_len) + 3 * 86400)
            kind = "meeting" if i % 10 == 0 else "email"
            thread = None if kind == "meeting" else f"bench-t{i}"
            deal = "a" if i % 10 < 6 else ("b" if i % 10 < 9 else None)
            subject = f"{'Call' if kind == 'meeting' else 'Mail'} #{i}: fleet rollout status, crew portal notes"
        direction = None if kind == "meeting" else ("inbound" if i % 2 == 0 else "outbound")
        rows.append(
            {
                "kind": kind,
                "dedupe_key": f"mid:<bench-{i}@{DOMAIN}>" if kind == "email" else f"ics:bench-{i}@{DOMAIN}|",
                "occurred_at": when,
                "end_at": when + timedelta(minutes=30) if kind == "meeting" else None,
                "subject": subject,
                "direction": direction,
                "thread_key": thread,
                "snippet": f"Hi, about item {i}: the rollout plan, the crew portal and the next steps. Regards",
                "ical_uid": f"bench-{i}@{DOMAIN}" if kind == "meeting" else None,
                "status": "auto",
                "confidence": 0.9,
                "evidence": [f"person{c_idx:02d}@{DOMAIN} is the address of Person{c_idx:02d} Bench"],
                "candidates": None,
                "created_at": NOW,
                "updated_at": NOW,
            }
        )
        meta.append((c_idx, deal, int(when > NOW)))
    deal_ids = {"a": ids["deal_a"], "b": ids["deal_b"], None: None}
    with sessions.begin() as s:
        act_ids: list[int] = []
        for k in range(0, len(rows), CHUNK):
            act_ids += s.scalars(
                insert(Activity).returning(Activity.id, sort_by_parameter_order=True), rows[k : k + CHUNK]
            ).all()
        keys: list[dict[str, Any]] = []
        people: list[dict[str, Any]] = []
        links: list[dict[str, Any]] = []
        for aid, row, (c_idx, deal, _up) in zip(act_ids, rows, meta, strict=True):
            keys.append({"key": row["dedupe_key"], "activity_id": aid})
            cid = ids["contacts"][c_idx]
            email = f"person{c_idx:02d}@{DOMAIN}"
            inbound = row["direction"] != "outbound"
            people += [
                {"activity_id": aid, "email": email, "name": f"Person{c_idx:02d} Bench",
                 "role": "from" if inbound else "to", "is_internal": False, "contact_id": cid},
                {"activity_id": aid, "email": OWNER[1], "name": OWNER[0],
                 "role": "to" if inbound else "from", "is_internal": True, "contact_id": None},
            ]  # fmt: skip
            ev = ["bench"]
            links += [
                {"activity_id": aid, "target_type": "contact", "target_id": cid, "confidence": 0.99, "evidence": ev,
                 "status": "auto"},
                {"activity_id": aid, "target_type": "company", "target_id": ids["company"], "confidence": 0.98,
                 "evidence": ev, "status": "auto"},
            ]  # fmt: skip
            if deal is not None:
                links.append({"activity_id": aid, "target_type": "deal", "target_id": deal_ids[deal],
                              "confidence": 0.9, "evidence": ev, "status": "auto"})  # fmt: skip
        for table, data in ((ActivityKey, keys), (Participant, people), (Attribution, links)):
            for k in range(0, len(data), CHUNK):
                s.execute(insert(table), data[k : k + CHUNK])
        refresh_rollups(
            s,
            {"company": {ids["company"]}, "deal": {ids["deal_a"], ids["deal_b"]}, "contact": set(ids["contacts"])},
            NOW,
        )
    ids["thread"] = act_ids[:thread_len]
    ids["activities"] = len(act_ids)
    return ids


# -- measuring -----------------------------------------------------------------------------------------


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in samples)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return {"n": len(ms), "p50": statistics.median(ms), "p95": p95, "max": ms[-1]}


def time_gets(get: Callable[[str], Any], path: str, n: int, check: Callable[[Any], None]) -> dict[str, float]:
    for _ in range(3):  # warm-up: templates compiled, connections pooled, caches filled
        check(get(path))
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = get(path)
        samples.append(time.perf_counter() - t0)
        if r.status_code != 200:
            raise SystemExit(f"GET {path} -> {r.status_code}")
    check(r)
    return percentiles(samples)


def csrf_of(client: Any) -> str:
    r = client.get("/")
    m = re.search(r'data-csrf="([^"]+)"', r.text)
    if r.status_code != 200 or not m:
        raise SystemExit(f"GET / -> {r.status_code}: no CSRF token on the page")
    return m.group(1)


def time_thread_move(client: Any, ids: dict[str, Any], runs: int) -> dict[str, dict[str, float]]:
    """POST the thread correction (redirect followed to deal B's page), then undo it; ``runs`` times."""
    token = csrf_of(client)
    head = {"X-CSRF-Token": token}
    first, b = ids["thread"][0], ids["deal_b"]
    n = len(ids["thread"])
    moved, undone = [], []
    for _ in range(runs + 1):  # the first run warms up
        t0 = time.perf_counter()
        r = client.post(
            f"/activity/{first}/reassign?next=/deal/{b}",
            data={"target_type": "deal", "target_id": str(b), "scope": "thread"},
            headers=head,
            follow_redirects=True,
        )
        t1 = time.perf_counter()
        if r.status_code != 200 or f"Moved {n} items" not in r.text:
            raise SystemExit(f"thread move: {r.status_code} {r.text[:300]}")
        m = re.search(r'action="/corrections/(\d+)/undo', r.text)
        if not m or f'id="item-{ids["thread"][-1]}"' not in r.text:
            raise SystemExit("thread move: deal B's page lacks the undo button or the thread's newest mail")
        t2 = time.perf_counter()
        u = client.post(f"/corrections/{m.group(1)}/undo", headers={**head, "accept": "application/json"})
        t3 = time.perf_counter()
        if u.status_code != 200:
            raise SystemExit(f"undo: {u.status_code} {u.text[:300]}")
        moved.append(t1 - t0)
        undone.append(t3 - t2)
    return {"move 500-thread → deal B page": percentiles(moved[1:]), "undo it": percentiles(undone[1:])}


def measure(client: Any, ids: dict[str, Any], requests: int, runs: int) -> dict[str, dict[str, float]]:
    co, a = ids["company"], ids["deal_a"]
    total = ids["activities"]

    def page_check(first_id_pattern: str) -> Callable[[Any], None]:
        def check(r: Any) -> None:
            if r.status_code != 200 or len(re.findall(first_id_pattern, r.text)) != 50:
                raise SystemExit(f"{r.url}: {r.status_code}, expected 50 items")

        return check

    item = r'<li class="item" id="item-\d+"'
    deep = min(9000, total - 50)
    out = {
        f"/company/{co} (first page)": time_gets(client.get, f"/company/{co}", requests, page_check(item)),
        f"/company/{co}?offset={deep}": time_gets(
            client.get, f"/company/{co}?offset={deep}", requests, page_check(item)
        ),  # fmt: skip
        f"/deal/{a} (first page)": time_gets(client.get, f"/deal/{a}", requests, page_check(item)),
    }
    out.update(time_thread_move(client, ids, runs))
    return out


# -- servers and databases -----------------------------------------------------------------------------


def make_app(url: str) -> Any:
    from agent.web.app import create_app
    from store.db import open_db

    _, maker = open_db(url)
    return create_app(maker, host="127.0.0.1", secret_key=SECRET, now=lambda: NOW)


@contextlib.contextmanager
def http_server(url: str) -> Iterator[str]:
    """uvicorn in its own process (this script with ``_serve``), on a free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "INKLESS_NOW": NOW_ISO}
    proc = subprocess.Popen([sys.executable, __file__, "_serve", url, str(port)], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("uvicorn did not start") from None
                time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve(url: str, port: int) -> None:
    import uvicorn

    uvicorn.run(make_app(url), host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")


@contextlib.contextmanager
def fresh_pg(admin: str) -> Iterator[str]:
    import psycopg

    name = f"inkless_bench_{secrets.token_hex(6)}"
    admin = admin.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def database(args: argparse.Namespace) -> Iterator[str]:
    if args.pg is not None:
        with fresh_pg(args.pg or PG_ADMIN) as url:
            yield url
    elif args.db:
        yield args.db
    else:
        with tempfile.TemporaryDirectory(prefix="inkless-web-bench-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"


# -- main ----------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx
    from fastapi.testclient import TestClient

    from store.db import open_db

    with database(args) as url:
        engine, maker = open_db(url)
        t0 = time.perf_counter()
        ids = build(maker, args.activities, args.thread)
        built = time.perf_counter() - t0
        engine.dispose()
        result: dict[str, Any] = {
            "backend": url.split(":", 1)[0].split("+", 1)[0],
            "activities": ids["activities"],
            "thread": len(ids["thread"]),
            "build_s": round(built, 2),
            "python": platform.python_version(),
        }
        with TestClient(make_app(url)) as client:
            result["in-process"] = measure(client, ids, args.requests, args.runs)
        with http_server(url) as base, httpx.Client(base_url=base, timeout=60) as client:
            result["http"] = measure(client, ids, args.requests, args.runs)
    return result


def print_table(res: dict[str, Any]) -> None:
    print(
        f"\n{res['backend']}: one company with {res['activities']:,} activities (a {res['thread']}-message thread), "
        f"built in {res['build_s']} s; Python {res['python']}"
    )
    print(f"{'':<14}{'request':<44}{'n':>5}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for transport in ("in-process", "http"):
        for name, st in res[transport].items():
            print(f"{transport:<14}{name:<44}{st['n']:>5}{st['p50']:>10.1f}{st['p95']:>10.1f}{st['max']:>10.1f}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_serve"]:
        serve(argv[1], int(argv[2]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--db", help="database URL (empty; default: a temporary SQLite file)")
    where.add_argument("--pg", nargs="?", const="", default=None, metavar="ADMIN_URL",
                       help=f"a throwaway PostgreSQL database on this server (default {PG_ADMIN})")  # fmt: skip
    ap.add_argument("--activities", type=int, default=10_000)
    ap.add_argument("--thread", type=int, default=500, help="messages in the thread that is moved")
    ap.add_argument("--requests", type=int, default=200, help="timed GETs per page and transport")
    ap.add_argument("--runs", type=int, default=5, help="timed thread moves per transport (after a warm-up)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    if args.activities < args.thread + 3 + 60:
        ap.error("--activities must exceed --thread by at least 63")
    res = run(args)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print_table(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
