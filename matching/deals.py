"""Which deal an item belongs to: a declarative scorer with a waterfall of evidence.

Candidates are the deals of the item's companies and contacts that were open at the item's date (a
deal won or lost later was still open then). Each candidate collects signals, each worth a number of
bits (log2 odds); the candidates compete with a "none of these" option:

    P(deal) = 2**score(deal) / (sum over candidates of 2**score + 2**NONE_BITS)

A deal is chosen only when its probability reaches ``CHOOSE_AT``; otherwise the item keeps its people
and companies, gets no deal and goes to review with the ranked candidates. Every weight is derived
from the CRM and the item itself: word rarity (IDF) over the CRM's deal names, which words a deal
shares with its company's name or with its rival candidates, contact roles, the thread's history.

The work per item does not grow with the number of candidates: a deal's words, acronyms and open dates
are worked out once (``DealInfo``, ``DealTimeline``), the item's words are matched once against every deal
word (``Lexicon``, ``Text.maybe``), and a candidate nothing speaks for is not scored: it has 0 bits like
all the others of its kind, and ``decide_sparse`` counts it in the normalisation exactly as ``decide``
would.
"""

from __future__ import annotations

import html
import math
import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from sys import intern

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from providers.quotes import own_words

from .identity import fold, is_given_name, is_unspaced, name_forms

#: bits for "the item is about none of the candidates" — the default when nothing speaks for a deal
NONE_BITS = 2.0
#: the only deal open at the item's date
ONLY_CANDIDATE_BITS = 3.0
#: full coverage of a deal's distinctive words in the subject (body mentions count BODY_FACTOR as much)
TEXT_BITS = 8.0
BODY_FACTOR = 0.75
#: a deal word written as its prefix ("infra") counts this much of the word written out
PREFIX_FACTOR = 0.5
#: a mention made only of look-alikes in the body (prefixes, typos of words under nine letters) counts this much
LOOKALIKE_FACTOR = 0.5
#: consecutive deal words found consecutively in the text
PHRASE_BITS = 1.0
#: a participant is a contact on the deal (only when it tells candidates apart)
ROLE_BITS = 3.5
#: the thread's earlier mail was attributed to the deal
THREAD_BITS = 5.5
#: a person corrected or confirmed this thread onto the deal
CORRECTION_BITS = 10.0
CHOOSE_AT = 0.6
#: a deal counts as open until this long after its close date (late paperwork, thank-you notes)
CLOSE_GRACE = timedelta(days=1)

_NUMERONYM = re.compile(r"^([a-z])(\d{1,2})([a-z])$")
_ACRONYM = re.compile(r"\b[A-Z][A-Za-z0-9]{1,6}\b")
# function words carry no deal information in any of the languages deal names are commonly written in (folded:
# "für" is "fur"); not two-letter words that double as codes (IT, NA, EU, ES, US)
_STOP_WORDS = """
    a an and the of for to in on at by with from or vs via per as into is are be this that our your
    de la le les des du et en un une pour par sur avec dans au aux ou est nous vous votre notre ce cette ces
    el los las del y para con por al una unos unas su sus que nuestro nuestra
    da do das dos em ao aos com um uma pelo pela
    di il lo gli della dello delle dei degli nel nella alla
    der die das und fur von zu im am mit dem den ein eine einer eines einem auf bei uber nach vom zum zur aus oder
    het een van voor met naar bij
    inc ltd llc gmbh ag sa co corp plc
"""
_STOP = frozenset(_STOP_WORDS.split())
# reply and forward prefixes of mail clients in several languages, with counters ("Re[2]:", "AW:", "SV:", "RV:")
_PREFIX = re.compile(
    r"^(?:\s*(?:re|fw|fwd|aw|wg|sv|vs|tr|rv|ref|antw|odp|enc|r|i|vb|doorst|vl|ynt|reenv)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*)+",
    re.I,
)
_FORWARD = re.compile(r"^\s*(?:fw|fwd|wg|tr|rv|enc|i|vb|doorst|vl|reenv)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]", re.I)
_LOWER_WORD = re.compile(r"\b[a-z]{3,5}\b")
_HTML_TAG = re.compile(r"<[a-zA-Z/!][^<>]{0,300}>")
# two letters or digits with something else between them: a compound ("E-Commerce", "S/4HANA")
_TWO_PIECES = re.compile(r"[^\W_][\W_]+[^\W_]")
# what may give a name's words another spelling: the punctuation of a compound, an umlaut or ring letter
_JOINER = re.compile(r"[-/.'’&+]")
_UMLAUT = re.compile(r"[ÄÖÜÅØÆäöüåøæ]")
# a capital after a lower-case letter starts a new word inside a name written in camelCase ("DataLake")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z][a-z])")


