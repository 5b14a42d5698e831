"""Queries shared by the CLI, the sync engine and export: settings, the CRM index, roll-ups."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, delete, func, select, update
from sqlalchemy.orm import Session

from matching.index import CompanyRec, ContactRec, CrmIndex, DealRec

from .models import (
    ROLLUP_MODELS,
    Activity,
    Attribution,
    Company,
    CompanyDomain,
    Contact,
    ContactEmail,
    Deal,
    DealContact,
    Rule,
    Setting,
    Source,
)


def get_setting(session: Session, key: str, default: Any = None) -> Any:
    row = session.get(Setting, key)
    return default if row is None else row.value


def set_setting(session: Session, key: str, value: Any) -> None:
    row = session.get(Setting, key)
    if row is None:
        session.add(Setting(key=key, value=value))
    else:
        row.value = value


def internal_domains(session: Session) -> list[str]:
    return list(get_setting(session, "internal_domains", []) or [])


def source_owners(session: Session) -> list[str]:
    return [o for (o,) in session.execute(select(Source.owner).distinct())]


def load_index(session: Session) -> CrmIndex:
    """Everything matching needs, in a few bulk queries."""
    idx = CrmIndex()
    domains: dict[int, list[str]] = defaultdict(list)
    for dom, cid in session.execute(select(CompanyDomain.domain, CompanyDomain.company_id)):
        domains[cid].append(dom)
    for co_id, co_crm_id, co_name in session.execute(select(Company.id, Company.crm_id, Company.name)):
        idx.add_company(CompanyRec(co_id, co_crm_id, co_name, tuple(domains.get(co_id, ()))))
    emails: dict[int, list[str]] = defaultdict(list)
    for key, cid in session.execute(select(ContactEmail.key, ContactEmail.contact_id)):
        emails[cid].append(key)
    rows = session.execute(
        select(
            Contact.id,
            Contact.crm_id,
            Contact.name,
            Contact.company_id,
            Contact.origin,
            Contact.first_name,
            Contact.last_name,
            Contact.phone,
        )
    )
    for cid, crm_id, name, company_id, origin, first, last, phone in rows:
        digits = re.sub(r"\D", "", phone or "")
        rec = ContactRec(cid, crm_id, name, company_id, origin, first, last, digits)
        idx.add_contact(rec, emails.get(cid, []))
    roles: dict[int, set[int]] = defaultdict(set)
    for did, cid in session.execute(select(DealContact.deal_id, DealContact.contact_id)):
        roles[did].add(cid)
    deal_cols = select(Deal.id, Deal.crm_id, Deal.name, Deal.company_id, Deal.status, Deal.created_at, Deal.close_date)
    for did, crm_id, name, company_id, status, created, closed in session.execute(deal_cols):
        idx.add_deal(DealRec(did, crm_id, name, company_id, status, created, closed, frozenset(roles.get(did, ()))))
    apply_identity_rules(session, idx)
    return idx


def apply_identity_rules(session: Session, idx: CrmIndex) -> None:
    """What people taught through corrections: "this domain is this company", "this address is this
    contact". They sit in the index like CRM data, so matching, re-attribution and CRM re-imports all
    see them, and they win over the CRM's own domains and addresses."""
    q = select(Rule.scope, Rule.match, Rule.target_type, Rule.target_id).where(
        Rule.undone_at.is_(None), Rule.action == "assign", Rule.scope.in_(("domain", "sender"))
    )
    for scope, match, target_type, target_id in session.execute(q.order_by(Rule.id)):
        if scope == "domain" and target_type == "company" and target_id in idx.companies:
            idx.by_domain[match] = target_id
        elif scope == "sender" and target_type == "contact" and target_id in idx.contacts:
            idx.by_email[match] = target_id


def refresh_rollups(session: Session, touched: dict[str, set[int]], now: datetime) -> None:
    """Recompute last contact / inbound / outbound, next meeting and counts for the given entities."""
    for target_type, ids in touched.items():
        if not ids:
            continue
        model = ROLLUP_MODELS[target_type]
        id_list = sorted(ids)
        for i in range(0, len(id_list), 500):
            chunk = id_list[i : i + 500]
            past = Activity.occurred_at <= now
            q = (
                select(
                    Attribution.target_id,
                    func.max(case((past, Activity.occurred_at))),
                    func.max(case((and_(past, Activity.direction == "inbound"), Activity.occurred_at))),
                    func.max(case((and_(past, Activity.direction == "outbound"), Activity.occurred_at))),
                    func.min(
                        case((and_(Activity.kind == "meeting", Activity.occurred_at > now), Activity.occurred_at))
                    ),
                    func.count(func.distinct(Activity.id)),
                )
                .join(Activity, Activity.id == Attribution.activity_id)
                .where(Attribution.target_type == target_type, Attribution.target_id.in_(chunk))
                .group_by(Attribution.target_id)
            )
            found: dict[int, tuple[Any, ...]] = {}
            for tid, last, inbound, outbound, nxt, count in session.execute(q):
                found[tid] = (last, inbound, outbound, nxt, count)
            # only the entities whose roll-ups change are written, stamped for `export entities --changed`
            cols = (model.last_contact_at, model.last_inbound_at, model.last_outbound_at, model.next_meeting_at)
            stored = {
                tid: tuple(rest)
                for tid, *rest in session.execute(
                    select(model.id, *cols, model.activity_count).where(model.id.in_(chunk))
                )
            }
            values = []
            for tid in chunk:
                new = found.get(tid, (None, None, None, None, 0))
                if tid not in stored or stored[tid] == new:
                    continue
                last, inbound, outbound, nxt, count = new
                values.append(
                    {
                        "id": tid,
                        "last_contact_at": last,
                        "last_inbound_at": inbound,
                        "last_outbound_at": outbound,
                        "next_meeting_at": nxt,
                        "activity_count": count,
                        "rollup_changed_at": now,
                    }
                )
            if values:
                session.execute(update(model), values)


def refresh_due_rollups(session: Session, now: datetime) -> None:
    """Entities whose next meeting has started since the last refresh (time passing changes them)."""
    touched: dict[str, set[int]] = {}
    for name, model in ROLLUP_MODELS.items():
        ids = {i for (i,) in session.execute(select(model.id).where(model.next_meeting_at <= now))}
        if ids:
            touched[name] = ids
    if touched:
        refresh_rollups(session, touched, now)


def entities_of(session: Session, activity_ids: Iterable[int]) -> dict[str, set[int]]:
    ids = list(activity_ids)
    touched: dict[str, set[int]] = defaultdict(set)
    for i in range(0, len(ids), 500):
        q = select(Attribution.target_type, Attribution.target_id).where(Attribution.activity_id.in_(ids[i : i + 500]))
        for t, tid in session.execute(q):
            touched[t].add(tid)
    return touched


def delete_activities(session: Session, activity_ids: Iterable[int]) -> dict[str, set[int]]:
    """Remove activities (and their links); returns the entities whose roll-ups must be refreshed."""
    ids = list(activity_ids)
    touched = entities_of(session, ids)
    for i in range(0, len(ids), 500):
        session.execute(delete(Activity).where(Activity.id.in_(ids[i : i + 500])))
    return touched
