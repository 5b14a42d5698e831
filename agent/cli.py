"""The ``inkless`` command line (the contract in DESIGN.md "Commands")."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from matching.identity import clean_email
from providers.base import REGISTRY, make_source
from providers.errors import BadInput, ConfigError, InklessError, NotFound
from store.db import default_url, open_db
from store.export import activity_rows, entity_rows
from store.models import Activity, Quarantine, Skipped, Source
from store.queries import get_setting, internal_domains, refresh_due_rollups, set_setting

from . import clock

app = typer.Typer(
    help="inkless: every customer email and meeting logged and attributed, nobody typing.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
crm_app = typer.Typer(help="The team's CRM: import contacts, companies and deals.", no_args_is_help=True)
source_app = typer.Typer(help="Mailboxes and calendars to capture from.", no_args_is_help=True)
export_app = typer.Typer(help="Export activities or entities (JSONL or CSV).", no_args_is_help=True)
app.add_typer(crm_app, name="crm")
app.add_typer(source_app, name="source")
app.add_typer(export_app, name="export")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class State:
    url: str | None = None
    _db: tuple[Any, sessionmaker[Session]] | None = None

    def sessions(self) -> sessionmaker[Session]:
        if self._db is None:
            url = self.url or default_url()
            try:
                self._db = open_db(url)
            except OperationalError as exc:
                reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "cannot connect"
                raise ConfigError(f"cannot open the database: {reason}") from None
        return self._db[1]


state = State()


@app.callback()
def _root(
    db: Annotated[
        str | None,
        typer.Option(
            "--db", envvar="INKLESS_DATABASE_URL", help="Database URL (default: a SQLite file in your data dir)."
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    state.url = db
    state._db = None
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


# ---------------------------------------------------------------------------------------------- init
@app.command()
def init(
    internal_domain: Annotated[
        list[str], typer.Option("--internal-domain", help="A domain of your own team (repeatable).")
    ] = [],
) -> None:
    """Create the database and record the team's own domains (idempotent; adds to earlier ones)."""
    sessions = state.sessions()
    with sessions.begin() as s:
        domains = set(internal_domains(s))
        for d in internal_domain:
            d = d.strip().lower().lstrip("@").strip(".")
            if not d or "." not in d or " " in d:
                raise BadInput(f"not a domain: {d!r}")
            domains.add(d)
        set_setting(s, "internal_domains", sorted(domains))
    out.print(f"database ready; internal domains: {', '.join(sorted(domains)) or '(none yet)'}")


# ----------------------------------------------------------------------------------------------- crm
@crm_app.command("import")
def crm_import(
    companies: Annotated[Path | None, typer.Option(help="Companies CSV.")] = None,
    contacts: Annotated[Path | None, typer.Option(help="Contacts CSV.")] = None,
    deals: Annotated[Path | None, typer.Option(help="Deals CSV.")] = None,
) -> None:
    """Import (upsert by CRM id) generic, HubSpot or Salesforce CSV exports. All or nothing."""
    from .crm import import_and_reattribute

    if not (companies or contacts or deals):
        raise BadInput("give at least one of --companies, --contacts, --deals")
    for p in (companies, contacts, deals):
        if p is not None and not p.is_file():
            raise BadInput(f"{p}: no such file")
    rep = import_and_reattribute(state.sessions(), clock.now(), companies, contacts, deals)
    r = rep.imported
    formats = ", ".join(f"{Path(k).name}: {v}" for k, v in r.formats.items())
    out.print(
        f"companies +{r.companies_added} ~{r.companies_updated}, contacts +{r.contacts_added} ~{r.contacts_updated}, "
        f"deals +{r.deals_added} ~{r.deals_updated} ({formats}); "
        f"{rep.reattributed} activities re-attributed, {rep.revived} skipped items now logged"
    )


