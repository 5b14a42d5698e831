"""Which deal an item belongs to: a declarative scorer with a waterfall of evidence.

Candidates are the deals of the item's companies and contacts that were open at the item's date (a
deal won or lost later was still open then). Each candidate collects signals, each worth a number of
bits (log2 odds); the candidates compete with a "none of these" option:

    P(deal) = 2**score(deal) / (sum over candidates of 2**score + 2**NONE_BITS)

A deal is chosen only when its probability reaches ``CHOOSE_AT``; otherwise the item keeps its people
and companies, gets no deal and goes to review with the ranked candidates. Every weight is derived
from the CRM and the item itself: word rarity (IDF) over the CRM's deal names, which words a deal
shares with its company's name or with its rival candidates, contact roles, the thread's history.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from .identity import fold

#: bits for "the item is about none of the candidates" — the default when nothing speaks for a deal
NONE_BITS = 2.0
#: the only deal open at the item's date
ONLY_CANDIDATE_BITS = 3.0
#: full coverage of a deal's distinctive words in the subject (body mentions count BODY_FACTOR as much)
TEXT_BITS = 8.0
BODY_FACTOR = 0.75
#: consecutive deal words found consecutively in the text
PHRASE_BITS = 1.0
#: a participant is a contact on the deal (only when it tells candidates apart)
ROLE_BITS = 3.5
#: the thread's earlier mail was attributed to the deal
THREAD_BITS = 4.0
#: a person corrected or confirmed this thread onto the deal
CORRECTION_BITS = 10.0
CHOOSE_AT = 0.6
#: a deal counts as open until this long after its close date (late paperwork, thank-you notes)
CLOSE_GRACE = timedelta(days=1)

_NUMERONYM = re.compile(r"^([a-z])(\d{1,2})([a-z])$")
_ACRONYM = re.compile(r"\b[A-Z][A-Za-z0-9]{1,6}\b")
# function words carry no deal information in any of the languages deal names are commonly written in
_STOP = frozenset(
    {
        "a",
        "an",
        "and",
        "the",
        "of",
        "for",
        "to",
        "in",
        "on",
        "at",
        "by",
        "with",
        "from",
        "or",
        "vs",
        "via",
        "per",
        "de",
        "la",
        "le",
        "les",
        "des",
        "du",
        "et",
        "en",
        "el",
        "los",
        "las",
        "del",
        "y",
        "der",
        "die",
        "das",
        "und",
        "für",
        "von",
        "zu",
        "im",
        "am",
        "mit",
        "inc",
        "ltd",
        "llc",
        "gmbh",
        "ag",
        "sa",
        "co",
        "corp",
        "plc",
    }
)


@dataclass(frozen=True, slots=True)
class Step:
    """One line of a waterfall: what was seen and how many bits it is worth."""

    label: str
    bits: float


@dataclass
class Candidate:
    deal_id: int
    name: str
    steps: list[Step] = field(default_factory=list)

    @property
    def bits(self) -> float:
        return sum(s.bits for s in self.steps)


@dataclass
class DealDecision:
    chosen: Candidate | None
    probability: float
    ranked: list[tuple[Candidate, float]]
    evidence: list[str]


def tokens(text: str) -> list[str]:
    return [t for t in fold(text).split() if t not in _STOP and (len(t) >= 2 or t.isdigit())]


class DealVocabulary:
    """Word rarity over every deal name in the CRM, so generic words ("renewal", "2027") weigh little."""

    def __init__(self, names: Iterable[str]) -> None:
        df: Counter[str] = Counter()
        n = 0
        for name in names:
            n += 1
            df.update(set(tokens(name)))
        self.n = n
        self.idf = {w: math.log2((n + 1) / (c + 0.5)) for w, c in df.items()}
        self.default = math.log2(n + 1) if n else 1.0

    def weight(self, word: str) -> float:
        w = self.idf.get(word, self.default)
        return w * 0.5 if word.isdigit() else w


class _Bag:
    """One part of the text (subject or body) indexed for the lookups deal words need."""

    def __init__(self, words: list[str]) -> None:
        self.words = set(words)

    @cached_property
    def _choices(self) -> list[str]:
        return [t for t in self.words if not t.isdigit()]

    @cached_property
    def _numeronyms(self) -> list[tuple[str, str, int, str]]:
        out = []
        for t in self.words:
            m = _NUMERONYM.match(t)
            if m:
                out.append((t, m.group(1), int(m.group(2)), m.group(3)))
        return out

    def similar(self, word: str) -> str | None:
        """A token that is the word with a typo, its numeronym (o11y) or a short prefix (infra)."""
        if len(word) >= 5:
            limit = 1 if len(word) < 9 else 2
            hit = process.extractOne(word, self._choices, scorer=Levenshtein.distance, score_cutoff=limit)
            if hit is not None and hit[0][:1] == word[:1]:
                return str(hit[0])
        for t, first, n, last in self._numeronyms:
            if word[0] == first and word[-1] == last and len(word) - 2 == n:
                return t
        for k in range(max(4, (len(word) + 1) // 2), len(word)):
            if word[:k] in self.words:
                return word[:k]
        return None


class Text:
    """An item's subject and body, prepared once for every candidate."""

    def __init__(self, subject: str, body: str) -> None:
        self._raw = subject + " " + body[:3000]
        self._s_words, self._b_words = tokens(subject), tokens(body[:3000])
        self.subject, self.body = _Bag(self._s_words), _Bag(self._b_words)
        self._found: dict[str, tuple[str, str] | None] = {}

    @cached_property
    def bigrams(self) -> set[tuple[str, str]]:
        s, b = self._s_words, self._b_words
        return set(zip(s, s[1:], strict=False)) | set(zip(b, b[1:], strict=False))

    @cached_property
    def acronyms(self) -> set[str]:
        return {a.lower() for a in _ACRONYM.findall(self._raw) if not a.istitle()}

    def find(self, word: str) -> tuple[str, str] | None:
        """Where a deal word is mentioned (subject/body) and how it was written."""
        if word in self._found:
            return self._found[word]
        hit: tuple[str, str] | None = None
        for where, bag in (("subject", self.subject), ("body", self.body)):
            if word in bag.words:
                hit = (where, word)
                break
        if hit is None and not word.isdigit():
            for where, bag in (("subject", self.subject), ("body", self.body)):
                t = bag.similar(word)
                if t is not None:
                    hit = (where, t)
                    break
        self._found[word] = hit
        return hit


