"""Attribution: who, which company, which deal — with a confidence and the evidence for each.

Pure: plain participants, a date, text and the CRM index in; links out. Evidence is a waterfall of
short sentences (prior, one step per signal, total) that the CLI prints and the export carries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rapidfuzz.distance import Levenshtein

from providers.records import Participant

from .identity import email_key, fold
from .index import CrmIndex, DealRec, Team

REVIEW_THRESHOLD = 0.6


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


def _contact_link(p: Participant, index: CrmIndex) -> Link | None:
    c = index.contact_for(p.email)
    if c is None:
        return None
    label = c.name or p.email
    if c.origin == "suggested":
        return Link("contact", c.id, 0.9, (f"{p.email} was met before at this company (suggested contact)",))
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
) -> Result:
    res = Result()
    seen_contacts: set[int] = set()
    companies: dict[int, Link] = {}
    seen_new: set[str] = set()
    for p in people:
        if team.is_internal(p.email):
            continue
        link = _contact_link(p, index)
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
            res.new_contacts.append(
                NewContact(p.email, p.name, co.id, f"{p.email} is new, at {co.name} by domain {dom}")
            )
    res.companies = list(companies.values())
    _choose_deal(res, when, subject, body, index, seen_contacts, thread_deal)
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


_STOP = {"the", "and", "for", "with", "des", "der", "und", "von", "les", "del", "los", "inc", "ltd", "llc", "gmbh"}


def _tokens(text: str) -> list[str]:
    return [t for t in fold(text).split() if len(t) >= 2 and t not in _STOP]


def _open_at(d: DealRec, when: datetime) -> bool:
    if d.created_at is not None and when < d.created_at - timedelta(days=1):
        return False
    if d.status != "open" and d.close_date is not None and when > d.close_date + timedelta(days=1):
        return False
    return True


def _choose_deal(
    res: Result,
    when: datetime,
    subject: str,
    body: str,
    index: CrmIndex,
    contact_ids: set[int],
    thread_deal: int | None,
) -> None:
    cand_ids: set[int] = set()
    for link in res.companies:
        cand_ids.update(index.deals_by_company.get(link.target_id, ()))
    for cid in contact_ids:
        cand_ids.update(index.deals_by_contact.get(cid, ()))
    cands = sorted((index.deals[i] for i in cand_ids if _open_at(index.deals[i], when)), key=lambda d: d.id)
    if not cands:
        return
    text_tokens = set(_tokens(subject + " " + body[:2000]))
    raw_words = set(re.findall(r"\b[A-Z][A-Z0-9]{1,5}\b", subject + " " + body[:2000]))
    company_words: set[str] = set()
    for link in res.companies:
        company_words.update(_tokens(index.companies[link.target_id].name))
    per_deal = {d.id: set(_tokens(d.name)) - company_words for d in cands}
    common = set.intersection(*per_deal.values()) if len(cands) > 1 else set()
    scored: list[tuple[float, DealRec, list[str]]] = []
    for d in cands:
        words = per_deal[d.id] - common
        why: list[str] = []
        score = 0.0
        hits = [w for w in words if _mentioned(w, text_tokens)]
        ordered = [t for t in _tokens(d.name) if t in words and not t.isdigit()]
        initials = "".join(w[0] for w in ordered).upper()
        if len(initials) >= 2 and any(initials.startswith(r) and len(r) >= 2 for r in raw_words):
            hits.append(initials)
        content = [w for w in words if not w.isdigit()]
        if hits and (len(set(hits)) >= min(2, len(content)) or any(len(h) >= 6 for h in hits)):
            score += 2.0 + 0.5 * len(set(hits))
            why.append(f"the text mentions {', '.join(sorted(set(hits)))} of deal '{d.name}'")
        roles = contact_ids & d.contact_ids
        if roles:
            score += 1.0
            why.append(f"{len(roles)} participant(s) are contacts on '{d.name}'")
        if thread_deal == d.id:
            score += 2.5
            why.append(f"earlier mail in this thread is on '{d.name}'")
        scored.append((score, d, why))
    scored.sort(key=lambda s: (-s[0], s[1].id))
    res.deal_candidates = [(d.id, s) for s, d, _ in scored[:5]]
    best_score, best, why = scored[0]
    runner = scored[1][0] if len(scored) > 1 else None
    if runner is None:
        status = "open" if best.status == "open" else f"{best.status} after this date"
        steps = [f"'{best.name}' is the only deal of the company open at this date ({status})", *why]
        res.deal = Link("deal", best.id, 0.85 if why else 0.75, tuple(steps))
        return
    if best_score > 0 and best_score - runner >= 1.0:
        conf = min(0.95, 0.6 + 0.1 * (best_score - runner))
        steps = [f"{len(scored)} candidate deals", *why, f"next best scored {runner:.1f} vs {best_score:.1f}"]
        res.deal = Link("deal", best.id, round(conf, 3), tuple(steps))
        return
    res.status = "needs_review"
    names = ", ".join(f"'{d.name}'" for _, d, _ in scored[:3])
    res.deal_note = f"no deal chosen: {len(scored)} open deals fit equally ({names})"


def _mentioned(word: str, text_tokens: set[str]) -> bool:
    if word in text_tokens:
        return True
    if len(word) < 5:
        return False
    return any(
        abs(len(t) - len(word)) <= 1 and Levenshtein.distance(word, t, score_cutoff=1) <= 1
        for t in text_tokens
        if len(t) >= 4
    )