# -------------------------------------------------------------------------------------------- source
@source_app.command("add")
def source_add(
    kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(sorted(REGISTRY))}.")],
    location: Annotated[str | None, typer.Argument(help="Folder, file or URL (not for imap).")] = None,
    owner: Annotated[str, typer.Option(help="The mailbox or calendar owner's address.")] = "",
    host: Annotated[str | None, typer.Option(help="IMAP server host.")] = None,
    port: Annotated[int | None, typer.Option(help="IMAP port (default 993 with --tls, else 143).")] = None,
    user: Annotated[str | None, typer.Option(help="Login name (IMAP, CalDAV).")] = None,
    password_cmd: Annotated[
        str | None, typer.Option(help="Shell command printing the password (e.g. 'pass show mail').")
    ] = None,
    password_env: Annotated[str | None, typer.Option(help="Environment variable holding the password.")] = None,
    tls: Annotated[bool, typer.Option("--tls", help="IMAP over TLS (the default).")] = False,
    starttls: Annotated[bool, typer.Option("--starttls", help="IMAP with STARTTLS.")] = False,
    plain: Annotated[bool, typer.Option("--plain", help="IMAP without TLS (loopback/testing only).")] = False,
    folders: Annotated[
        list[str], typer.Option("--folders", help="IMAP folders (repeat or comma-separate; default INBOX + Sent).")
    ] = [],
    calendar: Annotated[str | None, typer.Option(help="CalDAV calendar name (default: all).")] = None,
) -> None:
    """Add a mailbox or calendar to capture from. Passwords are never stored: give a command or a variable."""
    from providers.secrets import secret_settings

    addr = clean_email(owner)
    if addr is None:
        raise BadInput(f"--owner is not an email address: {owner!r}")
    if kind not in REGISTRY:
        raise BadInput(f"unknown source kind {kind!r}; known: {', '.join(sorted(REGISTRY))}")
    settings: dict[str, Any] = secret_settings(password_cmd, password_env)
    if location and "://" in location and "@" in location.split("://", 1)[1].split("/", 1)[0]:
        raise BadInput("do not put a user or password in the URL: use --user and --password-cmd / --password-env")
    if kind == "imap":
        if not host or not user:
            raise BadInput("an imap source needs --host and --user")
        if sum((tls, starttls, plain)) > 1:
            raise BadInput("give one of --tls, --starttls, --plain")
        security = "starttls" if starttls else "plain" if plain else "tls"
        port = port or (993 if security == "tls" else 143)
        wanted = [f.strip() for item in folders for f in item.split(",") if f.strip()]
        settings.update(host=host, port=port, user=user, security=security)
        if wanted:
            settings["folders"] = wanted
        location = f"imap://{user}@{host}:{port}"
    elif kind == "caldav":
        if not location or "://" not in location:
            raise BadInput("a caldav source needs the server or calendar URL")
        if user:
            settings["user"] = user
        if calendar:
            settings["calendar"] = calendar
    elif not location:
        raise BadInput(f"a {kind} source needs a location (folder, file or URL)")
    elif "://" not in location:
        location = str(Path(location).expanduser().resolve())
    assert location is not None
    make_source(kind, location, addr, settings).check()
    with state.sessions().begin() as s:
        existing = s.execute(
            select(Source).where(Source.kind == kind, Source.location == location, Source.owner == addr)
        ).scalar_one_or_none()
        if existing is not None:
            out.print(f"source {existing.id} already exists: {kind} {location} ({addr})")
            return
        src = Source(kind=kind, location=location, owner=addr, settings=settings, status="new", created_at=clock.now())
        s.add(src)
        s.flush()
        out.print(f"added source {src.id}: {kind} {location} ({addr}); run `inkless sync`")


@source_app.command("status")
def source_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Per source and folder: last sync, items seen / logged / skipped / quarantined, verified complete through."""
    from .views import source_status_view

    with state.sessions()() as s:
        data = source_status_view(s)
    if as_json:
        out.print_json(json.dumps(data))
        return
    for src in data:
        out.print(
            f"[bold]source {src['id']}[/bold] {src['kind']} {escape(src['location'])} ({src['owner']}): "
            f"{src['status']}, last sync {(src['last_sync_at'] or 'never')[:19]}"
        )
        if src["last_error"]:
            out.print(f"  [red]{escape(src['last_error'])}[/red]")
        for f in src["folders"]:
            verified = f["verified_through"] or "not yet"
            out.print(
                f"  {escape(f['folder'] or '(all)'):<24} seen {f['seen']:>7}  logged {f['logged']:>7}  "
                f"skipped {f['skipped']:>7}  quarantined {f['quarantined']:>5}  verified complete through {verified}"
            )


@source_app.command("list")
def source_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The sources with their status, last sync and last error."""
    with state.sessions()() as s:
        rows = s.execute(select(Source).order_by(Source.id)).scalars().all()
        data = [
            {
                "id": r.id,
                "kind": r.kind,
                "location": r.location,
                "owner": r.owner,
                "status": r.status,
                "last_sync_at": r.last_sync_at.isoformat() if r.last_sync_at else None,
                "items_seen": r.item_count,
                "last_error": r.last_error,
            }
            for r in rows
        ]
    if as_json:
        out.print_json(json.dumps(data))
        return
    t = Table("id", "kind", "location", "owner", "status", "last sync", "seen", "last error")
    for d in data:
        t.add_row(
            str(d["id"]),
            d["kind"],
            d["location"],
            d["owner"],
            d["status"],
            (d["last_sync_at"] or "never")[:19],
            str(d["items_seen"]),
            d["last_error"] or "",
        )
    out.print(t)


def _get_source(s: Session, source_id: int) -> Source:
    src = s.get(Source, source_id)
    if src is None:
        raise NotFound(f"no source with id {source_id} (see `inkless source list`)")
    return src


