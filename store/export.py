"""Rows for the export contract (DESIGN.md "Export format"), streamed in stable order."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import literal, select, tuple_
from sqlalchemy.orm import Session

from .models import Activity, ActivityKey, Attribution, Company, CompanyDomain, Contact, Deal


def iso(d: datetime | None) -> str | None:
    if d is None:
        return None
    return d.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def activity_rows(
    session: Session, chunk: int = 1000, changed_since: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """Every logged activity; with ``changed_since`` only those logged or re-linked at or after it (their
    ``updated_at``), each with that ``updated_at``, and items a person has since marked not business once
    more, with status "ignored" and no links, so the receiving CRM can take them out."""
    after: tuple[datetime, str] | None = None
    primary_domain: dict[int, str] = {}
    for dom, cid in session.execute(
        select(CompanyDomain.domain, CompanyDomain.company_id).order_by(CompanyDomain.domain)
    ):
        primary_domain.setdefault(cid, dom)
    while True:
        # items a person marked not business are kept only so an undo can restore them
        q = select(Activity).order_by(Activity.occurred_at, Activity.dedupe_key).limit(chunk)
        if changed_since is None:
            q = q.where(Activity.status != "ignored")
        else:
            q = q.where(Activity.updated_at >= changed_since)
        if after is not None:
            bound = tuple_(literal(after[0], Activity.occurred_at.type), literal(after[1], Activity.dedupe_key.type))
            q = q.where(tuple_(Activity.occurred_at, Activity.dedupe_key) > bound)
        acts = session.execute(q).scalars().all()
        if not acts:
            return
        ids = [a.id for a in acts]
        after = (acts[-1].occurred_at, acts[-1].dedupe_key)
        mids: dict[int, list[str]] = defaultdict(list)
        for key, aid in session.execute(
            select(ActivityKey.key, ActivityKey.activity_id)
            .where(ActivityKey.activity_id.in_(ids))
            .order_by(ActivityKey.key)
        ):
            if key.startswith("mid:"):
                mids[aid].append(key[4:])
        links: dict[int, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
        for aid, t, tid, conf in session.execute(
            select(
                Attribution.activity_id, Attribution.target_type, Attribution.target_id, Attribution.confidence
            ).where(Attribution.activity_id.in_(ids))
        ):
            links[aid][t].append((tid, conf))
        contact_ids = {tid for a in links.values() for tid, _ in a.get("contact", [])}
        company_ids = {tid for a in links.values() for tid, _ in a.get("company", [])}
        deal_ids = {tid for a in links.values() for tid, _ in a.get("deal", [])}
        contacts = (
            {c.id: c for c in session.execute(select(Contact).where(Contact.id.in_(contact_ids))).scalars()}
            if contact_ids
            else {}
        )
        companies = (
            {c.id: c for c in session.execute(select(Company).where(Company.id.in_(company_ids))).scalars()}
            if company_ids
            else {}
        )
        deals = (
            {d.id: d for d in session.execute(select(Deal).where(Deal.id.in_(deal_ids))).scalars()} if deal_ids else {}
        )
        for a in acts:
            ln = links.get(a.id, {})
            cs = sorted((contacts[t] for t, _ in ln.get("contact", []) if t in contacts), key=lambda c: c.email or "")
            cos = sorted((companies[t] for t, _ in ln.get("company", []) if t in companies), key=lambda c: c.name)
            dl = [deals[t] for t, _ in ln.get("deal", []) if t in deals]
            if a.status == "ignored":
                cs, cos, dl = [], [], []
            row = {
                "kind": a.kind,
                "message_ids": sorted(mids.get(a.id, [])) if a.kind == "email" else [],
                "ical_uid": a.ical_uid,
                "recurrence_id": iso(a.recurrence_id),
                "occurred_at": iso(a.occurred_at),
                "subject": a.subject,
                "contacts": [{"crm_id": c.crm_id, "email": c.email, "name": c.name} for c in cs],
                "companies": [{"crm_id": c.crm_id, "domain": primary_domain.get(c.id), "name": c.name} for c in cos],
                "deal": {"crm_id": dl[0].crm_id, "name": dl[0].name} if dl else None,
                "status": a.status,
                "confidence": round(float(a.confidence), 3),
                "evidence": list(a.evidence or []),
            }
            if changed_since is not None:
                row["updated_at"] = iso(a.updated_at)
            yield row


def entity_rows(session: Session, changed_since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Every contact, company and deal with its roll-ups; with ``changed_since`` only those whose roll-ups
    changed at or after it, each with that time as ``updated_at``."""
    models: tuple[tuple[str, type[Contact] | type[Company] | type[Deal]], ...] = (
        ("contact", Contact),
        ("company", Company),
        ("deal", Deal),
    )
    for type_name, model in models:
        # stable whatever order things were created in: CRM records by CRM id, suggested contacts by address
        order = [model.crm_id.is_(None), model.crm_id]
        if model is Contact:
            order.append(Contact.email)
        q = select(model).order_by(*order, model.id)
        if changed_since is not None:
            q = q.where(model.rollup_changed_at >= changed_since)
        rows: Iterator[Any] = iter(session.execute(q).scalars())
        for e in rows:
            row = {
                "type": type_name,
                "crm_id": e.crm_id,
                "name": e.name,
                "last_contact_at": iso(e.last_contact_at),
                "last_inbound_at": iso(e.last_inbound_at),
                "last_outbound_at": iso(e.last_outbound_at),
                "next_meeting_at": iso(e.next_meeting_at),
                "activity_count": e.activity_count,
            }
            if changed_since is not None:
                row["updated_at"] = iso(e.rollup_changed_at)
            yield row