def strip_prefixes(subject: str) -> str:
    """The subject without reply and forward prefixes: "AW: WG: Angebot" -> "Angebot"."""
    head = subject[:12]
    if ":" not in head and "：" not in head:
        return subject
    m = _PREFIX.match(subject)
    return subject[m.end() :] if m else subject


def plain_text(body: str) -> str:
    """Text with leftover HTML tags and character references ("&nbsp;", "&uuml;") resolved."""
    if "<" in body:
        body = _HTML_TAG.sub(" ", body)
    if "&" in body:
        body = html.unescape(body)
    return body


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


# fold() for ASCII text in one pass: every character but a letter or digit becomes a space, capitals lower case
_ASCII_FOLD = str.maketrans(
    {
        chr(c): (chr(c).lower() if chr(c).isalnum() else " ")
        for c in range(128)
        if not chr(c).isalnum() or chr(c).isupper()
    }
)
# the case shape of ASCII text (upper, lower, digit, other), to rule out acronyms without a regex scan
_CASE_SHAPE = str.maketrans(
    {
        chr(c): "U" if chr(c).isupper() else "l" if chr(c).islower() else "d" if chr(c).isdigit() else " "
        for c in range(128)
    }
)


def _folded_words(text: str) -> list[str]:
    """``fold(text).split()``: every word, stop words included."""
    if text.isascii():
        return text.translate(_ASCII_FOLD).split()
    return fold(text).split()


def _kept(t: str) -> bool:
    return t not in _STOP and (len(t) >= 2 or t.isdigit())


def tokens(text: str) -> list[str]:
    """The words of a deal or company name that can tell it apart: folded, camelCase split, stop words dropped."""
    if not (text.islower() or text.istitle()):
        text = _CAMEL.sub(" ", text)
    return [t for t in _folded_words(text) if t not in _STOP and (len(t) >= 2 or t.isdigit())]


def _may_alias(name: str) -> bool:
    """Whether aliases() may find something: cheap tests that rule out most names."""
    return bool(_JOINER.search(name) or not (name.islower() or name.istitle()) or _UMLAUT.search(name))


def aliases(name: str) -> dict[str, tuple[str, ...]]:
    """Single words an item may write for words of the name: a compound joined ("ecommerce" for E-Commerce,
    "s4hana" for S/4HANA, "prj2041" for PRJ-2041, "datalake" for DataLake) and a German or Scandinavian
    spelling of an umlaut ("abfuellanlage" for Abfüllanlage)."""
    out: dict[str, tuple[str, ...]] = {}
    if not _may_alias(name):
        return out
    for chunk in name.split():
        if chunk.isalnum():
            if chunk.isascii() and (chunk.islower() or not _CAMEL.search(chunk)):
                continue  # one plain word: written one way only
        elif not _TWO_PIECES.search(chunk):
            continue  # punctuation, or one word with punctuation around it: nothing to join
        parts = tuple(tokens(chunk))
        if not parts:
            continue
        for form in name_forms(chunk):
            written = form.split()
            joined = "".join(written)
            if joined.isdigit() or (len(written) == 1 and (joined,) == parts):
                continue
            if len(written) == 1 or len(joined) >= 4:
                out[joined] = parts
    return out


def compound_tails(name: str) -> dict[str, str]:
    """Initials of the short words a compound of the name keeps after a deal word: "o" after "sign" in
    Sign-On, so SSO can stand for Single Sign-On though "on" is no deal word."""
    out: dict[str, str] = {}
    if not _JOINER.search(name):
        return out
    for chunk in name.split():
        if chunk.isalnum() or not _TWO_PIECES.search(chunk):
            continue  # no compound
        last = None
        for piece in _folded_words(chunk):
            if _kept(piece):
                last = piece
            elif last is not None and piece[:1].isalpha():
                out[last] = out.get(last, "") + piece[0]
    return out


def stems(word: str) -> list[str]:
    """The words an inflected word of an item may be another form of, in the languages deal names are written
    in: plural for singular (seats, licences, Lizenzen) and singular for plural ("renewal" for Renewals).
    Longer words also meet their inflections as typos; these cover the short ones typos do not."""
    if len(word) < 3 or not word.isalpha():
        return []
    out = [word + "s"] if not word.endswith("s") else []
    if len(word) >= 4 and word.endswith("s") and not word.endswith("ss"):
        out.append(word[:-1])
    if len(word) >= 5 and word.endswith(("es", "en")):
        out.append(word[:-2])
    return out


def _typo_limit(word: str) -> int:
    return 1 if len(word) < 9 else 2


