"""The views behind the rep's daily surface (web pages and their JSON, and ``inkless stale``):
Today, search, one activity with its evidence, stale deals. Plain dicts, JSON-ready."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from rapidfuzz import fuzz, process
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from matching.identity import fold
from store.export import iso
from store.models import (
    Activity,
    Attribution,
    Company,
    CompanyDomain,
    Contact,
    ContactEmail,
    Correction,
    Deal,
    Participant,
)

from .views import MODELS, _item, _people_of

DEFAULT_STALE_DAYS = 14
PLURAL = {"contact": "contacts", "company": "companies", "deal": "deals"}


def stale_days(explicit: int | None = None) -> int:
    if explicit is not None:
        return explicit
    try:
        return int(os.environ.get("INKLESS_STALE_DAYS", DEFAULT_STALE_DAYS))
    except ValueError:
        return DEFAULT_STALE_DAYS


def _ago(now: datetime, when: datetime | None) -> int | None:
    return None if when is None else max(0, (now - when).days)


def stale_view(s: Session, now: datetime, days: int) -> dict[str, Any]:
    """Open deals going cold: no two-way contact (an inbound and an outbound) in ``days`` days, and open
    deals with no meeting ahead. Coldest first."""
    cutoff = now - timedelta(days=days)
    companies = dict(s.execute(select(Company.id, Company.name)).all())
    cold, no_meeting = [], []
    for d in s.execute(select(Deal).where(Deal.status == "open").order_by(Deal.name, Deal.id)).scalars():
        reasons = []
        if d.last_inbound_at is None or d.last_inbound_at < cutoff:
            n = _ago(now, d.last_inbound_at)
            reasons.append("never heard from the customer" if n is None else f"no reply from the customer in {n} days")
        if d.last_outbound_at is None or d.last_outbound_at < cutoff:
            n = _ago(now, d.last_outbound_at)
            reasons.append("never written to" if n is None else f"nothing sent in {n} days")
        row = {
            "id": d.id,
            "crm_id": d.crm_id,
            "name": d.name,
            "company": companies.get(d.company_id) if d.company_id else None,
            "company_id": d.company_id,
            "stage": d.stage,
            "amount": d.amount,
            "last_contact_at": iso(d.last_contact_at),
            "last_inbound_at": iso(d.last_inbound_at),
            "last_outbound_at": iso(d.last_outbound_at),
            "next_meeting_at": iso(d.next_meeting_at),
            "days_since_two_way": _ago(
                now,
                min(d.last_inbound_at, d.last_outbound_at) if d.last_inbound_at and d.last_outbound_at else None,
            ),
            "reasons": reasons,
        }
        if reasons:
            cold.append(row)
        if d.next_meeting_at is None:
            no_meeting.append(row)
    cold.sort(key=lambda r: (r["days_since_two_way"] is not None, -(r["days_since_two_way"] or 0), r["name"]))
    return {"days": days, "cold": cold, "no_next_meeting": no_meeting}


def today_view(s: Session, now: datetime, days: int, recent: int = 15) -> dict[str, Any]:
    week = now + timedelta(days=7)
    meetings = (
        s.execute(
            select(Activity)
            .where(
                Activity.kind == "meeting",
                Activity.occurred_at > now,
                Activity.occurred_at <= week,
                Activity.status != "ignored",
            )
            .order_by(Activity.occurred_at, Activity.id)
            .limit(100)
        )
        .scalars()
        .all()
    )
    latest = (
        s.execute(
            select(Activity)
            .where(Activity.occurred_at <= now, Activity.status != "ignored")
            .order_by(Activity.occurred_at.desc(), Activity.id.desc())
            .limit(recent)
        )
        .scalars()
        .all()
    )
    ids = [a.id for a in (*meetings, *latest)]
    people = _people_of(s, ids)
    links = links_of(s, ids)
    stale = stale_view(s, now, days)
    review_count = s.execute(
        select(func.count()).select_from(Activity).where(Activity.status == "needs_review")
    ).scalar_one()
    return {
        "now": iso(now),
        "upcoming_meetings": [{**_item(a, people, now), **links.get(a.id, _no_links())} for a in meetings],
        "going_cold": stale["cold"][:20],
        "going_cold_total": len(stale["cold"]),
        "no_next_meeting": stale["no_next_meeting"][:20],
        "no_next_meeting_total": len(stale["no_next_meeting"]),
        "stale_days": days,
        "review_count": review_count,
        "recent": [{**_item(a, people, now), **links.get(a.id, _no_links())} for a in latest],
    }


def _no_links() -> dict[str, Any]:
    return {"contacts": [], "companies": [], "deal": None}


def links_of(s: Session, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per activity: its contacts, companies and deal as {id, name}."""
    out: dict[int, dict[str, Any]] = {}
    raw: list[tuple[int, str, int]] = []
    for i in range(0, len(ids), 500):
        for aid, t, tid in s.execute(
            select(Attribution.activity_id, Attribution.target_type, Attribution.target_id)
            .where(Attribution.activity_id.in_(ids[i : i + 500]))
            .order_by(Attribution.id)
        ):
            raw.append((aid, t, tid))
    names: dict[str, dict[int, str]] = {}
    for t, model in MODELS.items():
        wanted = {tid for _, tt, tid in raw if tt == t}
        names[t] = {}
        if wanted:
            for eid, name in s.execute(select(model.id, model.name).where(model.id.in_(wanted))):
                names[t][eid] = name
    for aid, t, tid in raw:
        entry = out.setdefault(aid, _no_links())
        ref = {"id": tid, "name": names[t].get(tid) or f"#{tid}"}
        if t == "deal":
            entry["deal"] = ref
        elif t == "contact":
            entry["contacts"].append(ref)
        else:
            entry["companies"].append(ref)
    return out