@source_app.command("remove")
def source_remove(source_id: int) -> None:
    """Stop capturing from a source. Activities other sources also hold are kept."""
    from store.models import SyncState
    from store.queries import delete_activities, refresh_rollups

    with state.sessions().begin() as s:
        src = _get_source(s, source_id)
        mine = {a for (a,) in s.execute(select(SyncState.activity_id).where(SyncState.source_id == source_id)) if a}
        shared = {
            a
            for (a,) in s.execute(
                select(SyncState.activity_id).where(SyncState.source_id != source_id, SyncState.activity_id.in_(mine))
            )
        }
        touched = delete_activities(s, sorted(mine - shared))
        s.delete(src)
        s.flush()
        refresh_rollups(s, touched, clock.now())
    out.print(f"removed source {source_id} and {len(mine - shared)} activities only it held")


@source_app.command("confirm-empty")
def source_confirm_empty(source_id: int) -> None:
    """Accept that a calendar which now lists nothing really is empty (its meetings are then removed)."""
    with state.sessions().begin() as s:
        src = _get_source(s, source_id)
        src.settings = {**(src.settings or {}), "confirm_empty": True}
    out.print(f"source {source_id}: the next sync removes what the calendar no longer lists")


# ------------------------------------------------------------------------------------------- connect
connect_app = typer.Typer(help="Connect a Google, Microsoft 365 or Exchange account once.", no_args_is_help=True)
app.add_typer(connect_app, name="connect")


def _add_connected(conn: Any, owner: str) -> None:
    with state.sessions().begin() as s:
        for kind, location, settings in conn.sources:
            row = s.execute(
                select(Source).where(Source.kind == kind, Source.location == location, Source.owner == owner)
            ).scalar_one_or_none()
            if row is None:
                row = Source(kind=kind, location=location, owner=owner, settings={}, created_at=clock.now())
                s.add(row)
            row.settings = settings  # a reconnect keeps the cursor and history, renews the grant
            row.status, row.last_error = "new" if row.id is None else "ok", None
            s.flush()
            out.print(f"source {row.id}: {kind} {location}", markup=False)
    out.print("connected; run `inkless sync`")


def _owner(owner: str) -> str:
    addr = clean_email(owner)
    if addr is None:
        raise BadInput(f"--owner is not an email address: {owner!r}")
    return addr


@connect_app.command("gmail")
def connect_gmail(
    owner: Annotated[str, typer.Option(help="The Google account's address.")],
    client_secrets: Annotated[Path, typer.Option(help="OAuth client file of your Google Cloud project.")] = Path(
        "client_secret.json"
    ),
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Print the address instead (headless).")] = False,
    port: Annotated[int, typer.Option(help="Loopback port for the redirect (0: any free port).")] = 0,
    api_endpoint: Annotated[str | None, typer.Option(help="Gmail API endpoint (private or test server).")] = None,
) -> None:
    """Let inkless read Gmail and Google Calendar (read-only scopes). Adds a Gmail and a Calendar source."""
    from .connect import connect_google

    addr = _owner(owner)
    conn = connect_google(addr, client_secrets, not no_browser, port, api_endpoint, announce=out.print)
    _add_connected(conn, addr)


@connect_app.command("microsoft")
def connect_ms(
    owner: Annotated[str, typer.Option(help="The Microsoft 365 account's address.")],
    client_id: Annotated[
        str | None, typer.Option(envvar="INKLESS_MS_CLIENT_ID", help="Application (client) id of your app.")
    ] = None,
    tenant: Annotated[str, typer.Option(help="Tenant id or domain (default: common).")] = "common",
    cloud: Annotated[str, typer.Option(help="global, usgov, usgov-dod or china.")] = "global",
    authority: Annotated[str | None, typer.Option(help="Login authority URL (overrides --cloud).")] = None,
    graph_endpoint: Annotated[str | None, typer.Option(help="Graph endpoint URL (overrides --cloud).")] = None,
) -> None:
    """Device-code sign-in (Mail.Read, Calendars.Read). Adds a Graph mail and a Graph calendar source."""
    from .connect import connect_microsoft

    if not client_id:
        raise BadInput("give --client-id (or INKLESS_MS_CLIENT_ID): the app registered in your Entra ID tenant")
    addr = _owner(owner)
    conn = connect_microsoft(addr, client_id, tenant, cloud, authority, graph_endpoint, announce=out.print)
    _add_connected(conn, addr)


@connect_app.command("exchange")
def connect_ex(
    owner: Annotated[str, typer.Option(help="The mailbox address.")],
    server: Annotated[str, typer.Option(help="Exchange server host (on-premises).")],
    auth: Annotated[str, typer.Option(help="ntlm, basic or oauth.")] = "ntlm",
    user: Annotated[str | None, typer.Option(help="Login (DOMAIN\\user or UPN; default: the owner).")] = None,
    password_cmd: Annotated[str | None, typer.Option(help="Shell command printing the password.")] = None,
    password_env: Annotated[str | None, typer.Option(help="Environment variable holding the password.")] = None,
) -> None:
    """Exchange on-premises over EWS (Exchange Online: use `connect microsoft`)."""
    from providers.secrets import secret_settings

    from .connect import connect_exchange

    addr = _owner(owner)
    conn = connect_exchange(addr, server, auth, user, secret_settings(password_cmd, password_env))
    _add_connected(conn, addr)


