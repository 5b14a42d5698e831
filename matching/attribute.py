"""Attribution: who, which company, which deal — with a confidence and the evidence for each.

Pure: plain participants, a date, text and the CRM index in; links out. Evidence is a waterfall of
short sentences (prior, one step per signal, total) that the CLI prints and the export carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from providers.records import Participant

from .deals import CORRECTION_BITS, ROLE_BITS, THREAD_BITS, Candidate, Step, Text, decide, open_at, text_step
from .identity import email_key
from .index import CrmIndex, Team
from .people import match_by_name

REVIEW_THRESHOLD = 0.6
SUGGESTED_CONFIDENCE = 0.8


def suggested_evidence(email: str, company: str, domain: str) -> str:
    return f"{email} is not in the CRM; at {company} by its domain {domain} (suggested contact)"


@dataclass(frozen=True, slots=True)
class Link:
    target_type: str  # contact | company | deal
    target_id: int
    confidence: float
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NewContact:
    """An unknown person at a known company, to be recorded as a suggested contact."""

    email: str
    name: str | None
    company_id: int
    evidence: str


@dataclass
class Result:
    contacts: list[Link] = field(default_factory=list)
    companies: list[Link] = field(default_factory=list)
    deal: Link | None = None
    new_contacts: list[NewContact] = field(default_factory=list)
    deal_candidates: list[tuple[int, float]] = field(default_factory=list)
    status: str = "auto"
    confidence: float = 0.0
    evidence: list[str] = field(default_factory=list)
    deal_note: str | None = None
    #: unlisted addresses recognised as a contact by name and domain/signature
    resolved: dict[str, int] = field(default_factory=dict)


def _contact_link(p: Participant, index: CrmIndex) -> Link | None:
    c = index.contact_for(p.email)
    if c is None:
        return None
    label = c.name or p.email
    if c.origin == "suggested":
        if index.company_for_email(p.email) is not None:
            return None  # met before at a known company: take the same path (and words) as the first time
        return Link("contact", c.id, SUGGESTED_CONFIDENCE, (f"{p.email} is a suggested contact, not in the CRM",))
    exact = index.by_email.get(p.email.lower()) == c.id and p.email.lower() == email_key(p.email)
    if exact:
        return Link("contact", c.id, 0.99, (f"{p.email} is the address of {label}",))
    return Link("contact", c.id, 0.95, (f"{p.email} matches an address of {label} (case, +tag or dots)",))


def attribute(
    people: Sequence[Participant],
    when: datetime,
    subject: str,
    body: str,
    index: CrmIndex,
    team: Team,
    thread_deal: int | None = None,
    thread_decided: bool = False,
) -> Result:
    res = Result()
    seen_contacts: set[int] = set()
    companies: dict[int, Link] = {}
    seen_new: set[str] = set()
    for p in people:
        if team.is_internal(p.email):
            continue
        link = _contact_link(p, index)
        if link is None:
            named = match_by_name(p.email, p.name, index, body, is_sender=p.role == "from")
            if named is not None:
                link = Link("contact", named.contact.id, named.probability, named.evidence)
                res.resolved[p.email] = named.contact.id
        if link is not None:
            if link.target_id in seen_contacts:
                continue
            seen_contacts.add(link.target_id)
            res.contacts.append(link)
            rec = index.contacts[link.target_id]
            if rec.company_id is not None and rec.company_id in index.companies:
                co = index.companies[rec.company_id]
                companies.setdefault(
                    co.id, Link("company", co.id, 0.98, (f"{rec.name or p.email} works at {co.name}",))
                )
            continue
        hit = index.company_for_email(p.email)
        if hit is None:
            continue
        co, dom = hit
        companies.setdefault(co.id, Link("company", co.id, 0.9, (f"domain {dom} belongs to {co.name}",)))
        key = email_key(p.email)
        if key not in seen_new:
            seen_new.add(key)
            res.new_contacts.append(NewContact(p.email, p.name, co.id, suggested_evidence(p.email, co.name, dom)))
    res.companies = list(companies.values())
    _choose_deal(res, when, subject, body, index, seen_contacts, thread_deal, thread_decided)
    parts = [link.confidence for link in res.contacts + res.companies]
    who = max(parts) if parts else 0.0
    res.confidence = round(min(who, res.deal.confidence) if res.deal else who, 3)
    res.evidence = [e for link in res.contacts + res.companies for e in link.evidence]
    if res.deal:
        res.evidence.extend(res.deal.evidence)
    elif res.deal_note:
        res.evidence.append(res.deal_note)
    if res.status == "auto" and res.confidence < REVIEW_THRESHOLD:
        res.status = "needs_review"
    return res


def _choose_deal(
    res: Result,
    when: datetime,
    subject: str,
    body: str,
    index: CrmIndex,
    contact_ids: set[int],
    thread_deal: int | None,
    thread_decided: bool = False,
) -> None:
    cand_ids: set[int] = set()
    for link in res.companies:
        cand_ids.update(index.deals_by_company.get(link.target_id, ()))
    for cid in contact_ids:
        cand_ids.update(index.deals_by_contact.get(cid, ()))
    deals = sorted(
        (
            index.deals[i]
            for i in cand_ids
            if open_at(index.deals[i].status, index.deals[i].created_at, index.deals[i].close_date, when)
        ),
        key=lambda d: d.id,
    )
    if not deals:
        return
    text = Text(subject, body)
    vocab = index.vocabulary()
    words = {d.id: index.deal_words(d.id) for d in deals}
    common = set.intersection(*(set(w) for w in words.values())) if len(deals) > 1 else set()
    with_roles = {d.id for d in deals if contact_ids & d.contact_ids}
    cands = []
    for d in deals:
        c = Candidate(d.id, d.name)
        step = text_step(words[d.id], set(words[d.id]) - common, vocab, text)
        if step is not None:
            c.steps.append(step)
        if d.id in with_roles and len(with_roles) < len(deals):
            names = sorted(index.contacts[i].name or "a participant" for i in contact_ids & d.contact_ids)
            c.steps.append(
                Step(
                    f"{', '.join(names)} {'is a contact' if len(names) == 1 else 'are contacts'} on the deal", ROLE_BITS
                )
            )
        if thread_deal == d.id and thread_decided:
            c.steps.append(Step("a person put earlier mail of this thread on this deal", CORRECTION_BITS))
        elif thread_deal == d.id:
            c.steps.append(Step("earlier mail in this thread is on this deal", THREAD_BITS))
        cands.append(c)
    decision = decide(cands, only_one_open=len(cands) == 1)
    res.deal_candidates = [(c.deal_id, round(p, 3)) for c, p in decision.ranked[:5]]
    if decision.chosen is not None:
        res.deal = Link("deal", decision.chosen.deal_id, round(decision.probability, 3), tuple(decision.evidence))
    else:
        res.status = "needs_review"
        res.deal_note = decision.evidence[0] if decision.evidence else None