def search_view(s: Session, q: str, limit: int = 10) -> dict[str, Any]:
    """One box over contacts, companies and deals: exact address or domain first, then fuzzy names."""
    query = fold(q.strip())
    out: dict[str, list[dict[str, Any]]] = {"contacts": [], "companies": [], "deals": []}
    if not query:
        return {"q": q, **out}
    lowered = q.strip().lower().lstrip("@")
    choices: dict[str, dict[int, str]] = {"contact": {}, "company": {}, "deal": {}}
    for cid, name, email in s.execute(select(Contact.id, Contact.name, Contact.email)):
        choices["contact"][cid] = fold(" ".join(v for v in (name, email) if v))
    for cid, key in s.execute(select(ContactEmail.contact_id, ContactEmail.key)):
        if cid in choices["contact"] and key not in choices["contact"][cid]:
            choices["contact"][cid] += " " + key
    for cid, name in s.execute(select(Company.id, Company.name)):
        choices["company"][cid] = fold(name or "")
    for dom, cid in s.execute(select(CompanyDomain.domain, CompanyDomain.company_id)):
        if cid in choices["company"]:
            choices["company"][cid] += " " + dom
    for did, name in s.execute(select(Deal.id, Deal.name)):
        choices["deal"][did] = fold(name or "")
    for kind, table in choices.items():
        exact = [i for i, text in table.items() if lowered and lowered in text.split()]
        fuzzy = process.extract(query, table, scorer=fuzz.WRatio, score_cutoff=70, limit=limit)
        ranked: list[tuple[int, float]] = [(i, 100.0) for i in exact]
        ranked += [(int(key), float(score)) for _, score, key in fuzzy if key not in exact]
        ids = [i for i, _ in ranked[:limit]]
        model = MODELS[kind]
        ents = {e.id: e for e in s.execute(select(model).where(model.id.in_(ids))).scalars()} if ids else {}
        rows = []
        for i, score in ranked[:limit]:
            e = ents.get(i)
            if e is None:
                continue
            row: dict[str, Any] = {"id": e.id, "name": e.name, "crm_id": e.crm_id, "score": round(score, 1)}
            if kind == "contact":
                row["email"] = e.email
            if kind == "deal":
                row["status"] = e.status
            row["last_contact_at"] = iso(e.last_contact_at)
            rows.append(row)
        out[PLURAL[kind]] = rows
    return {"q": q, **out}


def activity_view(s: Session, activity_id: int, now: datetime) -> dict[str, Any] | None:
    a = s.get(Activity, activity_id)
    if a is None:
        return None
    people = [
        {"email": e, "name": n, "role": r, "internal": i, "contact_id": c}
        for e, n, r, i, c in s.execute(
            select(
                Participant.email, Participant.name, Participant.role, Participant.is_internal, Participant.contact_id
            )
            .where(Participant.activity_id == a.id)
            .order_by(Participant.id)
        )
    ]
    links = []
    for t, tid, conf, ev, st in s.execute(
        select(
            Attribution.target_type,
            Attribution.target_id,
            Attribution.confidence,
            Attribution.evidence,
            Attribution.status,
        )
        .where(Attribution.activity_id == a.id)
        .order_by(Attribution.id)
    ):
        ent = s.get(MODELS[t], tid)
        links.append(
            {
                "type": t,
                "id": tid,
                "name": (ent.name if ent is not None else None) or f"#{tid}",
                "confidence": conf,
                "evidence": list(ev or []),
                "status": st,
            }
        )
    cands = []
    for deal_id, p in a.candidates or []:
        d = s.get(Deal, deal_id)
        if d is not None:
            cands.append({"id": d.id, "name": d.name, "probability": p, "status": d.status})
    # deals to move it to: those of its companies first, then every open deal
    company_ids = [ln["id"] for ln in links if ln["type"] == "company"]
    choices = [
        {"id": d.id, "name": d.name, "status": d.status, "company_id": d.company_id}
        for d in s.execute(
            select(Deal).where(Deal.company_id.in_(company_ids)).order_by(Deal.status != "open", Deal.name)
        ).scalars()
    ]
    thread_size = 1
    key = a.thread_key
    if key:
        thread_size = s.execute(select(func.count()).where(Activity.thread_key == key)).scalar_one()
    elif a.ical_uid:
        thread_size = s.execute(select(func.count()).where(Activity.ical_uid == a.ical_uid)).scalar_one()
    history = [
        {
            "id": c.id,
            "what": c.target_type,
            "scope": c.scope,
            "actor": c.actor,
            "at": iso(c.created_at),
            "undone_at": iso(c.undone_at),
            "affected": c.affected,
        }
        for c in s.execute(
            select(Correction).where(Correction.activity_id == a.id).order_by(Correction.id.desc())
        ).scalars()
    ]
    outside = [p["email"] for p in people if not p["internal"]]
    return {
        "id": a.id,
        "kind": a.kind,
        "when": iso(a.occurred_at),
        "end": iso(a.end_at),
        "upcoming": a.occurred_at > now,
        "direction": a.direction,
        "subject": a.subject,
        "snippet": a.snippet or "",
        "status": a.status,
        "confidence": a.confidence,
        "evidence": list(a.evidence or []),
        "people": people,
        "links": links,
        "candidates": cands,
        "deal_choices": choices,
        "thread_size": thread_size,
        "outside": outside,
        "sender": next(
            (p["email"] for p in people if not p["internal"] and p["role"] in ("from", "organizer")),
            outside[0] if outside else None,
        ),
        "corrections": history,
    }