def _prefixes(word: str) -> list[str]:
    """The short forms of a word an item may use for it ("infra" for "infrastructure"), shortest first."""
    return [word[:k] for k in range(max(4, (len(word) + 1) // 2), len(word))]


def deal_initials(words: Sequence[str]) -> set[str]:
    """The acronyms runs of 2-5 consecutive words go by (digits skipped): what ``_initials_hits`` looks for."""
    out = set()
    firsts = ["" if w.isdigit() else w[0] for w in words]
    for i in range(len(words)):
        run = firsts[i]
        for j in range(i + 1, min(len(words), i + 5)):  # the run words[i:j + 1]
            run += firsts[j]
            if len(run) >= 2:
                out.add(run)
    return out


class Lexicon:
    """Every word of every deal name and the ways an item may write it, so an item's words are looked up
    once against all deals instead of once per candidate deal.

    A word of an item stands for a deal word written exactly, with a typo (one edit, two for words of nine
    letters or more), as a numeronym (o11y) or as a prefix (infra). Exact words and prefixes are known up
    front; typos and numeronyms are worked out the first time a word is seen and remembered (up to
    ``MAX_LEARNED`` words, then everything learnt is forgotten and learnt again)."""

    MAX_LEARNED = 100_000

    def __init__(self, words: Iterable[str], aliases: dict[str, frozenset[str]] | None = None) -> None:
        self.words = frozenset(words)
        #: a single word of an item -> the deal words it writes in one (deals.aliases: "ecommerce", "s4hana")
        self.aliases = aliases or {}
        base: dict[str, set[str]] = {a: set(ws) for a, ws in self.aliases.items()}
        self._long_by_len: dict[int, list[str]] = {}
        self._by_shape: dict[tuple[str, int, str], list[str]] = {}
        for w in sorted(self.words):
            base.setdefault(w, set()).add(w)
            if w.isdigit():
                continue
            self._by_shape.setdefault((w[0], len(w) - 2, w[-1]), []).append(w)
            if len(w) >= 5:
                self._long_by_len.setdefault(len(w), []).append(w)
            for p in _prefixes(w):
                if _kept(p):
                    base.setdefault(p, set()).add(w)
        self._base = {t: frozenset(ws) for t, ws in base.items()}
        #: deal words of scripts written without spaces: an item writes them inside longer runs ("パイロットの件")
        self._unspaced = tuple(w for w in sorted(self.words) if len(w) >= 2 and is_unspaced(w))
        self._windows: dict[int, list[str]] = {}
        self._reset()

    def _reset(self) -> None:
        # new objects rather than cleared ones: a Text keeps the ones it was built with
        #: word of an item -> the deal words it may stand for
        self.assoc: dict[str, frozenset[str]] = dict(self._base)
        #: the words of items that may stand for a deal word
        self.interesting: set[str] = set(self._base)
        #: word of an item -> (deal word, edit distance) for every deal word it is a typo of
        self.near: dict[str, tuple[tuple[str, int], ...]] = {}
        #: numeronym -> (first letter, letters in between, last letter)
        self.shape: dict[str, tuple[str, int, str]] = {}
        #: word of an item -> the deal words it is an inflected form of (stems), or holds (unspaced scripts)
        self.inflected: dict[str, frozenset[str]] = {}
        self._seen: set[str] = set()  # words learn() was given ...
        self._learnt: set[str] = set()  # ... and worked out (the same once learn() returns)

    def _window(self, n: int) -> list[str]:
        """Deal words of five letters or more whose length is within two of ``n``."""
        out = self._windows.get(n)
        if out is None:
            out = [w for k in range(n - 2, n + 3) for w in self._long_by_len.get(k, ())]
            self._windows[n] = out
        return out

    def learn(self, *texts: list[str]) -> None:
        """Work out, for the words not seen before, which deal words they may be a typo or numeronym of."""
        seen = self._seen
        n = len(seen)
        for words in texts:
            seen.update(words)  # one pass, no new set: in the steady state every word is known
        if len(seen) == n:
            return
        if len(seen) > self.MAX_LEARNED:
            self._reset()
            for words in texts:
                self._seen.update(words)
        new = set().union(*texts).difference(self._learnt)
        self._learnt |= new
        for t in new:
            if t.isdigit() or not _kept(t):
                continue
            stands_for: set[str] = set()
            window = self._window(len(t))
            if window:
                near = tuple(
                    (w, int(d))
                    for w, d, _ in process.extract(t, window, scorer=Levenshtein.distance, score_cutoff=2, limit=None)
                    if d <= _typo_limit(w)
                )
                if near:
                    self.near[t] = near
                    stands_for.update(w for w, _ in near)
            m = _NUMERONYM.match(t)
            if m:
                key = (m.group(1), int(m.group(2)), m.group(3))
                if key in self._by_shape:
                    self.shape[t] = key
                    stands_for.update(self._by_shape[key])
            forms = [w for w in stems(t) if w in self.words]
            if self._unspaced and len(t) > 2 and is_unspaced(t):
                forms += [w for w in self._unspaced if w in t and w != t]  # with particles or other words around
            if forms:
                self.inflected[t] = frozenset(forms)
                stands_for.update(forms)
            if stands_for:
                self.assoc[t] = self._base.get(t, frozenset()) | stands_for
                self.interesting.add(t)


class DealVocabulary:
    """Word rarity over every deal name in the CRM, so generic words ("renewal", "2027") weigh little."""

    def __init__(self, names: Iterable[str]) -> None:
        df: Counter[str] = Counter()
        n = 0
        written: dict[str, set[str]] = {}
        tails: dict[str, set[str]] = {}
        for name in names:
            n += 1
            df.update(set(tokens(name)))
            for alias, parts in aliases(name).items():
                written.setdefault(alias, set()).update(parts)
            for word, letters in compound_tails(name).items():
                tails.setdefault(word, set()).update(letters)
        self.n = n
        self.idf = {w: math.log2((n + 1) / (c + 0.5)) for w, c in df.items()}
        self.default = math.log2(n + 1) if n else 1.0
        #: deal word -> initials of the short words its compounds keep after it (compound_tails)
        self.tails = {w: frozenset(ls) for w, ls in tails.items()}
        self.lexicon = Lexicon(self.idf, {a: frozenset(ws) for a, ws in written.items()})

    def weight(self, word: str) -> float:
        w = self.idf.get(word, self.default)
        return w * 0.5 if word.isdigit() else w


class _Bag:
    """One part of the text (subject or body) indexed for the lookups deal words need.

    With a lexicon, a deal word is looked up among the few words of the text that stand for some deal word
    (``hits``); the full word set is only built to break a tie the way a scan in set order would."""

    def __init__(self, words: list[str], lexicon: Lexicon | None = None) -> None:
        self._raw = words  # folded words, stop words included
        self._lexicon = lexicon
        if lexicon is not None:
            self.hits = lexicon.interesting.intersection(words)
            self._near, self._shape = lexicon.near, lexicon.shape
            self._aliases, self._inflected = lexicon.aliases, lexicon.inflected
        else:
            self.hits = set()

    @cached_property
    def kept(self) -> list[str]:
        return [t for t in self._raw if t not in _STOP and (len(t) >= 2 or t.isdigit())]

    @cached_property
    def words(self) -> set[str]:
        return set(self.kept)

    def has(self, word: str) -> bool:
        if self._lexicon is not None and word in self._lexicon.words:
            return word in self.hits
        return word in self.words

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

    @cached_property
    def _typos(self) -> dict[str, list[tuple[str, int]]]:
        out: dict[str, list[tuple[str, int]]] = {}
        for t in self.hits:
            for w, d in self._near.get(t, ()):
                out.setdefault(w, []).append((t, d))
        return out

    @cached_property
    def _written(self) -> dict[str, str]:
        """Deal word -> the word of the text that writes it another way: an alias or an inflected form."""
        out: dict[str, str] = {}
        for t in sorted(self.hits):
            for w in self._aliases.get(t, ()):
                out.setdefault(w, t)
            for w in self._inflected.get(t, ()):
                out.setdefault(w, t)
        return out

    def alias(self, word: str) -> str | None:
        """The word of the text that writes the deal word together with others, spelt another way or inflected."""
        if self._lexicon is None:
            return None
        return self._written.get(word)

    @cached_property
    def _shapes(self) -> dict[tuple[str, int, str], list[str]]:
        out: dict[tuple[str, int, str], list[str]] = {}
        for t in self.hits:
            key = self._shape.get(t)
            if key is not None:
                out.setdefault(key, []).append(t)
        return out

    def _first(self, ties: list[str]) -> str:
        """The tie a scan of the word set would meet first."""
        if len(ties) == 1:
            return ties[0]
        wanted = set(ties)
        # a word the subject writes in two ("ML ops") is in no scan: it comes after the words that are
        return next((t for t in self.words if t in wanted), min(ties))

    def similar(self, word: str) -> str | None:
        """A token that is the word with a typo, its numeronym (o11y) or a short prefix (infra)."""
        if self._lexicon is None or word not in self._lexicon.words or word.isdigit():
            return self._similar_scan(word)
        if len(word) >= 5:
            typos = self._typos.get(word)
            if typos:
                best = min(d for _, d in typos)
                t = self._first([t for t, d in typos if d == best])
                if t[:1] == word[:1]:
                    return t
        if len(word) >= 2:
            shaped = self._shapes.get((word[0], len(word) - 2, word[-1]))
            if shaped:
                return self._first(shaped)
        for p in _prefixes(word):
            if p in self.hits:
                return p
        return None

    def _similar_scan(self, word: str) -> str | None:
        """similar() for a word the lexicon does not know: a scan of the text's words."""
        if len(word) >= 5:
            limit = _typo_limit(word)
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

    def adjacent(self, a: str, b: str) -> bool:
        """Whether ``b`` is the word after ``a`` (stop words skipped)."""
        if not (self.has(a) and self.has(b)):
            return False
        raw, i = self._raw, -1
        while True:
            try:
                i = raw.index(a, i + 1)
            except ValueError:
                return False
            j = i + 1
            while j < len(raw) and not _kept(raw[j]):
                j += 1
            if j < len(raw) and raw[j] == b:
                return True


def _acronym_matches(text: str) -> list[str]:
    """What ``_ACRONYM`` finds in the text, less (for ASCII text) words that cannot be acronyms: an acronym
    that is not title case has a capital after a letter or a lower-case letter after a digit."""
    if text.isascii():
        shape = text.translate(_CASE_SHAPE)
        if "UU" not in shape and "lU" not in shape and "dl" not in shape:
            return []
    return _ACRONYM.findall(text)


class Text:
    """An item's subject and body, prepared once for every candidate.

    The subject is read without its reply and forward prefixes (AW:, SV:, RV: are no acronyms), the body
    without leftover HTML and, unless the item is a forward, without the quoted mail of a reply.

    With the deal vocabulary's lexicon the words of the text are matched against every deal word at once:
    ``maybe`` holds the deal words the text may mention, so a candidate none of whose words is among them
    (and that no acronym of the text can stand for) is known to have no text evidence without a lookup."""

    def __init__(self, subject: str, body: str, lexicon: Lexicon | None = None) -> None:
        bare = strip_prefixes(subject)
        body = plain_text(body[:3000])
        # a forward carries the earlier mail as its content; a reply's quote is what others wrote before
        self._subject, self._body = bare, body if bare is not subject and _FORWARD.match(subject) else own_words(body)
        s_words, b_words = _folded_words(self._subject), _folded_words(self._body)
        if lexicon is not None:
            lexicon.learn(s_words, b_words)
            self._assoc = lexicon.assoc
        self._lexicon = lexicon
        self.subject, self.body = _Bag(s_words, lexicon), _Bag(b_words, lexicon)
        if lexicon is not None and len(s_words) > 1:
            # a deal word the subject writes in two ("ML ops" for MLOps, "data lake" for DataLake)
            known, written = lexicon.words, lexicon.aliases
            for a, b in zip(s_words, s_words[1:], strict=False):
                if (a + b in known or a + b in written) and not (a.isdigit() and b.isdigit()):
                    self.subject.hits.add(a + b)
        self._found: dict[str, tuple[str, str] | None] = {}
        self._acronyms: tuple[set[str], set[str], frozenset[str]] | None = None
        self._keys: frozenset[str] | None = None

    @cached_property
    def bigrams(self) -> set[tuple[str, str]]:
        s, b = self.subject.kept, self.body.kept
        return set(zip(s, s[1:], strict=False)) | set(zip(b, b[1:], strict=False))

    def adjacent(self, a: str, b: str) -> bool:
        """Whether (a, b) is in ``bigrams``, without building them."""
        return self.subject.adjacent(a, b) or self.body.adjacent(a, b)

    def _spell(self) -> tuple[set[str], set[str], frozenset[str]]:
        """(acronyms of the subject, of the whole text, lower-case words of the subject that may be acronyms),
        worked out on first use (plain attributes: this is asked once per candidate deal)."""
        if self._acronyms is None:
            subject = {a.lower() for a in _acronym_matches(self._subject) if not a.istitle()}
            every = subject | {a.lower() for a in _acronym_matches(self._body) if not a.istitle()}
            # written in lower case, not capitalised: "Sam" is a name, "cdp" may be an acronym
            lower = frozenset(_LOWER_WORD.findall(self._subject)).difference(self.subject.hits, _STOP, every)
            if lower:
                lower = frozenset(t for t in lower if not is_given_name(t))
            self._acronyms = (subject, every, lower)
        return self._acronyms

    @property
    def subject_acronyms(self) -> set[str]:
        return self._spell()[0]

    @property
    def acronyms(self) -> set[str]:
        return self._spell()[1]

    @property
    def lower_acronyms(self) -> frozenset[str]:
        """Words of three to five letters written in lower case in the subject that may be an acronym ("cdp"):
        not a stop word, not a given name ("sam"), not a deal word or a form of one."""
        return self._spell()[2]

    @property
    def has_acronyms(self) -> bool:
        _, every, lower = self._spell()
        return bool(every or lower)

    @property
    def acronym_keys(self) -> frozenset[str]:
        """The initials the acronyms stand for: each acronym, and it less its last letter (DWH for Data WareHouse);
        a lower-case one only as it is."""
        if self._keys is None:
            _, every, lower = self._spell()
            self._keys = frozenset(every) | {a[:-1] for a in every} | lower
        return self._keys

    @cached_property
    def maybe(self) -> frozenset[str]:
        """Deal words the text may mention (exactly, with a typo, as numeronym or prefix); needs a lexicon."""
        if self._lexicon is None:
            raise ValueError("Text.maybe needs a lexicon")
        assoc = self._assoc
        return frozenset().union(*(assoc[t] for t in self.subject.hits | self.body.hits))

    def may_mention(self, plain: Iterable[str], initials: Iterable[str]) -> bool:
        """Whether a deal with these distinctive non-digit words and acronyms may have text evidence: when
        False, text_step() returns None for it. The words must be the lexicon's (a deal's words always are:
        they are words of its name, and the vocabulary is built from every deal name)."""
        if self._lexicon is None:
            return True
        if not self.maybe.isdisjoint(plain):
            return True
        initials = tuple(initials)
        return bool(initials) and not self.acronym_keys.isdisjoint(initials)

    def find(self, word: str) -> tuple[str, str] | None:
        """Where a deal word is mentioned (subject/body) and how it was written."""
        if word in self._found:
            return self._found[word]
        hit: tuple[str, str] | None = None
        if self._lexicon is not None and word in self._lexicon.words:
            # a word of the lexicon: the text's words that may stand for it are known
            if word not in self.maybe:
                pass
            elif word in self.subject.hits:
                hit = ("subject", word)
            elif word in self.body.hits:
                hit = ("body", word)
            else:
                hit = self._alias(word)
                if hit is None and not word.isdigit():
                    hit = self._similar(word)
        else:
            for where, bag in (("subject", self.subject), ("body", self.body)):
                if word in bag.words:
                    hit = (where, word)
                    break
            if hit is None and not word.isdigit():
                hit = self._similar(word)
        self._found[word] = hit
        return hit

    def _alias(self, word: str) -> tuple[str, str] | None:
        return self._first(_Bag.alias, word)

    def _similar(self, word: str) -> tuple[str, str] | None:
        return self._first(_Bag.similar, word)

    def _first(self, look: Callable[[_Bag, str], str | None], word: str) -> tuple[str, str] | None:
        """(where, as written) of the first of subject and body that writes the word the way ``look`` finds."""
        for where, bag in (("subject", self.subject), ("body", self.body)):
            t = look(bag, word)
            if t is not None:
                return (where, t)
        return None


def _initials_hits(
    words: list[str], text: Text, tails: dict[str, frozenset[str]] | None = None
) -> list[tuple[int, int, str, str]]:
    """Runs of 2+ consecutive deal words written as an acronym (DWH for Data WareHouse, DR, ...), of 3+ words
    when it is written in lower case (cdp for Customer Data Platform: fewer letters would be ordinary words)."""
    hits = []
    keys = text.acronym_keys
    for i in range(len(words)):
        for j in range(i + 2, min(len(words), i + 5) + 1):
            run = [w for w in words[i:j] if not w.isdigit()]
            if len(run) < 2:
                continue
            initials = "".join(w[0] for w in run)
            if initials not in keys:
                continue
            for a in text.acronyms:
                # one letter more: a part of the last word (DWH for Data WareHouse, SSO for Single Sign-On)
                if a == initials or (
                    len(a) == len(initials) + 1
                    and a.startswith(initials)
                    and (a[-1] in run[-1][1:] or (tails is not None and a[-1] in tails.get(run[-1], ())))
                ):
                    hits.append((i, j, a.upper(), "subject" if a in text.subject_acronyms else "body"))
            if len(run) >= 3 and initials in text.lower_acronyms:
                hits.append((i, j, initials, "subject"))
    return hits


def text_step(
    name_words: Sequence[str],
    distinctive: AbstractSet[str],
    vocab: DealVocabulary,
    text: Text,
    initials: Iterable[str] | None = None,
) -> Step | None:
    """How much of the deal's distinctive wording (weighted by rarity) the item mentions. ``initials``, when
    given, holds every acronym the distinctive words can go by (deal_initials): none among the text's, no
    acronym is looked for."""
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
    spelt: set[str] = set()  # the acronyms that stand for some of the words
    spelt_out = text.has_acronyms and (initials is None or not text.acronym_keys.isdisjoint(initials))
    for i, j, written, where in _initials_hits(words, text, vocab.tails) if spelt_out else ():
        for w in words[i:j]:
            if w not in found or (where == "subject" and found[w][0] != "subject"):
                found[w] = (where, written)
        acronym = written
        spelt.add(written)
    if not found:
        return None
    covered = 0.0
    aliases, inflected = vocab.lexicon.aliases, vocab.lexicon.inflected
    sure = False  # a word written out, as an alias, inflected, as an acronym or a long word mistyped
    for w, (where, written) in found.items():
        if written == w or written in spelt or written in aliases or written in inflected:
            sure = True
            factor = 1.0
        elif len(written) < len(w) - 1 and w.startswith(written):
            factor = PREFIX_FACTOR  # a shortened word ("back" for backup, "work" for workflow) is often a word too
        else:
            factor = 1.0
            sure = sure or len(w) >= 9  # a typo of a short word may be another word ("manager" for managed)
        covered += vocab.weight(w) * (1.0 if where == "subject" else BODY_FACTOR) * factor
    if all(w.isdigit() for w in found):
        return None  # a year alone says nothing
    bits = TEXT_BITS * covered / total
    if not sure and all(where == "body" for where, _ in found.values()):
        bits *= LOOKALIKE_FACTOR  # only look-alikes in running text ("manager" for managed) may be other words
    phrase = any(
        found[a][1] == found[b][1] or text.adjacent(a, b)  # one word of the text for both: written as one
        for a, b in zip(words, words[1:], strict=False)
        if a in found and b in found
    )
    if phrase:
        bits += PHRASE_BITS
    where = "subject" if any(v[0] == "subject" for v in found.values()) else "body"
    # as written, or the deal word itself where the text wrote it inside a longer run (CJK: "パイロットの件")
    shown = acronym or " ".join(
        dict.fromkeys(w if w in found[w][1] and not found[w][1].isascii() else found[w][1] for w in words if w in found)
    )
    return Step(f"{where} mentions '{shown}' ({len(found)} of {len(words)} distinctive words)", round(bits, 2))


def open_at(status: str, created_at: datetime | None, close_date: datetime | None, when: datetime) -> bool:
    if created_at is not None and when < created_at - timedelta(days=1):
        return False
    return not (status != "open" and close_date is not None and when > close_date + CLOSE_GRACE)


@dataclass(frozen=True, slots=True)
class DealInfo:
    """What scoring needs of a deal, worked out once when the index first meets it (not once per item)."""

    id: int
    name: str
    words: tuple[str, ...]  # the name's words less its company's (CrmIndex.deal_words)
    plain: tuple[str, ...]  # those that are not numbers
    initials: tuple[str, ...]  # acronyms of runs of its words (deal_initials)
    contact_ids: frozenset[int]
    #: open from (created_at less a day) until (close_date plus CLOSE_GRACE, once no longer open): None is unbounded
    opens: datetime | None
    closes: datetime | None

    @classmethod
    def of(
        cls,
        deal_id: int,
        name: str,
        words: Sequence[str],
        status: str,
        created_at: datetime | None,
        close_date: datetime | None,
        contact_ids: frozenset[int],
    ) -> DealInfo:
        words = tuple(words)
        plain = tuple(w for w in words if not w.isdigit())
        return cls(
            deal_id,
            name,
            words,
            words if plain == words else plain,
            tuple(sorted(intern(a) for a in deal_initials(words))),  # few distinct across deals: shared
            contact_ids,
            created_at - timedelta(days=1) if created_at is not None else None,
            close_date + CLOSE_GRACE if status != "open" and close_date is not None else None,
        )

    def open_at(self, when: datetime) -> bool:
        """Same as the module's open_at() for this deal."""
        return (self.opens is None or not when < self.opens) and (self.closes is None or not when > self.closes)


class DealTimeline:
    """The deals of one company or contact by when they are open: finding the deals open at a date is a
    binary search over the dates their open spans start and end, not a scan of the deals.

    The dates cut time into segments (the dates themselves and the gaps between them); every segment holds
    the deals open throughout it, by id. A deal's open span covers consecutive segments, so the segments
    hold as many entries as the deals span; past ``MAX_DEALS`` deals they could hold too many, and up to
    ``MIN_DEALS`` a search saves nothing: then the timeline filters its deals instead."""

    MIN_DEALS = 6
    MAX_DEALS = 256
    __slots__ = ("deals", "_points", "_segments")

    def __init__(self, deals: Iterable[DealInfo]) -> None:
        self.deals = tuple(sorted({d.id: d for d in deals}.values(), key=lambda d: d.id))
        self._points: Sequence[datetime] = ()
        self._segments: Sequence[tuple[DealInfo, ...]] = ()
        if not self.MIN_DEALS < len(self.deals) <= self.MAX_DEALS:
            return
        try:
            points = sorted({p for d in self.deals for p in (d.opens, d.closes) if p is not None})
        except TypeError:  # naive and aware dates mixed: no order to search (filter, as open_at() would)
            return
        where = {p: i for i, p in enumerate(points)}
        # segment 2i is the gap before points[i] (2n: after the last), segment 2i+1 is points[i] itself
        segments: list[list[DealInfo]] = [[] for _ in range(2 * len(points) + 1)]
        for d in self.deals:
            first = 0 if d.opens is None else 2 * where[d.opens] + 1
            last = 2 * len(points) if d.closes is None else 2 * where[d.closes] + 1
            for k in range(first, last + 1):
                segments[k].append(d)
        shared: list[tuple[DealInfo, ...]] = []
        for k, seg in enumerate(segments):  # neighbours often hold the same deals: share one tuple
            shared.append(shared[-1] if k and seg == segments[k - 1] else tuple(seg))
        self._points, self._segments = points, shared

    def open_at(self, when: datetime) -> Sequence[DealInfo]:
        """The deals open at the date, by id (DealInfo.open_at)."""
        if not self._segments:
            return [d for d in self.deals if d.open_at(when)]
        points = self._points
        i = bisect_left(points, when)
        return self._segments[2 * i + 1 if i < len(points) and points[i] == when else 2 * i]


#: how many candidates without evidence decide_sparse() ranks (the lowest ids: they tie)
RANKED_SILENT = 5


def decide(candidates: list[Candidate], only_one_open: bool) -> DealDecision:
    if not candidates:
        return DealDecision(None, 0.0, [], [])
    if only_one_open:
        candidates[0].steps.insert(0, Step("the only deal open at this date", ONLY_CANDIDATE_BITS))
    return _decide(candidates, [2.0**c.bits for c in candidates], len(candidates))


def decide_sparse(scored: list[Candidate], silent: Sequence[tuple[int, str]], weights: list[float]) -> DealDecision:
    """decide() for two or more candidates when only ``scored`` have evidence.

    The others all score 0 bits: they share one probability and, among themselves, rank by id. ``silent``
    holds (id, name) of the first ``RANKED_SILENT`` of them (the lowest ids), enough for every ranked place
    anyone shows; ``weights`` is 2**bits of every candidate in id order (1.0 for one without evidence), so
    the normalisation is the very sum decide() computes. ``ranked`` holds the scored candidates and as many
    of the silent ones as can rank among the first ``RANKED_SILENT``."""
    denom = sum(weights) + 2.0**NONE_BITS
    prior = 2.0**0 / denom
    pool = [(c, 2.0**c.bits / denom) for c in scored]
    room = RANKED_SILENT - sum(1 for _, p in pool if p > prior)
    pool += [(Candidate(i, name, []), prior) for i, name in silent[: max(room, 0)]]
    return _ranked(pool, len(weights))


def _decide(pool: list[Candidate], weights: list[float], count: int) -> DealDecision:
    denom = sum(weights) + 2.0**NONE_BITS
    return _ranked([(c, 2.0**c.bits / denom) for c in pool], count)


def _ranked(pool: list[tuple[Candidate, float]], count: int) -> DealDecision:
    ranked = sorted(pool, key=lambda x: (-x[1], x[0].deal_id))
    best, p = ranked[0]
    chosen = best if p >= CHOOSE_AT else None
    evidence = []
    if chosen is not None:
        evidence.append(f"deal '{best.name}': {count} candidate deal(s) open at this date")
        evidence.extend(f"  {s.bits:+.1f} bits: {s.label}" for s in best.steps)
        runner = f"; next best '{ranked[1][0].name}' {ranked[1][1]:.2f}" if len(ranked) > 1 else ""
        evidence.append(f"  = {best.bits:.1f} bits against 'none of these' {NONE_BITS:.1f} → {p:.2f}{runner}")
    else:
        top = ", ".join(f"'{c.name}' {q:.2f}" for c, q in ranked[:3])
        evidence.append(f"no deal chosen: {count} open deal(s), none clearly meant ({top})")
    return DealDecision(chosen, p, ranked, evidence)
