"""Attribution: who, which company, which deal — with a confidence and the evidence for each.

Pure: plain participants, a date, text and the CRM index in; links out. Evidence is a waterfall of
short sentences (prior, one step per signal, total) that the CLI prints and the export carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain

from providers.records import Participant

from .deals import (
    CORRECTION_BITS,
    RANKED_SILENT,
    ROLE_BITS,
    THREAD_BITS,
    Candidate,
    DealInfo,
    Step,
    Text,
    deal_initials,
    decide,
    decide_sparse,
    text_step,
)
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
    """Score the deals open at the item's date and pick one (see matching.deals).

    The work per item follows what the item says, not how many deals compete: the deals open at its date
    come from per-company and per-contact timelines, each deal's words and acronyms are worked out once
    (``DealInfo``), the item's words are matched against every deal word at once (``Text.maybe``), and only
    candidates with a sign of evidence (a word or acronym of theirs in the text, a participant's role, the
    thread) are scored in full. The others score 0 bits, the prior alone, and only count in the
    normalisation (``decide_sparse``), exactly as if each had been scored."""
    # the deals of its companies and contacts that were open at the item's date, by id
    by_company = [index.company_deals(link.target_id).open_at(when) for link in res.companies]
    by_contact = [index.contact_deals(cid).open_at(when) for cid in contact_ids]
    groups = [g for g in chain(by_company, by_contact) if g]
    if not groups:
        return
    deals: Sequence[DealInfo]
    if len(groups) == 1:
        deals = groups[0]
    else:
        merged = {d.id: d for g in groups for d in g}
        deals = [merged[i] for i in sorted(merged)]
    vocab = index.vocabulary()
    text = Text(subject, body, vocab.lexicon)
    # words every candidate shares say nothing about which one is meant
    common: set[str] = set()
    if len(deals) > 1:
        common = set(deals[0].words)
        for d in deals[1:]:
            if not common:
                break
            common.intersection_update(d.words)
    # a participant's role tells deals apart unless every candidate has one (only deals of the contacts can)
    with_roles = {d.id for g in by_contact for d in g if not d.contact_ids.isdisjoint(contact_ids)}
    roles_tell = len(with_roles) < len(deals)
    # the candidates the text may speak for (a superset of those text_step() gives a step)
    if common:
        maybe, spelt = text.maybe, None
        mentioned = set()
        for d in deals:
            if not maybe.isdisjoint(w for w in d.plain if w not in common):
                mentioned.add(d.id)
            elif spelt is not False:  # (Text.may_mention, its acronyms looked at only when the text has some)
                spelt = spelt or text.has_acronyms
                if spelt and text.may_mention((), deal_initials([w for w in d.words if w not in common])):
                    mentioned.add(d.id)
    else:
        maybe = text.maybe
        mentioned = {d.id for d in deals if not maybe.isdisjoint(d.plain)}
        if len(mentioned) < len(deals) and text.has_acronyms:
            keys = text.acronym_keys
            mentioned.update(d.id for d in deals if not keys.isdisjoint(d.initials))
    # ... and those with any sign of evidence; the others (most, when many compete) are only counted
    signal = mentioned | with_roles if roles_tell else set(mentioned)
    if thread_deal is not None:
        signal.add(thread_deal)
    scored: list[Candidate] = []
    weights = [1.0] * len(deals)  # 2**bits of every candidate, by id: 2**0 for the prior alone
    silent: list[tuple[int, str]] = []  # (id, name) of the first few without any evidence
    role_steps: dict[frozenset[int], Step] = {}
    for k, d in enumerate(deals):
        if d.id not in signal:
            if len(silent) < RANKED_SILENT:
                silent.append((d.id, d.name))
            continue
        steps: list[Step] = []
        if d.id not in mentioned:
            step = None
        elif common:
            step = text_step(d.words, set(d.words) - common, vocab, text)
        else:
            step = text_step(d.words, set(d.words), vocab, text, d.initials)
        if step is not None:
            steps.append(step)
        if roles_tell and d.id in with_roles:
            on = d.contact_ids.intersection(contact_ids)
            role = role_steps.get(on)
            if role is None:  # the same participants are often on several of the deals: one step for them
                names = sorted(index.contacts[i].name or "a participant" for i in on)
                verb = "is a contact" if len(names) == 1 else "are contacts"
                role = role_steps[on] = Step(f"{', '.join(names)} {verb} on the deal", ROLE_BITS)
            steps.append(role)
        if thread_deal == d.id and thread_decided:
            steps.append(Step("a person put earlier mail of this thread on this deal", CORRECTION_BITS))
        elif thread_deal == d.id:
            steps.append(Step("earlier mail in this thread is on this deal", THREAD_BITS))
        if steps:
            c = Candidate(d.id, d.name, steps)
            scored.append(c)
            weights[k] = 2.0**c.bits
        elif len(silent) < RANKED_SILENT:
            silent.append((d.id, d.name))
    if len(deals) == 1:
        decision = decide(scored or [Candidate(d.id, d.name) for d in deals], only_one_open=True)
    else:
        decision = decide_sparse(scored, silent, weights)
    res.deal_candidates = [(c.deal_id, round(p, 3)) for c, p in decision.ranked[:5]]
    if decision.chosen is not None:
        res.deal = Link("deal", decision.chosen.deal_id, round(decision.probability, 3), tuple(decision.evidence))
    else:
        res.status = "needs_review"
        res.deal_note = decision.evidence[0] if decision.evidence else None
