"""CRM changes flowing back into the timeline: after an import, activities whose people or companies
changed are re-attributed, and mail skipped as "personal" that now involves a CRM contact or company is
fetched again from its source and logged."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from matching.index import CrmIndex, Team
from providers.base import SyncContext, make_source
from providers.errors import InklessError
from providers.records import Batch
from store.models import Attribution, Contact, Deal, Skipped, Source, SyncState
from store.models import Participant as ParticipantRow
from store.queries import internal_domains, load_index, refresh_rollups, source_owners

from .crm_import import ImportReport, import_crm
from .ingest import Ingestor, known_to_crm, reattribute


@dataclass
class CrmSyncReport:
    imported: ImportReport
    reattributed: int
    revived: int


def _affected_activities(s: Session, index: CrmIndex, team: Team, rep: ImportReport) -> list[int]:
    companies = set(rep.changed_company_ids)
    contacts = set(rep.changed_contact_ids)
    if rep.changed_deal_ids:
        q = select(Deal.company_id).where(Deal.id.in_(sorted(rep.changed_deal_ids)))
        companies |= {c for (c,) in s.execute(q) if c is not None}
    if contacts:
        q = select(Contact.company_id).where(Contact.id.in_(sorted(contacts)))
        companies |= {c for (c,) in s.execute(q) if c is not None}
    ids: set[int] = set()
    for t, group in (("company", companies), ("contact", contacts), ("deal", set(rep.changed_deal_ids))):
        g = sorted(group)
        for i in range(0, len(g), 500):
            q2 = select(Attribution.activity_id).where(
                Attribution.target_type == t, Attribution.target_id.in_(g[i : i + 500])
            )
            ids |= {a for (a,) in s.execute(q2)}
    emails = []
    for (email,) in s.execute(select(ParticipantRow.email).where(ParticipantRow.is_internal.is_(False)).distinct()):
        c = index.contact_for(email)
        if c is not None and (c.id in contacts or c.company_id in companies):
            emails.append(email)
            continue
        hit = index.company_for_email(email)
        if hit is not None and hit[0].id in companies:
            emails.append(email)
    for i in range(0, len(emails), 500):
        q3 = select(ParticipantRow.activity_id).where(ParticipantRow.email.in_(emails[i : i + 500]))
        ids |= {a for (a,) in s.execute(q3)}
    return sorted(ids)


def import_and_reattribute(
    sessions: sessionmaker[Session],
    now: datetime,
    companies: Path | None = None,
    contacts: Path | None = None,
    deals: Path | None = None,
) -> CrmSyncReport:
    with sessions.begin() as s:
        rep = import_crm(s, companies=companies, contacts=contacts, deals=deals)
        s.flush()
        index = load_index(s)
        team = Team(internal_domains(s), source_owners(s))
        ids = _affected_activities(s, index, team, rep)
        touched = reattribute(s, ids, index, team, now)
        for t, group in (
            ("company", rep.changed_company_ids),
            ("contact", rep.changed_contact_ids),
            ("deal", rep.changed_deal_ids),
        ):
            touched.setdefault(t, set()).update(group)
        s.flush()
        refresh_rollups(s, touched, now)
    revived = revive_skipped(sessions, now)
    return CrmSyncReport(rep, len(ids), revived)


def revive_skipped(sessions: sessionmaker[Session], now: datetime) -> int:
    """Fetch again and ingest items skipped as personal whose people the CRM now knows."""
    with sessions() as s:
        index = load_index(s)
        team = Team(internal_domains(s), source_owners(s))
        rows = s.execute(
            select(Skipped.source_id, Skipped.provider_id, Skipped.locator, Skipped.addresses).where(
                Skipped.reason.in_(["personal", "meeting-personal"])
            )
        ).all()
        todo: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for sid, pid, loc, addresses in rows:
            if addresses and known_to_crm(list(addresses), index):
                todo[sid].append((pid, loc))
        sources = {src.id: src for src in s.execute(select(Source).where(Source.id.in_(list(todo)))).scalars()}
    revived = 0
    for sid, items in todo.items():
        src = sources[sid]
        try:
            source = make_source(src.kind, src.location, src.owner, src.settings)
        except InklessError:
            continue
        ctx = SyncContext(now)
        fetched = []
        for pid, loc in items:
            try:
                item = source.fetch(loc, ctx)
            except (InklessError, OSError):
                item = None
            if item is not None and item.provider_id == pid:
                fetched.append(item)
        if not fetched:
            continue
        with sessions.begin() as s:
            pids = [i.provider_id for i in fetched]
            s.execute(delete(SyncState).where(SyncState.source_id == sid, SyncState.provider_id.in_(pids)))
            s.execute(delete(Skipped).where(Skipped.source_id == sid, Skipped.provider_id.in_(pids)))
            s.flush()
            ing = Ingestor(s, sid, src.owner, team, index, now)
            stats = ing.apply(Batch(items=tuple(fetched), cursor=src.cursor or {}))
            revived += stats.logged + stats.merged
    return revived