def _initials_hits(words: list[str], text: Text) -> list[tuple[int, int, str]]:
    """Runs of 2+ consecutive deal words written as an acronym (DWH for Data WareHouse, DR, ...)."""
    hits = []
    for i in range(len(words)):
        for j in range(i + 2, min(len(words), i + 5) + 1):
            run = [w for w in words[i:j] if not w.isdigit()]
            if len(run) < 2:
                continue
            initials = "".join(w[0] for w in run)
            for a in text.acronyms:
                if a == initials or (a.startswith(initials) and len(a) - len(initials) <= 1):
                    hits.append((i, j, a.upper()))
    return hits


def text_step(name_words: list[str], distinctive: set[str], vocab: DealVocabulary, text: Text) -> Step | None:
    """How much of the deal's distinctive wording (weighted by rarity) the item mentions."""
    words = [w for w in name_words if w in distinctive]
    total = sum(vocab.weight(w) for w in words)
    if not words or total <= 0:
        return None
    found: dict[str, tuple[str, str]] = {}
    for w in words:
        hit = text.find(w)
        if hit is not None:
            found[w] = hit
    acronym = None
    for i, j, written in _initials_hits(words, text) if text.acronyms else ():
        for w in words[i:j]:
            found.setdefault(w, ("subject", written))
        acronym = written
    if not found:
        return None
    covered = 0.0
    for w, (where, _) in found.items():
        covered += vocab.weight(w) * (1.0 if where == "subject" else BODY_FACTOR)
    if all(w.isdigit() for w in found):
        return None  # a year alone says nothing
    bits = TEXT_BITS * covered / total
    phrase = any((a, b) in text.bigrams for a, b in zip(words, words[1:], strict=False) if a in found and b in found)
    if phrase:
        bits += PHRASE_BITS
    where = "subject" if any(v[0] == "subject" for v in found.values()) else "body"
    shown = acronym or " ".join(dict.fromkeys(found[w][1] for w in words if w in found))
    return Step(f"{where} mentions '{shown}' ({len(found)} of {len(words)} distinctive words)", round(bits, 2))


def open_at(status: str, created_at: datetime | None, close_date: datetime | None, when: datetime) -> bool:
    if created_at is not None and when < created_at - timedelta(days=1):
        return False
    return not (status != "open" and close_date is not None and when > close_date + CLOSE_GRACE)


def decide(candidates: list[Candidate], only_one_open: bool) -> DealDecision:
    if not candidates:
        return DealDecision(None, 0.0, [], [])
    if only_one_open:
        candidates[0].steps.insert(0, Step("the only deal open at this date", ONLY_CANDIDATE_BITS))
    denom = sum(2.0**c.bits for c in candidates) + 2.0**NONE_BITS
    ranked = sorted(((c, 2.0**c.bits / denom) for c in candidates), key=lambda x: (-x[1], x[0].deal_id))
    best, p = ranked[0]
    chosen = best if p >= CHOOSE_AT else None
    evidence = []
    if chosen is not None:
        evidence.append(f"deal '{best.name}': {len(candidates)} candidate deal(s) open at this date")
        evidence.extend(f"  {s.bits:+.1f} bits: {s.label}" for s in best.steps)
        runner = f"; next best '{ranked[1][0].name}' {ranked[1][1]:.2f}" if len(ranked) > 1 else ""
        evidence.append(f"  = {best.bits:.1f} bits against 'none of these' {NONE_BITS:.1f} → {p:.2f}{runner}")
    else:
        top = ", ".join(f"'{c.name}' {q:.2f}" for c, q in ranked[:3])
        evidence.append(f"no deal chosen: {len(candidates)} open deal(s), none clearly meant ({top})")
    return DealDecision(chosen, p, ranked, evidence)
