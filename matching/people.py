"""Recognising a CRM contact behind an address the CRM does not list.

A display name is compared with contacts of the same surname (nicknames, diacritics and their ASCII
spellings, "Last, First", given names of two words, double surnames, an initial, family name first, one
typo; RFC 2047 encoded words that reach us undecoded are decoded); the candidate then needs corroboration
from the address's company domain or, for the sender, from their signature (the contact's company, domain
or phone in the text they wrote). A name alone never links anyone: a stranger on a freemail address who
happens to share a contact's name stays a stranger. Two contacts with the same name are told apart by
domain and signature.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.header import decode_header, make_header
from functools import lru_cache

from rapidfuzz.distance import Levenshtein

from .deals import Step
from .identity import NICKNAMES, PARTICLES, fold, name_forms, surname_keys, text_domains
from .index import ContactRec, CrmIndex

#: bits a stranger sharing the name starts with against being the contact
PRIOR_BITS = -5.0
NAME_EXACT_BITS = 4.0
NAME_NICKNAME_BITS = 3.5
NAME_FUZZY_BITS = 2.5
NAME_INITIAL_BITS = 2.0
DOMAIN_BITS = 5.0
SIGNATURE_BITS = 3.5
LINK_AT = 0.6

_NICK = NICKNAMES
_NON_DIGITS = re.compile(r"\D+")
_NOT_DIGITS = bytes(c for c in range(256) if not 48 <= c <= 57)
_PAREN = re.compile(r"\(.*?\)|\[.*?\]|<.*?>|\".*?\"")


@lru_cache(maxsize=50_000)
def _equivalents(first: str) -> frozenset[str]:
    names = {first}
    names |= _NICK.nicknames_of(first)
    for canon in _NICK.canonicals_of(first):
        names.add(canon)
        names |= _NICK.nicknames_of(canon)
    return frozenset(names)


_TITLES = frozenset({"mr", "mrs", "ms", "dr", "prof", "jr", "sr", "ii", "iii", "mag", "ing", "dipl", "herr", "frau",
                     "mme", "mlle", "sra", "srta"})  # fmt: skip


def _decoded(display: str) -> str:
    """The display name with RFC 2047 encoded words decoded, for names that reach us still encoded."""
    if "=?" not in display:
        return display
    try:
        return str(make_header(decode_header(display)))
    except Exception:  # malformed encoded words: keep the text as it came
        return display


def name_tokens(display: str | None) -> list[str] | None:
    """The folded words of a display name in "First Last" order ("Doe, Jane M. (Acme)" -> jane m doe), titles
    dropped; None when it is not a person's name of at least two words."""
    if not display or "@" in display and " " not in display.strip():
        return None
    text = _PAREN.sub(" ", _decoded(display))
    text = re.split(r"\s+(?:via|from|at|\||-|–)\s+", text, maxsplit=1)[0]
    if "," in text:
        last, _, first = text.partition(",")
        text = f"{first} {last}"
    parts = [p for p in fold(text).split() if p not in _TITLES]
    return parts if len(parts) >= 2 else None


def split_name(display: str | None) -> tuple[str, str] | None:
    """(first, last) in folded form from a display name such as "Doe, Jane (Acme)" or "Jane M. Doe"."""
    parts = name_tokens(display)
    if parts is None:
        return None
    return parts[0], " ".join(parts[1:])


@lru_cache(maxsize=50_000)
def _forms(first: str, last: str) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
    """(given names, family names) as folded words, once per spelling of the name."""
    out = []
    for f in name_forms(first):
        for ln in name_forms(last):
            if f and ln:
                out.append((tuple(f.split()), tuple(ln.split())))
    return tuple(dict.fromkeys(out))


def _surname_at_end(tokens: list[str], family: tuple[str, ...]) -> int:
    """How many trailing display words are the family name (0: they are not)."""
    joined = "".join(family)
    for k in range(min(len(tokens) - 1, len(family) + 1), 0, -1):
        if "".join(tokens[-k:]) == joined:
            return k  # all of it, however it is split ("O Brien", "OBrien", "Fernandez Garcia")
    last = tokens[-1]
    if last == family[-1] or (len(family) > 1 and last == family[0] and family[0] not in PARTICLES):
        return 1  # its last word, or the first of a double surname
    if len(joined) >= 6 and Levenshtein.distance(last, joined, score_cutoff=1) <= 1:
        return 1
    return 0


def _given_step(given: list[str], first: tuple[str, ...], shown: str, exact: bool) -> Step | None:
    g, f = given[0], first[0]
    if "".join(given) == "".join(first):
        if exact:
            return Step(f"the display name is {shown}'s", NAME_EXACT_BITS)
        return Step(f"the display name matches {shown} (nickname or surname spelling)", NAME_NICKNAME_BITS)
    if g == f and len(given) >= len(first) or g in _equivalents(f) or f in _equivalents(g):
        return Step(f"the display name matches {shown} (nickname or surname spelling)", NAME_NICKNAME_BITS)
    if g == f or len(f) >= 4 and Levenshtein.distance(g, f, score_cutoff=1) <= 1:
        return Step(f"the display name is close to {shown}", NAME_FUZZY_BITS)
    if len(g) == 1 and g == f[0]:
        return Step(f"the display name is {shown} with an initial", NAME_INITIAL_BITS)
    return None