# ---------------------------------------------------------------------------------------------- sync
@app.command()
def sync(
    source: Annotated[list[int] | None, typer.Option("--source", help="Only these source ids.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    workers: Annotated[int | None, typer.Option(help="Parser processes (default: cores, max 4).")] = None,
    batch_size: Annotated[int, typer.Option(help="Items per transaction.", min=1, max=5000)] = 500,
    watch: Annotated[bool, typer.Option("--watch", help="Keep every source current until interrupted.")] = False,
    interval: Annotated[
        float, typer.Option(help="With --watch: seconds between polls of sources without push.", min=0.2)
    ] = 300.0,
) -> None:
    """Capture everything new from every source (incremental; safe to interrupt and rerun).

    SIGINT / SIGTERM finish the batch in hand, commit it and exit cleanly."""
    from .sync import SyncEngine

    sessions = state.sessions()
    with sessions() as s:
        if not internal_domains(s) and not s.execute(select(Source.id).limit(1)).first():
            raise ConfigError("nothing to sync yet: run `inkless init` and `inkless source add` first")
    stop = threading.Event()
    _on_signals(stop)
    show = not quiet and not watch and sys.stderr.isatty()
    failed = 0
    rounds = 0
    while True:
        with _progress(show) as progress_cb:
            engine = SyncEngine(
                sessions, clock.now(), batch_size=batch_size, workers=workers, progress=progress_cb, stop=stop
            )
            reports = engine.run(source or None)
        rounds += 1
        failed = _report(reports, quiet=quiet or (watch and rounds > 1), changes_only=watch and rounds > 1)
        if not watch or stop.is_set():
            break
        _wait_for_changes(sessions, source or None, interval, stop)
    if stop.is_set():
        out.print("stopped; everything up to the last batch is stored")
    if failed and not watch:
        raise typer.Exit(1)


def _on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():  # a second signal: give up at once (the open batch is rolled back, never half-stored)
            raise KeyboardInterrupt
        stop.set()
        err.print("finishing the batch in hand… (again to abort)")

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def _report(reports: list[Any], quiet: bool, changes_only: bool) -> int:
    failed = 0
    for r in reports:
        st = r.stats
        if r.error:
            failed += 1
            err.print(f"source {r.source_id} ({r.label}): {r.error}", style="red", markup=False)
        if changes_only and not (st.logged or st.merged or st.removed):
            continue
        if not quiet or changes_only:
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(st.reasons.items()))
            when = f"{clock.now():%H:%M:%S} " if changes_only else ""
            out.print(
                f"{when}source {r.source_id} {r.label}: {st.seen} new items, {st.logged} logged, "
                f"{st.merged} already known, {st.skipped} skipped{f' ({reasons})' if reasons else ''}, "
                f"{st.quarantined} quarantined" + (f", {st.removed} removed" if st.removed else ""),
                markup=False,
            )
    return failed


def _wait_for_changes(
    sessions: sessionmaker[Session], only: list[int] | None, interval: float, stop: threading.Event
) -> None:
    """Sleep until a source pushes a change (IMAP IDLE), the poll interval passes, or a signal arrives."""
    from providers.base import SyncContext

    wake = threading.Event()
    round_over = threading.Event()  # ends every push watcher of this round at once
    with sessions() as s:
        q = select(Source)
        if only:
            q = q.where(Source.id.in_(only))
        rows = [(r.kind, r.location, r.owner, r.settings) for r in s.execute(q).scalars()]
    ctx = SyncContext(clock.now(), stop=round_over)

    def watch(kind: str, location: str, owner: str, settings: dict[str, Any]) -> None:
        src = None
        try:
            src = make_source(kind, location, owner, settings)
            if src.wait_for_change(ctx, interval):
                wake.set()
        except Exception:  # a broken push connection only means we fall back to polling
            logging.getLogger("inkless.watch").info("push watch of %s failed", location, exc_info=True)
        finally:
            if src is not None:
                src.close()

    threads = [threading.Thread(target=watch, args=row, daemon=True) for row in rows if row[0] in PUSH_KINDS]
    for t in threads:
        t.start()
    deadline = time.monotonic() + interval
    while not stop.is_set() and not wake.is_set() and time.monotonic() < deadline:
        time.sleep(min(0.2, interval))
    round_over.set()
    for t in threads:
        t.join(timeout=5)


#: sources whose wait_for_change really waits for the server (others are simply polled)
PUSH_KINDS = {"imap"}


@contextmanager
def _progress(show: bool) -> Iterator[Any]:
    if not show:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as p:
        tasks: dict[str, Any] = {}

        def cb(label: str, done: int, total: int | None) -> None:
            if label not in tasks:
                tasks[label] = p.add_task(label[-50:], total=total)
            p.update(tasks[label], completed=done, total=total)

        yield cb


# ------------------------------------------------------------------------------------------- skipped
@app.command()
def skipped(
    reason: Annotated[str | None, typer.Option(help="Only this reason.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to list (0: counts only).")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What was deliberately not logged (and what could not be read), with the reason."""
    with state.sessions()() as s:
        counts = dict(s.execute(select(Skipped.reason, func.count()).group_by(Skipped.reason)).all())
        qcount = s.execute(select(func.count()).select_from(Quarantine)).scalar_one()
        q = select(Skipped).order_by(Skipped.occurred_at.desc()).limit(limit)
        if reason and reason != "quarantined":
            q = q.where(Skipped.reason == reason)
        rows = [] if reason == "quarantined" else s.execute(q).scalars().all()
        qrows = (
            s.execute(select(Quarantine).order_by(Quarantine.id).limit(limit)).scalars().all()
            if reason in (None, "quarantined")
            else []
        )
        data = {
            "counts": {**counts, "quarantined": qcount},
            "skipped": [
                {
                    "source_id": r.source_id,
                    "reason": r.reason,
                    "detail": r.detail,
                    "kind": r.kind,
                    "occurred_at": r.occurred_at.isoformat() if r.occurred_at else None,
                    "sender": r.sender,
                    "item": r.locator,
                }
                for r in rows
            ],
            "quarantined": [
                {"source_id": r.source_id, "item": r.locator or r.provider_id, "reason": r.reason} for r in qrows
            ],
        }
    if as_json:
        out.print_json(json.dumps(data))
        return
    out.print("  ".join(f"{k}: {v}" for k, v in sorted(data["counts"].items())))
    if limit:
        for d in data["skipped"]:
            out.print(f"{(d['occurred_at'] or '')[:16]}  {d['reason']:<20} {d['sender'] or '':<35} {d['detail']}")
        for d in data["quarantined"]:
            out.print(f"quarantined  source {d['source_id']}  {d['item']}: {d['reason']}")


# ------------------------------------------------------------------------------------------ timeline
class EntityType(str, Enum):
    contact = "contact"
    company = "company"
    deal = "deal"


@app.command()
def timeline(
    entity: Annotated[EntityType, typer.Argument(help="contact, company or deal")],
    query: Annotated[str, typer.Argument(help="Name, email, domain or CRM id (fuzzy).")],
    limit: Annotated[int, typer.Option(help="Items to show.")] = 30,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One contact's, company's or deal's activity: upcoming meetings first, then newest first."""
    from .views import find_entity, timeline_view

    sessions = state.sessions()
    now = clock.now()
    with sessions.begin() as s:
        refresh_due_rollups(s, now)
    with sessions() as s:
        ent = find_entity(s, entity.value, query)
        view = timeline_view(s, entity.value, ent, now, limit)
    if as_json:
        out.print_json(json.dumps(view, default=str))
        return
    from .views import render_timeline

    render_timeline(out, view)


@app.command()
def explain(activity_id: int) -> None:
    """Why an activity was attributed the way it was: each link with its evidence."""
    from .views import explain_view

    with state.sessions()() as s:
        act = s.get(Activity, activity_id)
        if act is None:
            raise NotFound(f"no activity {activity_id}")
        for line in explain_view(s, act):
            out.print(line)


# -------------------------------------------------------------------------------------------- review
def _read_key(prompt: str) -> str:
    """One key on a terminal; one line when input is piped (scripts, tests)."""
    out.print(prompt, end="", markup=False)
    if sys.stdin.isatty():
        key = click.getchar()
        out.print(key, markup=False)
        return key.strip().lower()
    line = sys.stdin.readline()
    if not line:
        return "q"
    return line.strip().lower()


@app.command()
def review(
    limit: Annotated[int, typer.Option(help="Items to go through.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="List the queue instead of working it.")] = False,
    actor: Annotated[str | None, typer.Option(help="Who decides (recorded with each decision).")] = None,
) -> None:
    """Work the review queue: 1-9 picks a deal, n = no deal applies, s = skip, q = quit."""
    from .review import decide, queue

    sessions = state.sessions()
    with sessions() as s:
        items = queue(s, limit)
    if as_json:
        out.print_json(json.dumps(items))
        return
    if not items:
        out.print("nothing to review")
        return
    who = actor or os.environ.get("USER") or "someone"
    done = 0
    for n, it in enumerate(items, 1):
        out.print()
        out.print(f"[bold]{n}/{len(items)}[/bold] {it['kind']} {it['when'][:16]}  {escape(it['subject'])}")
        out.print(f"   with {escape(', '.join(it['people'])[:100])} ({escape(', '.join(it['companies']))})")
        for i, c in enumerate(it["candidates"][:9], 1):
            out.print(f"   [{i}] {escape(c['name'])}  ({c['probability']:.2f})", markup=False)
        key = _read_key("   deal 1-9, n = none, s = skip, q = quit: ")
        if key == "q":
            break
        if key in ("s", ""):
            continue
        if key == "n":
            choice = None
        elif key.isdigit() and 1 <= int(key) <= len(it["candidates"][:9]):
            choice = it["candidates"][int(key) - 1]["deal_id"]
        else:
            out.print("   (not a choice; skipped)")
            continue
        with sessions.begin() as s:
            status = decide(s, it["id"], choice, who, clock.now())
        done += 1
        out.print(f"   {status}")
    out.print(f"{done} decided")


# ------------------------------------------------------------------------------------- corrections
class Scope(str, Enum):
    item = "item"
    thread = "thread"
    sender = "sender"
    domain = "domain"


def _actor(actor: str | None) -> str:
    return actor or os.environ.get("USER") or "someone"


def _resolve(s: Session, kind: str, query: str) -> Any:
    from .views import MODELS, find_entity

    if query.startswith("id:") and query[3:].isdigit():
        ent = s.get(MODELS[kind], int(query[3:]))
        if ent is None:
            raise NotFound(f"no {kind} with id {query[3:]}")
        return ent
    return find_entity(s, kind, query)


@app.command()
def reassign(
    activity_id: Annotated[int, typer.Argument(help="The activity (see timeline --json or the web page).")],
    deal: Annotated[str | None, typer.Option(help="Deal: name, CRM id or id:N.")] = None,
    company: Annotated[str | None, typer.Option(help="Company: name, domain, CRM id or id:N.")] = None,
    contact: Annotated[str | None, typer.Option(help="Contact: name, email, CRM id or id:N.")] = None,
    scope: Annotated[Scope, typer.Option(help="item, thread (and its future replies), sender, domain.")] = Scope.item,
    address: Annotated[
        str | None, typer.Option(help="Whose contact is replaced / which sender (default: the outside sender).")
    ] = None,
    actor: Annotated[str | None, typer.Option(help="Who corrects (recorded in the audit log).")] = None,
) -> None:
    """Correct an item's deal, company or contact; a wider scope becomes a rule for future mail too."""
    from .corrections import reassign as do_reassign

    chosen = [(k, v) for k, v in (("deal", deal), ("company", company), ("contact", contact)) if v]
    if len(chosen) != 1:
        raise BadInput("give exactly one of --deal, --company, --contact")
    kind, query = chosen[0]
    with state.sessions().begin() as s:
        ent = _resolve(s, kind, query)
        corr = do_reassign(s, activity_id, kind, ent.id, scope.value, _actor(actor), clock.now(), address)
        rule = f", rule #{corr.rule_id} for future mail" if corr.rule_id else ""
        out.print(
            f"correction #{corr.id}: {corr.affected} item(s) → {kind} {escape(ent.name or '')}{rule} "
            f"(undo: inkless undo {corr.id})"
        )


@app.command()
def ignore(
    activity_id: Annotated[int | None, typer.Argument(help="An activity to mark not business.")] = None,
    sender: Annotated[str | None, typer.Option(help="Ignore everything from this address.")] = None,
    domain: Annotated[str | None, typer.Option(help="Ignore everything from this domain.")] = None,
    scope: Annotated[Scope, typer.Option(help="With an activity: item, thread, sender or domain.")] = Scope.item,
    actor: Annotated[str | None, typer.Option(help="Who decides (recorded in the audit log).")] = None,
) -> None:
    """Mark mail as not business / private: out of every timeline and export, and future mail skipped."""
    from .corrections import ignore as do_ignore

    if sum(x is not None for x in (activity_id, sender, domain)) != 1:
        raise BadInput("give one of: an activity id, --sender ADDRESS, --domain DOMAIN")
    sc = scope.value
    if sender is not None:
        sc = "sender"
    elif domain is not None:
        sc = "domain"
    with state.sessions().begin() as s:
        corr = do_ignore(
            s, _actor(actor), clock.now(), activity_id=activity_id, scope=sc, address=sender, domain=domain
        )
        rule = f"; rule #{corr.rule_id} skips future mail" if corr.rule_id else ""
        out.print(
            f"correction #{corr.id}: {corr.affected} item(s) marked not business{rule} (undo: inkless undo {corr.id})"
        )


@app.command()
def rules(
    all_rules: Annotated[bool, typer.Option("--all", help="Include undone rules.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The rules corrections left for future mail."""
    from .corrections import rules_view

    with state.sessions()() as s:
        rows = rules_view(s, include_undone=all_rules)
    if as_json:
        out.print_json(json.dumps(rows))
        return
    if not rows:
        out.print("no rules yet (a correction with --scope thread|sender|domain, or inkless ignore, makes one)")
        return
    t = Table("#", "covers", "does", "by", "since", "items", "correction", box=None, pad_edge=False)
    for r in rows:
        does = "not business" if r["action"] == "ignore" else f"→ {r['target']['type']} {r['target']['name']}"
        if r["undone_at"]:
            does += f" (undone {r['undone_at'][:10]})"
        t.add_row(
            str(r["id"]),
            escape(r["covers"]),
            escape(does),
            escape(r["actor"] or ""),
            (r["created_at"] or "")[:10],
            str(r["items"]),
            str(r["correction"] or ""),
        )
    out.print(t)


@app.command()
def undo(
    correction_id: Annotated[int | None, typer.Argument(help="The correction (default: the latest).")] = None,
    actor: Annotated[str | None, typer.Option(help="Who undoes (recorded in the audit log).")] = None,
) -> None:
    """Take a correction back: items restored, its rule retired, later items handed back to the matcher."""
    from .corrections import undo as do_undo

    with state.sessions().begin() as s:
        corr = do_undo(s, _actor(actor), clock.now(), correction_id)
        n = len(corr.before or {})
        out.print(f"undid correction #{corr.id} ({n} item(s) restored{', rule retired' if corr.rule_id else ''})")


@app.command()
def stale(
    days: Annotated[int | None, typer.Option(help="No two-way contact for this many days (default 14).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Open deals going cold (no reply or no outreach for N days) and open deals with no next meeting."""
    from .pages import stale_days, stale_view

    sessions = state.sessions()
    now = clock.now()
    with sessions.begin() as s:
        refresh_due_rollups(s, now)
    with sessions() as s:
        view = stale_view(s, now, stale_days(days))
    if as_json:
        out.print_json(json.dumps(view))
        return
    out.print(f"[bold]going cold[/bold] (no two-way contact in {view['days']} days): {len(view['cold'])}")
    t = Table("deal", "company", "last in", "last out", "next meeting", "why", box=None, pad_edge=False)
    for r in view["cold"]:
        t.add_row(
            escape(r["name"]),
            escape(r["company"] or ""),
            (r["last_inbound_at"] or "—")[:10],
            (r["last_outbound_at"] or "—")[:10],
            (r["next_meeting_at"] or "—")[:10],
            escape("; ".join(r["reasons"])),
        )
    out.print(t)
    out.print(f"[bold]no next meeting[/bold]: {len(view['no_next_meeting'])} open deal(s)")
    for r in view["no_next_meeting"][:50]:
        out.print(
            f"  {escape(r['name'])} ({escape(r['company'] or '—')}), last contact {(r['last_contact_at'] or '—')[:10]}"
        )


# ---------------------------------------------------------------------------------------------- web
user_app = typer.Typer(
    help="People who may sign in to the web page when it listens beyond loopback.", no_args_is_help=True
)
app.add_typer(user_app, name="user")


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="A name or email to sign in with.")],
    token: Annotated[bool, typer.Option(help="Generate a random token instead of asking for a password.")] = False,
) -> None:
    """Add a user (or set a new password). The password is read from the terminal or one stdin line."""
    import secrets as pysecrets

    from .web.auth import add_user

    if token:
        secret = pysecrets.token_urlsafe(24)
    elif sys.stdin.isatty():
        secret = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    else:
        secret = sys.stdin.readline().rstrip("\n")
    with state.sessions().begin() as s:
        add_user(s, name, secret, clock.now())
    if token:
        out.print(f"user {escape(name)} added; sign-in token (shown once): {secret}")
    else:
        out.print(f"user {escape(name)} added")


@user_app.command("list")
def user_list() -> None:
    """Users who may sign in."""
    from store.models import User

    with state.sessions()() as s:
        for u in s.execute(select(User).order_by(User.name)).scalars():
            out.print(f"{escape(u.name)}{' (disabled)' if u.disabled_at else ''}")


@user_app.command("remove")
def user_remove(name: str) -> None:
    """Disable a user (their sessions stop working at once)."""
    from .web.auth import disable_user

    with state.sessions().begin() as s:
        disable_user(s, name, clock.now())
    out.print(f"user {escape(name)} disabled")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on; beyond loopback a login is required.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8765,
) -> None:
    """The web page: Today, search, timelines, the review queue, corrections, rules and the audit log."""
    import uvicorn

    from .web.app import create_app

    sessions = state.sessions()
    application = create_app(sessions, host=host)
    out.print(f"inkless on http://{host}:{port}/ (Ctrl-C stops)")
    uvicorn.run(application, host=host, port=port, log_level="warning")


# -------------------------------------------------------------------------------------------- export
class Format(str, Enum):
    jsonl = "jsonl"
    csv = "csv"


def _write(rows: Iterator[dict[str, Any]], fmt: Format, dest: Path) -> int:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer: csv.DictWriter[str] | None = None
        for row in rows:
            if fmt is Format.jsonl:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                flat = {
                    k: (json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v) for k, v in row.items()
                }
                if writer is None:
                    writer = csv.DictWriter(fh, fieldnames=list(flat))
                    writer.writeheader()
                writer.writerow(flat)
            n += 1
    os.replace(tmp, dest)
    return n


EXPORT_MARKS = {"activities": "export.activities.at", "entities": "export.entities.at"}


def _instant(text: str, option: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"{option}: {text!r} is not a date and time (e.g. 2026-11-24T09:00:00Z)") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _export_changes(
    what: str,
    rows: Any,
    fmt: Format,
    out_path: Path,
    changed: bool,
    changed_since: str | None,
    before: Any = None,
) -> None:
    """Write an export, all of it or (--changed, --changed-since) what changed since the last export of the same
    kind or an instant, and remember when this export started: the next --changed starts there, so what changes
    while it runs comes again."""
    if changed and changed_since:
        raise BadInput("give --changed or --changed-since, not both")
    since = _instant(changed_since, "--changed-since") if changed_since else None
    sessions = state.sessions()
    if before is not None:  # (before the export starts: what it changes is in this export, not the next)
        with sessions.begin() as s:
            before(s, clock.now())
    started = clock.now()
    with sessions() as s:
        if changed:
            mark = get_setting(s, EXPORT_MARKS[what])
            since = _instant(mark, EXPORT_MARKS[what]) if mark else datetime(1970, 1, 1, tzinfo=UTC)
        n = _write(rows(s, changed_since=since), fmt, out_path)
    with sessions.begin() as s:
        set_setting(s, EXPORT_MARKS[what], started.astimezone(UTC).isoformat())
    label = what if since is None else f"{what} changed since {since.astimezone(UTC):%Y-%m-%d %H:%M:%SZ}"
    out.print(f"wrote {n} {label} to {out_path}")


@export_app.command("activities")
def export_activities(
    out_path: Annotated[Path, typer.Option("--out", help="File to write.")],
    fmt: Annotated[Format, typer.Option("--format")] = Format.jsonl,
    changed: Annotated[
        bool,
        typer.Option(
            "--changed",
            help="Only activities logged or re-linked since the last activities export (all, the first time).",
        ),
    ] = False,
    changed_since: Annotated[
        str | None, typer.Option("--changed-since", help="Only activities logged or re-linked since this instant.")
    ] = None,
) -> None:
    """Every logged activity with its contacts, companies, deal, status, confidence and evidence.

    With --changed or --changed-since, only what changed (new items, other links or status after a correction,
    a review decision or a CRM change), each with its updated_at; an item marked not business since comes once
    more with status "ignored" and no links, for the receiving CRM to remove."""
    _export_changes("activities", activity_rows, fmt, out_path, changed, changed_since)


@export_app.command("entities")
def export_entities(
    out_path: Annotated[Path, typer.Option("--out", help="File to write.")],
    fmt: Annotated[Format, typer.Option("--format")] = Format.jsonl,
    changed: Annotated[
        bool,
        typer.Option(
            "--changed",
            help="Only entities whose roll-ups changed since the last entities export (all, the first time).",
        ),
    ] = False,
    changed_since: Annotated[
        str | None, typer.Option("--changed-since", help="Only entities whose roll-ups changed since this instant.")
    ] = None,
) -> None:
    """Contacts, companies and deals with last contact / inbound / outbound, next meeting, counts.

    With --changed or --changed-since, only those whose roll-ups changed (new mail or meetings, a correction
    moving items, a meeting that has started), each with its updated_at."""
    _export_changes("entities", entity_rows, fmt, out_path, changed, changed_since, before=refresh_due_rollups)


# ---------------------------------------------------------------------------------------------- demo
@app.command()
def demo(
    keep: Annotated[
        bool, typer.Option(help="Load into the --db / default database instead of a temporary one.")
    ] = False,
) -> None:
    """Load the bundled sample (CRM, a mailbox, a calendar), sync it and show what inkless made of it."""
    from .demo import run_demo

    if not keep and state.url is None:
        tmp = tempfile.mkdtemp(prefix="inkless-demo-")
        state.url = f"sqlite:///{Path(tmp) / 'demo.db'}"
        state._db = None
        out.print(f"[dim]demo database: {Path(tmp) / 'demo.db'} (throw-away; use --keep to load your own)[/dim]")
    run_demo(state.sessions(), out, f" --db {state.url}" if state.url else "")


def main() -> None:
    try:
        app()
    except InklessError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(exc.exit_code)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
        err.print(f"[red]error:[/red] database error: {reason}")
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted; everything stored so far is kept, rerun to continue")
        sys.exit(130)


if __name__ == "__main__":
    main()

_ = get_setting
