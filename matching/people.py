"""Recognising a CRM contact behind an address the CRM does not list.

A display name is compared with contacts of the same surname (nicknames, diacritics, "Last, First",
one typo); the candidate then needs corroboration from the address's company domain or, for the
sender, from their signature (the contact's company, domain or phone in the text they wrote). A name
alone never links anyone: a stranger on a freemail address who happens to share a contact's name stays
a stranger. Two contacts with the same name are told apart by domain and signature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from nicknames import NickNamer
from rapidfuzz.distance import Levenshtein

from .deals import Step
from .identity import fold
from .index import CompanyRec, ContactRec, CrmIndex

#: bits a stranger sharing the name starts with against being the contact
PRIOR_BITS = -5.0
NAME_EXACT_BITS = 4.0
NAME_NICKNAME_BITS = 3.5
NAME_FUZZY_BITS = 2.5
DOMAIN_BITS = 5.0
SIGNATURE_BITS = 3.5
LINK_AT = 0.6

_NICK = NickNamer()
_PAREN = re.compile(r"\(.*?\)|\[.*?\]|<.*?>|\".*?\"")
_LEGAL = {"inc", "ltd", "llc", "gmbh", "ag", "sa", "sas", "bv", "nv", "ab", "as", "oy", "plc", "corp", "co", "pty",
          "srl", "spa", "kg", "limited", "company", "group", "ltda", "s a", "the"}  # fmt: skip


@lru_cache(maxsize=50_000)
def _equivalents(first: str) -> frozenset[str]:
    names = {first}
    names |= _NICK.nicknames_of(first)
    for canon in _NICK.canonicals_of(first):
        names.add(canon)
        names |= _NICK.nicknames_of(canon)
    return frozenset(names)


def split_name(display: str | None) -> tuple[str, str] | None:
    """(first, last) in folded form from a display name such as "Doe, Jane (Acme)" or "Jane M. Doe"."""
    if not display or "@" in display and " " not in display.strip():
        return None
    text = _PAREN.sub(" ", display)
    text = re.split(r"\s+(?:via|from|at|\||-|–)\s+", text, maxsplit=1)[0]
    if "," in text:
        last, _, first = text.partition(",")
        text = f"{first} {last}"
    parts = [p for p in fold(text).split() if p not in ("mr", "mrs", "ms", "dr", "prof", "jr", "sr", "ii", "iii")]
    if len(parts) < 2:
        return None
    return parts[0], " ".join(parts[1:])


def _name_step(first: str, last: str, c: ContactRec) -> Step | None:
    cf, cl = fold(c.first_name or ""), fold(c.last_name or "")
    if not cf or not cl:
        return None
    last_ok = (
        last == cl
        or last.split()[-1] == cl.split()[-1]
        or (len(cl) >= 6 and Levenshtein.distance(last, cl, score_cutoff=1) <= 1)
    )
    if not last_ok:
        return None
    shown = f"{c.first_name} {c.last_name}"
    if first == cf and last == cl:
        return Step(f"the display name is {shown}'s", NAME_EXACT_BITS)
    if first == cf or (first in _equivalents(cf) or cf in _equivalents(first)):
        return Step(f"the display name matches {shown} (nickname or surname spelling)", NAME_NICKNAME_BITS)
    if len(cf) >= 4 and Levenshtein.distance(first, cf, score_cutoff=1) <= 1:
        return Step(f"the display name is close to {shown}", NAME_FUZZY_BITS)
    return None


def _company_words(co: CompanyRec) -> list[str]:
    return [w for w in fold(co.name).split() if w not in _LEGAL and len(w) >= 3]


def _signature_step(c: ContactRec, index: CrmIndex, text: str, digits: str) -> Step | None:
    co = index.companies.get(c.company_id) if c.company_id is not None else None
    seen = []
    if co is not None:
        words = _company_words(co)
        folded = f" {fold(text)} "
        if words and f" {' '.join(words)} " in folded:
            seen.append(co.name)
        low = text.lower()
        seen.extend(d for d in co.domains if d in low)
    if c.phone_digits and len(c.phone_digits) >= 7 and c.phone_digits[-8:] in digits:
        seen.append("phone number")
    if not seen:
        return None
    return Step(f"their signature shows {', '.join(dict.fromkeys(seen))}", SIGNATURE_BITS)


@dataclass(frozen=True, slots=True)
class NameMatch:
    contact: ContactRec
    probability: float
    evidence: tuple[str, ...]


def match_by_name(
    email: str, display: str | None, index: CrmIndex, text: str = "", is_sender: bool = False
) -> NameMatch | None:
    """The CRM contact behind an unlisted address, or None when the evidence is not enough."""
    parsed = split_name(display)
    if parsed is None:
        return None
    first, last = parsed
    ids = index.by_surname.get(last.split()[-1], ())
    if not ids:
        return None
    domain_company = index.company_for_email(email)
    digits = re.sub(r"\D", "", text) if is_sender and text else ""
    scored: list[tuple[float, ContactRec, list[Step]]] = []
    for cid in ids:
        c = index.contacts.get(cid)
        if c is None:
            continue
        step = _name_step(first, last, c)
        if step is None:
            continue
        steps = [Step("a stranger may share the name", PRIOR_BITS), step]
        if domain_company is not None:
            if c.company_id != domain_company[0].id:
                continue  # same name at another company: not this contact
            steps.append(Step(f"{email} is at their company's domain {domain_company[1]}", DOMAIN_BITS))
        elif is_sender and text:
            sig = _signature_step(c, index, text, digits)
            if sig is None:
                continue  # a name alone never links a stranger on a personal or unknown address
            steps.append(sig)
        else:
            continue
        scored.append((sum(s.bits for s in steps), c, steps))
    if not scored:
        return None
    scored.sort(key=lambda x: -x[0])
    bits, c, steps = scored[0]
    if len(scored) > 1 and scored[1][0] > bits - 2.0:
        return None  # two contacts fit equally well: ask rather than guess
    p = 2.0**bits / (2.0**bits + 1.0)
    if p < LINK_AT:
        return None
    evidence = [f"{email} is not a listed address"]
    evidence += [f"  {s.bits:+.1f} bits: {s.label}" for s in steps]
    evidence.append(f"  = {bits:.1f} bits → {p:.2f} that this is {c.first_name} {c.last_name}")
    return NameMatch(c, round(p, 3), tuple(evidence))