def _name_step(tokens: list[str], c: ContactRec, reversed_order: bool = False) -> Step | None:
    if not c.first_name or not c.last_name:
        return None
    shown = f"{c.first_name} {c.last_name}"
    best: Step | None = None
    whole = "".join(tokens)
    for first, last in _forms(c.first_name, c.last_name):
        if reversed_order:
            # family name first without a comma, as Japanese, Chinese, Korean or Hungarian names are written
            if whole == "".join(last + first):
                step: Step | None = Step(f"the display name is {shown}'s, family name first", NAME_NICKNAME_BITS)
            else:
                step = None
        elif whole == "".join(first + last):
            step = Step(f"the display name is {shown}'s", NAME_EXACT_BITS)
        else:
            k = _surname_at_end(tokens, last)
            step = _given_step(tokens[:-k], first, shown, "".join(tokens[-k:]) == "".join(last)) if k else None
        if step is not None and (best is None or step.bits > best.bits):
            best = step
    return best


class _Signature:
    """The sender's text in the forms signatures are compared in, each worked out once and only when asked."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._folded: str | None = None
        self._lower: str | None = None
        self._digits: str | None = None
        self._domains: set[str] | None = None

    @property
    def folded(self) -> str:
        if self._folded is None:
            self._folded = f" {fold(self.text)} "
        return self._folded

    @property
    def lower(self) -> str:
        if self._lower is None:
            self._lower = self.text.lower()
        return self._lower

    @property
    def digits(self) -> str:
        if self._digits is None:
            text = self.text
            if text.isascii():
                self._digits = text.encode("ascii").translate(None, _NOT_DIGITS).decode("ascii")
            else:
                self._digits = _NON_DIGITS.sub("", text)
        return self._digits

    @property
    def domains(self) -> set[str]:
        """The domains the text names (a link, an address), each with its parents."""
        if self._domains is None:
            self._domains = text_domains(self.lower)
        return self._domains

    def contacts_named(self, surname: str, index: CrmIndex) -> list[int]:
        """The contacts of this surname whose company (by name or domain) or phone number the text shows: the
        only ones a signature can corroborate, found by index lookups of what the text holds, never by going
        through the namesakes (a common surname has hundreds in a large CRM)."""
        companies: set[int] = set()
        words = self.folded.split()
        present = set(words)
        starts = index.by_name_start
        for w in present.intersection(index.name_singles):
            companies.update(starts[(w,)])
        firsts = present.intersection(index.name_firsts)
        if firsts:
            for k in range(len(words) - 1):
                if words[k] in firsts:
                    companies.update(starts.get((words[k], words[k + 1]), ()))
        by_domain = index.by_domain
        companies.update(by_domain[d] for d in self.domains if d in by_domain)
        ids = [i for co in companies for i in index.by_surname_company.get((surname, co), ())]
        digits = self.digits
        if len(digits) >= 7:
            phones = index.by_phone
            for n in (7, 8):
                for k in range(len(digits) - n + 1):
                    for cid in phones.get(digits[k : k + n], ()):
                        c = index.contacts.get(cid)
                        if c is not None and c.last_name and surname in surname_keys(c.last_name):
                            ids.append(cid)
        return ids


def _signature_step(c: ContactRec, index: CrmIndex, sig: _Signature) -> Step | None:
    co = index.companies.get(c.company_id) if c.company_id is not None else None
    seen = []
    if co is not None:
        words = index.name_words.get(co.id, ())
        if words and f" {' '.join(words)} " in sig.folded:
            seen.append(co.name)
        seen.extend(d for d in co.domains if d.lower() in sig.domains)
    if c.phone_digits and len(c.phone_digits) >= 7 and c.phone_digits[-8:] in sig.digits:
        seen.append("phone number")
    if not seen:
        return None
    return Step(f"their signature shows {', '.join(dict.fromkeys(seen))}", SIGNATURE_BITS)


@dataclass(frozen=True, slots=True)
class NameMatch:
    contact: ContactRec
    probability: float
    evidence: tuple[str, ...]


def _scored(
    tokens: list[str], email: str, index: CrmIndex, text: str, is_sender: bool, reversed_order: bool
) -> list[tuple[float, ContactRec, list[Step]]]:
    """Contacts the name may be, with the evidence for each: the name, then the domain or the signature."""
    surname = tokens[0] if reversed_order else tokens[-1]
    domain_company = index.company_for_email(email)
    signature = _Signature(text)
    if domain_company is not None:  # only the namesakes at the address's company can be corroborated
        ids: Sequence[int] = index.by_surname_company.get((surname, domain_company[0].id), ())
    elif is_sender and text and surname in index.by_surname:  # only the sender's own signature can corroborate
        ids = signature.contacts_named(surname, index)
    else:
        return []
    if not ids:
        return []
    scored: list[tuple[float, ContactRec, list[Step]]] = []
    for cid in dict.fromkeys(ids):
        c = index.contacts.get(cid)
        if c is None or (domain_company is not None and c.company_id != domain_company[0].id):
            continue  # a namesake at another company, or an entry left from before the contact moved
        step = _name_step(tokens, c, reversed_order)
        if step is None:
            continue
        steps = [Step("a stranger may share the name", PRIOR_BITS), step]
        if domain_company is not None:  # (same name at another company: left out above)
            steps.append(Step(f"{email} is at their company's domain {domain_company[1]}", DOMAIN_BITS))
        elif is_sender and text:
            sig = _signature_step(c, index, signature)
            if sig is None:
                continue  # a name alone never links a stranger on a personal or unknown address
            steps.append(sig)
        else:
            continue
        scored.append((sum(s.bits for s in steps), c, steps))
    return scored


def match_by_name(
    email: str, display: str | None, index: CrmIndex, text: str = "", is_sender: bool = False
) -> NameMatch | None:
    """The CRM contact behind an unlisted address, or None when the evidence is not enough."""
    tokens = name_tokens(display)
    if tokens is None:
        return None
    scored = _scored(tokens, email, index, text, is_sender, False)
    if not scored and len(tokens) == 2:
        scored = _scored(tokens, email, index, text, is_sender, True)
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
