"""Read views for the CLI (and later the web page): entity lookup, timelines, explanations."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from rapidfuzz import fuzz, process
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from matching.identity import clean_email, email_key, fold
from providers.errors import NotFound
from store.export import iso
from store.models import (
    Activity,
    Attribution,
    Company,
    CompanyDomain,
    Contact,
    ContactEmail,
    Deal,
    Participant,
)

MODELS: dict[str, Any] = {"contact": Contact, "company": Company, "deal": Deal}


def find_entity(s: Session, kind: str, query: str) -> Any:
    """Exact CRM id, address or domain first; then the best fuzzy name match (case/diacritics-blind)."""
    model = MODELS[kind]
    q = query.strip()
    hit = s.execute(select(model).where(model.crm_id == q)).scalar_one_or_none()
    if hit is not None:
        return hit
    addr = clean_email(q)
    if addr and kind == "contact":
        row = s.get(ContactEmail, email_key(addr))
        if row is not None:
            return s.get(Contact, row.contact_id)
    if kind == "company":
        dom = q.lower().lstrip("@")
        if addr:
            dom = addr.rpartition("@")[2]
        row2 = s.get(CompanyDomain, dom)
        if row2 is not None:
            return s.get(Company, row2.company_id)
    choices: dict[int, str] = {}
    cols = [model.id, model.name] + ([Contact.email] if kind == "contact" else [])
    for row3 in s.execute(select(*cols)):
        choices[row3[0]] = fold(" ".join(str(v) for v in row3[1:] if v))
    if kind == "company":
        for dom, cid in s.execute(select(CompanyDomain.domain, CompanyDomain.company_id)):
            choices[cid] = choices.get(cid, "") + " " + dom
    best = process.extractOne(fold(q), choices, scorer=fuzz.WRatio, score_cutoff=60)
    if best is None:
        raise NotFound(f"no {kind} matches {query!r}")
    return s.get(model, best[2])


def _people_of(s: Session, ids: list[int]) -> dict[int, list[str]]:
    people: dict[int, list[str]] = defaultdict(list)
    for i in range(0, len(ids), 500):
        for aid, email, name, internal in s.execute(
            select(Participant.activity_id, Participant.email, Participant.name, Participant.is_internal)
            .where(Participant.activity_id.in_(ids[i : i + 500]))
            .order_by(Participant.id)
        ):
            if not internal:
                label = name or email
                if label not in people[aid]:
                    people[aid].append(label)
    return people


def _item(a: Any, people: dict[int, list[str]], now: datetime) -> dict[str, Any]:
    return {
        "id": a.id,
        "kind": a.kind,
        "when": iso(a.occurred_at),
        "upcoming": a.occurred_at > now,
        "direction": a.direction,
        "subject": a.subject,
        "people": people.get(a.id, []),
        "status": a.status,
        "confidence": a.confidence,
        "snippet": (a.snippet or "")[:160],
        "thread": a.thread_key or (f"ics:{a.ical_uid}" if a.ical_uid else f"a:{a.id}"),
    }


def entity_head(kind: str, ent: Any) -> dict[str, Any]:
    head = {
        "type": kind,
        "id": ent.id,
        "crm_id": ent.crm_id,
        "name": ent.name,
        "last_contact_at": iso(ent.last_contact_at),
        "last_inbound_at": iso(ent.last_inbound_at),
        "last_outbound_at": iso(ent.last_outbound_at),
        "next_meeting_at": iso(ent.next_meeting_at),
        "activity_count": ent.activity_count,
    }
    if kind == "deal":
        head.update(status=ent.status, stage=ent.stage, amount=ent.amount, company_id=ent.company_id)
    if kind == "contact":
        head.update(email=ent.email, title=ent.title, company_id=ent.company_id, origin=ent.origin)
    return head


def timeline_view(s: Session, kind: str, ent: Any, now: datetime, limit: int = 30, offset: int = 0) -> dict[str, Any]:
    """Upcoming meetings on top (soonest first), then a page of the past, newest first; the page's
    emails grouped by thread. Reads one page, never the whole history (a company may have 10,000)."""
    linked = (
        select(Attribution.activity_id)
        .where(Attribution.target_type == kind, Attribution.target_id == ent.id)
        .scalar_subquery()
    )
    base = select(Activity).where(Activity.id.in_(linked))
    upcoming = (
        s.execute(base.where(Activity.occurred_at > now).order_by(Activity.occurred_at, Activity.id).limit(limit))
        .scalars()
        .all()
        if offset == 0
        else []
    )
    counts = s.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((Activity.occurred_at > now, 1), else_=0)), 0),
        ).where(Activity.id.in_(linked))
    ).one()
    upcoming_total = int(counts[1])
    past_total = int(counts[0]) - upcoming_total
    room = max(0, limit - len(upcoming)) if offset == 0 else limit
    past = (
        s.execute(
            base.where(Activity.occurred_at <= now)
            .order_by(Activity.occurred_at.desc(), Activity.id.desc())
            .offset(offset)
            .limit(room)
        )
        .scalars()
        .all()
    )
    shown = list(upcoming) + list(past)
    people = _people_of(s, [a.id for a in shown])
    items = [_item(a, people, now) for a in shown]
    groups: list[dict[str, Any]] = []
    by_thread: dict[str, dict[str, Any]] = {}
    for it in items:
        g = by_thread.get(it["thread"]) if it["kind"] == "email" and not it["upcoming"] else None
        if g is None:
            g = {"thread": it["thread"], "kind": it["kind"], "upcoming": it["upcoming"], "items": []}
            groups.append(g)
            if it["kind"] == "email" and not it["upcoming"]:
                by_thread[it["thread"]] = g
        g["items"].append(it)
    shown_past = offset + len(past)
    return {
        "entity": entity_head(kind, ent),
        "items": items,
        "groups": groups,
        "total": past_total + upcoming_total,
        "past_total": past_total,
        "offset": offset,
        "shown_past": len(past),
        "next_offset": shown_past if shown_past < past_total else None,
    }


def render_timeline(console: Console, view: dict[str, Any]) -> None:
    e = view["entity"]
    console.print(f"[bold]{escape(e['name'] or '')}[/bold] ({e['type']}{', ' + e['crm_id'] if e['crm_id'] else ''})")
    console.print(
        f"last contact {e['last_contact_at'] or '—'} · last inbound {e['last_inbound_at'] or '—'} · "
        f"last outbound {e['last_outbound_at'] or '—'} · next meeting {e['next_meeting_at'] or '—'} · "
        f"{e['activity_count']} activities"
    )
    t = Table("when", "", "subject", "who", "status", box=None, pad_edge=False)
    for it in view["items"]:
        icon = "📅" if it["kind"] == "meeting" else ("→" if it["direction"] == "outbound" else "←")
        when = (it["when"] or "")[:16].replace("T", " ")
        if it["upcoming"]:
            when = f"[green]{when}[/green]"
        t.add_row(
            when,
            icon,
            escape(it["subject"][:70]),
            escape(", ".join(it["people"])[:40]),
            it["status"] if it["status"] != "auto" else "",
        )
    console.print(t)
    if view["total"] > len(view["items"]):
        console.print(f"[dim]… {view['total'] - len(view['items'])} older items (use --limit)[/dim]")


def explain_view(s: Session, act: Activity) -> list[str]:
    lines = [
        f"{act.kind} {iso(act.occurred_at)}  {escape(act.subject)}",
        f"status {act.status}, confidence {act.confidence:.2f}",
    ]
    for t, tid, conf, ev, st in s.execute(
        select(
            Attribution.target_type,
            Attribution.target_id,
            Attribution.confidence,
            Attribution.evidence,
            Attribution.status,
        ).where(Attribution.activity_id == act.id)
    ):
        ent = s.get(MODELS[t], tid)
        name = ent.name if ent is not None else f"#{tid}"
        lines.append(f"  {t}: {escape(name or '')} ({conf:.2f}, {st})")
        for e in ev or []:
            lines.append(f"      · {escape(e)}")
    if not any(line.startswith("  deal") for line in lines):
        notes = [e for e in (act.evidence or []) if e.startswith("no deal")]
        lines.extend(f"  deal: none — {escape(n)}" for n in notes)
    return lines


def source_status_view(s: Session) -> list[dict[str, Any]]:
    """Each source with per-folder counts of what it handed over and how far it was verified."""
    from collections import Counter

    from providers.base import make_source
    from providers.errors import InklessError
    from store.models import Source, SyncState

    out = []
    for src in s.execute(select(Source).order_by(Source.id)).scalars():
        try:
            adapter: Any = make_source(src.kind, src.location, src.owner, src.settings)
        except (InklessError, ImportError):
            adapter = None
        counts: dict[str | None, Counter[str]] = defaultdict(Counter)
        rows = s.execute(
            select(SyncState.provider_id, SyncState.outcome).where(SyncState.source_id == src.id)
        ).yield_per(5000)
        for pid, outcome in rows:
            folder = adapter.folder_of(pid) if adapter is not None else None
            counts[folder][outcome] += 1
        cursor = src.cursor or {}
        per_folder = cursor.get("folders", cursor) if isinstance(cursor, dict) else {}
        folders = []
        for folder in sorted(counts, key=lambda f: f or ""):
            c = counts[folder]
            info = per_folder.get(folder, {}) if folder and isinstance(per_folder, dict) else {}
            folders.append(
                {
                    "folder": folder,
                    "seen": sum(c.values()),
                    "logged": c["logged"],
                    "skipped": c["skipped"],
                    "quarantined": c["quarantined"],
                    "verified_through": info.get("verified_through") if isinstance(info, dict) else None,
                }
            )
        out.append(
            {
                "id": src.id,
                "kind": src.kind,
                "location": src.location,
                "owner": src.owner,
                "status": src.status,
                "last_sync_at": src.last_sync_at.isoformat() if src.last_sync_at else None,
                "last_error": src.last_error,
                "folders": folders,
            }
        )
    return out
