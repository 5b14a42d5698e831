"""Importing the CRM (companies, contacts, deals) from CSV files: generic, HubSpot or Salesforce exports.

``import_crm(session, companies=..., contacts=..., deals=...)`` is the one entry point. Contract:

* Each file's format is detected from its header row (case-insensitive, whitespace-trimmed):
  ``hubspot`` when it has a ``Record ID`` column, ``generic`` when it has the columns of
  ``shared/corpora/synthetic-dev/README.md``, ``salesforce`` when it has Data Loader API names
  (``AccountId``, ``FirstName``, ``StageName``, ...) or Salesforce report labels (``Account ID``, ...).
* Everything is validated first (every file, every row, every reference against the files and the
  database); any problem raises ``BadInput`` whose ``problems`` are ``file:line: reason`` lines
  (header = line 1) and nothing has been written. Only then are the rows written, inside the caller's
  session, with a handful of bulk statements; the session is flushed, never committed.
* Rows are upserted by CRM id (same database id on re-import). A contact's addresses, a company's
  domains and a deal's contacts are replaced to match the file. A column that is absent from a file
  leaves that field alone; a present but empty cell clears it.
* A contact met in mail before the import (``crm_id`` NULL, origin ``suggested``) whose address now
  belongs to an imported contact is adopted: it becomes that CRM contact (same database id). An
  address such a contact holds that an imported contact lists moves to the imported contact.
* Salesforce 15-character ids are stored in their 18-character form, so report exports (15) and
  Data Loader exports (18) refer to the same rows.
* Free text longer than its column (names, titles, phones, stages) is cut to fit; identifiers
  (CRM ids, addresses, domains) that do not fit are problems.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import TypeDecorator, delete, insert, select, text, update
from sqlalchemy.orm import Session

from matching.identity import clean_email, email_key, registered_domain
from providers.errors import BadInput
from store.models import Company, CompanyDomain, Contact, ContactEmail, Deal, DealContact

MAX_PROBLEMS = 100
_CHUNK = 500  # ids per IN (...) list: well under SQLite's and PostgreSQL's parameter limits

GENERIC, HUBSPOT, SALESFORCE = "generic", "hubspot", "salesforce"


@dataclass
class ImportReport:
    """What an import did. ``changed_*_ids`` are database ids of rows added or whose matching-relevant
    fields changed (names, addresses, domains, company, deal status, dates, owner, contacts): the rows
    whose activities may need re-matching. Adopted suggested contacts count in ``contacts_added`` (they
    are new to the CRM) and again in ``contacts_adopted``."""

    companies_added: int = 0
    companies_updated: int = 0
    contacts_added: int = 0
    contacts_updated: int = 0
    deals_added: int = 0
    deals_updated: int = 0
    changed_company_ids: set[int] = field(default_factory=set)
    changed_contact_ids: set[int] = field(default_factory=set)
    changed_deal_ids: set[int] = field(default_factory=set)
    formats: dict[str, str] = field(default_factory=dict)
    contacts_adopted: int = 0
    notes: list[str] = field(default_factory=list)  # e.g. a file read as Windows-1252


# --------------------------------------------------------------------------------------------------
# Column vocabulary. Keys are header names normalised by _norm_header; aliases are in priority order
# (the first non-empty cell wins, so "Associated Company IDs (Primary)" beats "Associated Company IDs").

_COLUMNS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "companies": {
        GENERIC: {"id": ("id",), "name": ("name",), "domains": ("domains", "domain")},
        HUBSPOT: {
            "id": ("record id", "company id", "hs_object_id"),
            "name": ("company name", "name"),
            "domains": (
                "company domain name",
                "domain",
                "domain name",
                "additional domains",
                "hs_additional_domains",
            ),
            "website": ("website url", "website"),
        },
        SALESFORCE: {"id": ("id", "account id"), "name": ("name", "account name"), "website": ("website",)},
    },
    "contacts": {
        GENERIC: {
            "id": ("id",),
            "first_name": ("first_name",),
            "last_name": ("last_name",),
            "email": ("email",),
            "other_emails": ("other_emails",),
            "company": ("company_id",),
            "title": ("title",),
            "phone": ("phone",),
        },
        HUBSPOT: {
            "id": ("record id", "contact id", "hs_object_id"),
            "first_name": ("first name", "firstname"),
            "last_name": ("last name", "lastname"),
            "email": ("email", "email address"),
            "other_emails": ("additional email addresses", "hs_additional_emails", "additional emails"),
            "company": (
                "associated company ids (primary)",
                "primary associated company id",
                "associated company id (primary)",
                "associatedcompanyid",
                "associated company ids",
                "associated company id",
                "company id",
            ),
            "title": ("job title", "jobtitle"),
            "phone": ("phone number", "phone", "mobile phone number", "mobilephone"),
        },
        SALESFORCE: {
            "id": ("id", "contact id"),
            "first_name": ("firstname", "first name"),
            "last_name": ("lastname", "last name"),
            "full_name": ("name", "full name", "contact name"),
            "email": ("email",),
            "company": ("accountid", "account id"),
            "title": ("title",),
            "phone": ("phone", "business phone", "mobilephone", "mobile"),
        },
    },
    "deals": {
        GENERIC: {
            "id": ("id",),
            "name": ("name",),
            "company": ("company_id",),
            "stage": ("stage",),
            "status": ("status",),
            "amount": ("amount",),
            "created_at": ("created_at",),
            "close_date": ("close_date",),
            "owner_email": ("owner_email",),
            "contacts": ("contact_ids",),
        },
        HUBSPOT: {
            "id": ("record id", "deal id", "hs_object_id"),
            "name": ("deal name", "dealname"),
            "stage": ("deal stage", "dealstage"),
            "is_won": ("is closed won", "hs_is_closed_won"),
            "is_lost": ("is closed lost", "hs_is_closed_lost"),
            "is_closed": ("is deal closed?", "is closed", "hs_is_closed"),
            "amount": ("amount",),
            "created_at": ("create date", "createdate", "created date"),
            "close_date": ("close date", "closedate"),
            "owner_email": ("deal owner email", "owner email", "deal owner"),
            "company": (
                "associated company ids (primary)",
                "primary associated company id",
                "associated company id (primary)",
                "associated company ids",
                "associated company id",
            ),
            "contacts": ("associated contact ids", "associated contact id"),
        },
        SALESFORCE: {
            "id": ("id", "opportunity id"),
            "name": ("name", "opportunity name"),
            "company": ("accountid", "account id"),
            "stage": ("stagename", "stage"),
            "is_closed": ("isclosed", "closed"),
            "is_won": ("iswon", "won"),
            "amount": ("amount",),
            "created_at": ("createddate", "created date"),
            "close_date": ("closedate", "close date"),
            "owner_email": ("owner.email", "owner email", "opportunity owner email"),
            "contacts": ("contactid", "contact id"),
        },
    },
    "deal_contacts": {
        GENERIC: {"deal": ("deal_id",), "contact": ("contact_id",), "role": ("role",)},
        SALESFORCE: {
            "deal": ("opportunityid", "opportunity id"),
            "contact": ("contactid", "contact id", "contact"),
            "role": ("role", "contact role"),
        },
    },
}

# What a header must hold to be taken for a format (any one of the sets, all of its members).
_GENERIC_SIGNS: dict[str, tuple[frozenset[str], ...]] = {
    "companies": (frozenset({"id", "name", "domains"}), frozenset({"id", "name"})),
    "contacts": (
        frozenset({"id", "email", "first_name"}),
        frozenset({"id", "email", "last_name"}),
        frozenset({"id", "email", "company_id"}),
        frozenset({"id", "email"}),
    ),
    "deals": (
        frozenset({"id", "name", "status"}),
        frozenset({"id", "name", "company_id"}),
        frozenset({"id", "name", "contact_ids"}),
        frozenset({"id", "name", "stage"}),
    ),
    "deal_contacts": (frozenset({"deal_id", "contact_id"}),),
}
_HUBSPOT_SIGNS: dict[str, tuple[frozenset[str], ...]] = {
    "companies": (
        frozenset({"record id", "company name"}),
        frozenset({"record id", "name"}),
        frozenset({"record id", "company domain name"}),
    ),
    "contacts": (
        frozenset({"record id", "email"}),
        frozenset({"record id", "first name"}),
        frozenset({"record id", "last name"}),
    ),
    "deals": (frozenset({"record id", "deal name"}),),
    "deal_contacts": (),
}
_SALESFORCE_SIGNS: dict[str, tuple[frozenset[str], ...]] = {
    "companies": (
        frozenset({"id", "name", "website"}),
        frozenset({"account id", "account name"}),
        frozenset({"id", "name", "accountnumber"}),
        frozenset({"id", "name", "billingcity"}),
        frozenset({"id", "name", "billingcountry"}),
    ),
    "contacts": (
        frozenset({"id", "lastname"}),
        frozenset({"id", "firstname"}),
        frozenset({"id", "accountid"}),
        frozenset({"contact id", "last name"}),
        frozenset({"contact id", "email"}),
    ),
    "deals": (
        frozenset({"id", "name", "stagename"}),
        frozenset({"id", "name", "accountid"}),
        frozenset({"opportunity id", "opportunity name"}),
        frozenset({"id", "name", "iswon"}),
        frozenset({"id", "name", "isclosed"}),
    ),
    "deal_contacts": (frozenset({"opportunityid", "contactid"}), frozenset({"opportunity id", "contact id"})),
}

_EXPECTED = {
    "companies": "generic 'id,name,domains', HubSpot 'Record ID,Company name,Company Domain Name' "
    "or Salesforce Account 'Id,Name,Website'",
    "contacts": "generic 'id,first_name,last_name,email,...', HubSpot 'Record ID,First Name,Last Name,Email' "
    "or Salesforce Contact 'Id,FirstName,LastName,Email,AccountId'",
    "deals": "generic 'id,name,company_id,stage,status,...', HubSpot 'Record ID,Deal Name,Deal Stage' "
    "or Salesforce Opportunity 'Id,Name,AccountId,StageName'",
    "deal_contacts": "generic 'deal_id,contact_id,role' or Salesforce OpportunityContactRole "
    "'OpportunityId,ContactId,Role'",
}

_LIMITS = {"crm_id": 100, "email": 320, "domain": 255}
_TEXT_LIMITS = {
    "company_name": 300,
    "first_name": 200,
    "last_name": 200,
    "name": 400,
    "title": 300,
    "phone": 100,
    "deal_name": 400,
    "stage": 100,
    "role": 100,
}

_SPLIT_RE = re.compile(r"[;,\s]+")
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
_SF_ID15 = re.compile(r"^[a-zA-Z0-9]{15}$")
_SF_NULL_IDS = {"000000000000000", "000000000000000AAA"}


def _norm_header(h: str) -> str:
    return " ".join(h.replace("\ufeff", "").strip().strip('"').lower().split())


# --------------------------------------------------------------------------------------------------
# Problems


class _Problems:
    """Problems in file order, then line order (file-level ones first), capped when raised."""

    def __init__(self) -> None:
        self._files: dict[str, int] = {}
        self._items: list[tuple[int, int, int, str]] = []

    def register(self, fname: str) -> None:
        self._files.setdefault(fname, len(self._files))

    def add(self, fname: str, line: int | None, reason: str) -> None:
        self.register(fname)
        text = f"{fname}:{line}: {reason}" if line else f"{fname}: {reason}"
        self._items.append((self._files[fname], line or 0, len(self._items), text))

    @property
    def total(self) -> int:
        return len(self._items)

    def raise_if_any(self) -> None:
        if not self._items:
            return
        lines = [text for *_, text in sorted(self._items)[:MAX_PROBLEMS]]
        if self.total > len(lines):
            lines.append(f"(and {self.total - len(lines)} more problems not listed)")
        noun = "problem" if self.total == 1 else "problems"
        raise BadInput(f"CRM import refused: {self.total} {noun} found; nothing was imported", lines)


# --------------------------------------------------------------------------------------------------
# Reading a CSV file into (line number, cells)


@dataclass
class _Table:
    path: Path
    fname: str
    kind: str
    fmt: str
    cols: dict[str, tuple[int, ...]]  # field -> column indexes present in this file, priority order
    labels: dict[str, str]  # field -> header as written in the file (for messages)
    rows: list[tuple[int, list[str]]]
    dayfirst: bool = False

    def has(self, fld: str) -> bool:
        return fld in self.cols

    def get(self, cells: list[str], fld: str) -> str:
        for i in self.cols.get(fld, ()):
            if i < len(cells):
                v = cells[i].strip()
                if v:
                    return v
        return ""

    def label(self, fld: str) -> str:
        return self.labels.get(fld, fld)


def _decode(data: bytes, fname: str, problems: _Problems, notes: list[str]) -> str | None:
    if not data.strip():
        problems.add(fname, None, "empty file (no header row)")
        return None
    if data.startswith(b"PK\x03\x04"):
        problems.add(fname, None, "is a zip/Excel (.xlsx) file, not CSV: export or save it as CSV (UTF-8)")
        return None
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        problems.add(fname, None, "is an Excel (.xls) workbook, not CSV: save it as CSV (UTF-8)")
        return None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            problems.add(fname, None, "starts with a UTF-16 byte order mark but is not valid UTF-16")
            return None
    if b"\x00" in data[:65536]:
        problems.add(fname, None, "is a binary file (contains NUL bytes), not CSV text")
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        bad_line = data.count(b"\n", 0, e.start) + 1
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            problems.add(fname, bad_line, "is neither UTF-8 nor Windows-1252 text: save it as CSV (UTF-8)")
            return None
        notes.append(f"{fname}: not valid UTF-8 (line {bad_line}); read as Windows-1252")
        return text


def _sniff_delimiter(text: str) -> str:
    first = text.split("\n", 1)[0]
    counts = {d: first.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def _detect(kind: str, headers: set[str], strict: bool = False) -> str | None:
    """The format of a ``kind`` file with these (normalised) headers. ``strict`` leaves out the lenient
    generic fallbacks, to tell which kind a misplaced file most likely is."""
    if any(s <= headers for s in _HUBSPOT_SIGNS[kind]):
        return HUBSPOT
    signs = _GENERIC_SIGNS[kind]
    if signs and signs[0] <= headers:
        return GENERIC
    if any(s <= headers for s in _SALESFORCE_SIGNS[kind]):
        return SALESFORCE
    if not strict and any(s <= headers for s in signs):
        return GENERIC
    return None


def _read_table(path: Path, kind: str, problems: _Problems, notes: list[str]) -> _Table | None:
    fname = path.name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        problems.add(fname, None, f"file not found: {path}")
        return None
    except IsADirectoryError:
        problems.add(fname, None, f"is a directory, not a CSV file: {path}")
        return None
    except OSError as e:
        problems.add(fname, None, f"cannot be read: {e.strerror or e}")
        return None
    text = _decode(data, fname, problems, notes)
    if text is None:
        return None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_sniff_delimiter(text))
    header: list[str] | None = None
    header_line = 1
    rows: list[tuple[int, list[str]]] = []
    end = 0
    try:
        for cells in reader:
            start, end = end + 1, reader.line_num
            if header is None:
                if any(c.strip() for c in cells):
                    header, header_line = cells, start
                continue
            rows.append((start, cells))
    except csv.Error as e:
        problems.add(fname, reader.line_num, f"is not valid CSV: {e}")
        return None
    if header is None:
        problems.add(fname, None, "empty file (no header row)")
        return None
    norm = [_norm_header(h) for h in header]
    fmt = _detect(kind, set(norm))
    if fmt is None:
        others = [k for k in ("companies", "contacts", "deals") if k != kind and _detect(k, set(norm), strict=True)]
        hint = f" (it looks like a {others[0]} file)" if others else ""
        shown = ",".join(h.strip() for h in header[:8]) + (",..." if len(header) > 8 else "")
        problems.add(
            fname,
            header_line,
            f"no recognisable {kind.replace('_', ' ')} header{hint}: expected {_EXPECTED[kind]}; found '{shown}'",
        )
        return None
    index: dict[str, int] = {}
    for i, h in enumerate(norm):
        index.setdefault(h, i)
    cols: dict[str, tuple[int, ...]] = {}
    labels: dict[str, str] = {}
    for fld, aliases in _COLUMNS[kind][fmt].items():
        present = tuple(index[a] for a in aliases if a in index)
        if present:
            cols[fld] = present
            labels[fld] = header[present[0]].strip()
    if fmt == SALESFORCE:
        rows = _drop_report_footer(rows)
    rows = [(n, c) for n, c in rows if any(x.strip() for x in c)]
    table = _Table(path, fname, kind, fmt, cols, labels, rows)
    table.dayfirst = _guess_dayfirst(table)
    return table


def _drop_report_footer(rows: list[tuple[int, list[str]]]) -> list[tuple[int, list[str]]]:
    """Salesforce report exports end with a blank row and one-cell lines (copyright, 'Generated By')."""
    for i, (_, cells) in enumerate(rows):
        if not any(c.strip() for c in cells):
            tail = rows[i + 1 :]
            if tail and all(sum(1 for c in t if c.strip()) <= 1 for _, t in tail):
                return rows[:i]
    return rows


_SLASH_DATE = re.compile(r"^(\d{1,2})[/\-](\d{1,2})[/\-](\d{2}|\d{4})\b")


def _guess_dayfirst(table: _Table) -> bool:
    """A file's d/m/y vs m/d/y order: day first only if some date's first number cannot be a month."""
    idxs = [i for f in ("created_at", "close_date") for i in table.cols.get(f, ())]
    if not idxs:
        return False
    first_big = second_big = False
    for _, cells in table.rows:
        for i in idxs:
            if i < len(cells):
                m = _SLASH_DATE.match(cells[i].strip())
                if m:
                    first_big |= int(m.group(1)) > 12
                    second_big |= int(m.group(2)) > 12
    return first_big and not second_big


# --------------------------------------------------------------------------------------------------
# Value parsing


def normalise_domain(raw: str) -> str | None:
    """``https://www.Acme.com:443/about`` -> ``acme.com``; None when nothing domain-like is left."""
    s = raw.strip().lower()
    if "://" in s:
        s = s.split("://", 1)[1]
    elif s.startswith("//"):
        s = s[2:]
    s = re.split(r"[/?#\\]", s, maxsplit=1)[0]
    if "@" in s:
        s = s.rsplit("@", 1)[1]
    if s.startswith("[") or s.count(":") == 1:
        s = s.split(":", 1)[0]
    s = s.strip(".")
    if s.startswith("www.") and s.count(".") >= 2:
        s = s[4:]
    if not s:
        return None
    if not s.isascii():
        try:
            s = s.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return s


def _domain_problem(d: str) -> str | None:
    if len(d) > _LIMITS["domain"] or not _DOMAIN_RE.match(d):
        return "is not a domain"
    if registered_domain(d) is None:
        return "is a public suffix, not a company's domain"
    if re.fullmatch(r"[\d.]+", d):
        return "is an IP address, not a domain"
    return None


def _parse_bool(s: str) -> bool:
    v = s.strip().lower()
    if v in ("true", "1", "yes", "y", "t", "x", "checked"):
        return True
    if v in ("false", "0", "no", "n", "f", "unchecked"):
        return False
    raise ValueError(s)


def _parse_amount(s: str) -> float:
    t = s.replace("\u00a0", "").replace(" ", "").replace("'", "")
    t = re.sub(r"^(?:[A-Za-z]{3}|[$€£¥₹])|(?:[A-Za-z]{3}|[$€£¥₹])$", "", t)  # currency at either end
    if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?", t):
        t = t.replace(",", "")
    v = float(t)
    if not math.isfinite(v):
        raise ValueError(s)
    return v


_DMY = re.compile(
    r"^(\d{1,4})([/.\-])(\d{1,2})\2(\d{1,4})"
    r"(?:[ T,]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?\s*([AaPp]\.?[Mm]\.?)?)?"
    r"\s*(Z|UTC|GMT|[+-]\d{2}:?\d{2})?$"
)


def parse_datetime(raw: str, dayfirst: bool = False) -> datetime:
    """ISO 8601 (date or datetime, any offset), ``6/21/2024``, ``6/21/2024 4:25 PM``, ``21.06.2024``,
    or epoch milliseconds -> aware UTC. Naive values are taken as UTC. Raises ValueError."""
    s = raw.strip()
    if re.fullmatch(r"\d{12,13}", s):
        return datetime.fromtimestamp(int(s) / 1000, UTC)
    iso = re.sub(r"\s*(UTC|GMT)$", "", s, flags=re.IGNORECASE)
    if re.match(r"^\d{4}-\d{2}-\d{2}", iso):
        d = datetime.fromisoformat(iso)
        return d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)
    m = _DMY.match(s)
    if not m:
        raise ValueError(raw)
    a, sep, b, c, hh, mi, ss, ampm, tz = m.groups()
    if len(a) == 4:
        year, month, day = int(a), int(b), int(c)
    else:
        x, y = int(a), int(b)
        if sep == "." or x > 12 or (dayfirst and y <= 12):
            day, month = x, y
        else:
            month, day = x, y
        year = int(c)
        if len(c) == 2:
            year += 2000
        elif len(c) != 4:
            raise ValueError(raw)
    hour, minute, second = int(hh or 0), int(mi or 0), int(ss or 0)
    if ampm:
        if not 1 <= hour <= 12:
            raise ValueError(raw)
        hour = hour % 12 + (12 if ampm[0].lower() == "p" else 0)
    tzinfo: timezone = UTC
    if tz and tz.upper() not in ("Z", "UTC", "GMT"):
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        tzinfo = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    return datetime(year, month, day, hour, minute, second, tzinfo=tzinfo).astimezone(UTC)


def _status_from_stage(stage: str) -> str:
    s = re.sub(r"[^a-z]", "", stage.lower())
    if s == "won" or s.startswith("closedwon"):
        return "won"
    if s == "lost" or s.startswith("closedlost"):
        return "lost"
    return "open"


def _sf18(crm_id: str) -> str:
    """A 15-character case-sensitive Salesforce id -> its 18-character form, so both spellings match."""
    if not _SF_ID15.match(crm_id):
        return crm_id
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
    suffix = ""
    for chunk in (crm_id[0:5], crm_id[5:10], crm_id[10:15]):
        n = sum(1 << i for i, ch in enumerate(chunk) if "A" <= ch <= "Z")
        suffix += alphabet[n]
    return crm_id + suffix


def _cut(s: str | None, what: str) -> str | None:
    if not s:
        return None
    return s[: _TEXT_LIMITS[what]]


# --------------------------------------------------------------------------------------------------
# Parsed rows


@dataclass(slots=True)
class _PCompany:
    line: int
    crm_id: str
    name: str | None
    domains: list[str] | None  # None: the file has no domain column


@dataclass(slots=True)
class _PContact:
    line: int
    crm_id: str
    fields: dict[str, Any]  # only the fields whose columns the file has
    emails: list[tuple[str, str, bool]] | None  # (key, address, is_primary); None: no email column
    company_ref: str | None
    has_company: bool


@dataclass(slots=True)
class _PDeal:
    line: int
    crm_id: str
    fields: dict[str, Any]
    company_ref: str | None
    has_company: bool
    contact_refs: list[str] | None  # None: the file does not say who is on the deal


@dataclass(slots=True)
class _PDealContact:
    line: int
    deal_ref: str
    contact_ref: str
    role: str | None


class _Parser:
    def __init__(self, problems: _Problems) -> None:
        self.p = problems

    def _id(self, t: _Table, cells: list[str], line: int, fld: str = "id") -> str | None:
        v = t.get(cells, fld)
        if not v:
            self.p.add(t.fname, line, f"missing {t.label(fld)}")
            return None
        if t.fmt == SALESFORCE:
            v = _sf18(v)
        if len(v) > _LIMITS["crm_id"]:
            self.p.add(t.fname, line, f"{t.label(fld)} '{v[:40]}...' is longer than {_LIMITS['crm_id']} characters")
            return None
        return v

    def _ref(self, t: _Table, raw: str) -> str | None:
        v = raw.strip()
        if not v or v in _SF_NULL_IDS:
            return None
        return _sf18(v) if t.fmt == SALESFORCE else v

    def _refs(self, t: _Table, raw: str) -> list[str]:
        out: list[str] = []
        for part in _SPLIT_RE.split(raw):
            r = self._ref(t, part)
            if r and r not in out:
                out.append(r)
        return out

    def _dupe(self, t: _Table, seen: dict[str, int], crm_id: str, line: int) -> bool:
        first = seen.get(crm_id)
        if first is not None:
            self.p.add(t.fname, line, f"{t.label('id')} '{crm_id}' repeats line {first}")
            return True
        seen[crm_id] = line
        return False

    def _date(self, t: _Table, cells: list[str], line: int, fld: str) -> datetime | None:
        v = t.get(cells, fld)
        if not v:
            return None
        try:
            return parse_datetime(v, t.dayfirst)
        except (ValueError, OverflowError):
            self.p.add(t.fname, line, f"{t.label(fld)} '{v}' is not a date (use ISO 8601, e.g. 2024-06-21)")
            return None

    def companies(self, t: _Table) -> list[_PCompany]:
        out: list[_PCompany] = []
        seen: dict[str, int] = {}
        has_domains = t.has("domains") or t.has("website")
        for line, cells in t.rows:
            crm_id = self._id(t, cells, line)
            domains: list[str] = []
            for fld in ("domains", "website"):
                for i in t.cols.get(fld, ()):
                    raw = cells[i] if i < len(cells) else ""
                    parts = [raw.strip()] if fld == "website" else _SPLIT_RE.split(raw)
                    for part in parts:
                        if not part.strip():
                            continue
                        d = normalise_domain(part)
                        why = "is not a domain" if d is None else _domain_problem(d)
                        if why:
                            self.p.add(t.fname, line, f"{t.label(fld)} '{part.strip()}' {why}")
                        elif d not in domains:
                            domains.append(d)  # type: ignore[arg-type]
            name = t.get(cells, "name") or (domains[0] if domains else "")
            if crm_id is None or self._dupe(t, seen, crm_id, line):
                continue
            if not name:
                self.p.add(t.fname, line, f"company '{crm_id}' has no {t.label('name')} and no domain")
            out.append(_PCompany(line, crm_id, _cut(name, "company_name"), domains if has_domains else None))
        return out

    def _address(self, t: _Table, line: int, fld: str, raw: str) -> str | None:
        a = clean_email(raw)
        if a is None:
            self.p.add(t.fname, line, f"{t.label(fld)} '{raw}' is not an address")
            return None
        if len(a) > _LIMITS["email"]:
            self.p.add(t.fname, line, f"{t.label(fld)} '{raw[:40]}...' is longer than {_LIMITS['email']} characters")
            return None
        return a

    def contacts(self, t: _Table) -> list[_PContact]:
        out: list[_PContact] = []
        seen: dict[str, int] = {}
        has_emails = t.has("email") or t.has("other_emails")
        for line, cells in t.rows:
            crm_id = self._id(t, cells, line)
            addrs: list[str] = []
            primary = t.get(cells, "email")
            if primary:
                a = self._address(t, line, "email", primary)
                if a:
                    addrs.append(a)
            for part in _SPLIT_RE.split(t.get(cells, "other_emails")):
                if part:
                    a = self._address(t, line, "other_emails", part)
                    if a and a not in addrs:
                        addrs.append(a)
            emails: list[tuple[str, str, bool]] = []
            keys: set[str] = set()
            for a in addrs:
                k = email_key(a)
                if k not in keys:
                    keys.add(k)
                    emails.append((k, a, not emails))
            if crm_id is None or self._dupe(t, seen, crm_id, line):
                continue
            fields: dict[str, Any] = {}
            first = _cut(t.get(cells, "first_name"), "first_name")
            last = _cut(t.get(cells, "last_name"), "last_name")
            if t.has("first_name") or t.has("last_name") or t.has("full_name"):
                if t.has("first_name"):
                    fields["first_name"] = first
                if t.has("last_name"):
                    fields["last_name"] = last
                full = " ".join(x for x in (first, last) if x) or t.get(cells, "full_name")
                fields["name"] = _cut(full, "name")
            if has_emails:
                fields["email"] = emails[0][1] if emails else None
            for fld in ("title", "phone"):
                if t.has(fld):
                    fields[fld] = _cut(t.get(cells, fld), fld)
            company_ref = self._refs(t, t.get(cells, "company"))
            out.append(
                _PContact(
                    line,
                    crm_id,
                    fields,
                    emails if has_emails else None,
                    company_ref[0] if company_ref else None,
                    t.has("company"),
                )
            )
        return out

    def deals(self, t: _Table) -> list[_PDeal]:
        out: list[_PDeal] = []
        seen: dict[str, int] = {}
        for line, cells in t.rows:
            crm_id = self._id(t, cells, line)
            fields: dict[str, Any] = {}
            name = t.get(cells, "name")
            if not name:
                self.p.add(t.fname, line, f"missing {t.label('name')}")
            fields["name"] = _cut(name, "deal_name")
            stage = t.get(cells, "stage")
            if t.has("stage"):
                fields["stage"] = _cut(stage, "stage")
            fields["status"] = self._status(t, cells, line, stage)
            if t.has("amount"):
                raw = t.get(cells, "amount")
                amount = None
                if raw:
                    try:
                        amount = _parse_amount(raw)
                    except ValueError:
                        self.p.add(t.fname, line, f"{t.label('amount')} '{raw}' is not a number")
                fields["amount"] = amount
            for fld in ("created_at", "close_date"):
                if t.has(fld):
                    fields[fld] = self._date(t, cells, line, fld)
            if t.has("owner_email"):
                raw = t.get(cells, "owner_email")
                owner = clean_email(raw) if raw else None
                if raw and owner is None and t.fmt != HUBSPOT:
                    # HubSpot's "Deal owner" is usually a person's name: no address to keep
                    self.p.add(t.fname, line, f"{t.label('owner_email')} '{raw}' is not an address")
                if owner and len(owner) > _LIMITS["email"]:
                    owner = None
                fields["owner_email"] = owner
            companies = self._refs(t, t.get(cells, "company"))
            contacts = self._refs(t, t.get(cells, "contacts")) if t.has("contacts") else None
            # A row with a problem is kept for the cross-checks (nothing is written when there are problems).
            if crm_id is None or self._dupe(t, seen, crm_id, line):
                continue
            out.append(_PDeal(line, crm_id, fields, companies[0] if companies else None, t.has("company"), contacts))
        return out

    def _status(self, t: _Table, cells: list[str], line: int, stage: str) -> str | None:
        if t.fmt == GENERIC and t.get(cells, "status"):
            raw = t.get(cells, "status")
            v = raw.lower()
            if v not in ("open", "won", "lost"):
                self.p.add(t.fname, line, f"{t.label('status')} '{raw}' is not open, won or lost")
                return None
            return v
        flags: dict[str, bool | None] = {}
        for fld in ("is_won", "is_lost", "is_closed"):
            raw = t.get(cells, fld)
            if raw:
                try:
                    flags[fld] = _parse_bool(raw)
                except ValueError:
                    self.p.add(t.fname, line, f"{t.label(fld)} '{raw}' is not true or false")
                    return None
        if flags.get("is_won"):
            return "won"
        if flags.get("is_lost"):
            return "lost"
        if "is_closed" in flags:
            if not flags["is_closed"]:
                return "open"
            if "is_won" in flags:  # closed and not won
                return "lost"
            by_stage = _status_from_stage(stage)
            return by_stage if by_stage != "open" else "lost"
        return _status_from_stage(stage)

    def deal_contacts(self, t: _Table) -> list[_PDealContact]:
        out: list[_PDealContact] = []
        for line, cells in t.rows:
            deal = self._ref(t, t.get(cells, "deal"))
            contact = self._ref(t, t.get(cells, "contact"))
            if not deal:
                self.p.add(t.fname, line, f"missing {t.label('deal')}")
            if not contact:
                self.p.add(t.fname, line, f"missing {t.label('contact')}")
            if deal and contact:
                out.append(_PDealContact(line, deal, contact, _cut(t.get(cells, "role"), "role")))
        return out


# --------------------------------------------------------------------------------------------------
# The import


def _chunks(seq: Sequence[Any], n: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _bulk_delete(session: Session, column: Any, values: Iterable[Any]) -> None:
    vals = list(values)
    if _is_postgres(session) and vals:
        dialect = session.get_bind(Contact).dialect
        prep = dialect.identifier_preparer
        table = column.class_.__table__
        col = table.c[column.key]
        array_type = f"{col.type.compile(dialect=dialect)}[]"
        where = f"{prep.quote(col.name)} = ANY(CAST(:v AS {array_type}))"
        sql = f"DELETE FROM {prep.format_table(table)} WHERE {where}"
        for chunk in _chunks(vals, 20000):
            session.execute(text(sql), {"v": list(chunk)})
        return
    for chunk in _chunks(vals):
        session.execute(
            delete(column.class_).where(column.in_(chunk)), execution_options={"synchronize_session": False}
        )


def _bulk_update(session: Session, model: type[Any], rows: list[dict[str, Any]]) -> None:
    """UPDATE by primary key ``id``; rows may carry different sets of columns."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[tuple(sorted(r))].append(r)
    pg = _is_postgres(session)
    for group in groups.values():
        for chunk in _chunks(group, 20000 if pg else 2000):
            if pg:
                _pg_unnest_update(session, model, chunk)
            else:
                session.execute(update(model), list(chunk))


def _bulk_insert_ids(session: Session, model: Any, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert rows and return {crm_id: new database id}."""
    out: dict[str, int] = {}
    if _is_postgres(session):
        for chunk in _chunks(rows, 20000):
            out.update(_pg_unnest_insert(session, model, chunk, returning=True))
        return out
    for chunk in _chunks(rows, 2000):
        res = session.execute(insert(model).returning(model.id, model.crm_id), list(chunk))
        for db_id, crm_id in res:
            out[crm_id] = db_id
    return out


def _bulk_insert(session: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    if _is_postgres(session):
        for chunk in _chunks(rows, 20000):
            _pg_unnest_insert(session, model, chunk, returning=False)
        return
    for chunk in _chunks(rows, 5000):
        session.execute(insert(model), list(chunk))


def _is_postgres(session: Session) -> bool:
    return session.get_bind(Contact).dialect.name == "postgresql"


def _pg_arrays(
    session: Session, model: Any, rows: Sequence[dict[str, Any]], names: list[str]
) -> tuple[list[str], dict[str, list[Any]]]:
    """One typed array parameter per column: ``CAST(:p0 AS VARCHAR(100)[])`` and its values."""
    dialect = session.get_bind(Contact).dialect
    table = model.__table__
    casts, params = [], {}
    for i, name in enumerate(names):
        col = table.c[name]
        values = [r.get(name) for r in rows]
        if isinstance(col.type, TypeDecorator):
            values = [col.type.process_bind_param(v, dialect) for v in values]
        params[f"p{i}"] = values
        casts.append(f"CAST(:p{i} AS {col.type.compile(dialect=dialect)}[])")
    return casts, params


def _pg_unnest_insert(session: Session, model: Any, rows: Sequence[dict[str, Any]], returning: bool) -> dict[str, int]:
    """PostgreSQL: one ``INSERT ... SELECT FROM unnest(array, ...)`` per chunk, one array per column.

    A multi-row VALUES list of 100k rows makes the driver rewrite a statement with a million
    placeholders (seconds of pure Python); arrays keep it to one parameter per column.
    """
    prep = session.get_bind(Contact).dialect.identifier_preparer
    names = sorted({k for r in rows for k in r})
    casts, params = _pg_arrays(session, model, rows, names)
    sql = (
        f"INSERT INTO {prep.format_table(model.__table__)} ({', '.join(prep.quote(n) for n in names)}) "
        f"SELECT * FROM unnest({', '.join(casts)})"
    )
    if not returning:
        session.execute(text(sql), params)
        return {}
    res = session.execute(text(sql + " RETURNING id, crm_id"), params)
    return {crm_id: db_id for db_id, crm_id in res}


def _pg_unnest_update(session: Session, model: Any, rows: Sequence[dict[str, Any]]) -> None:
    prep = session.get_bind(Contact).dialect.identifier_preparer
    names = sorted(rows[0])
    casts, params = _pg_arrays(session, model, rows, names)
    sets = ", ".join(f"{prep.quote(n)} = v.{prep.quote(n)}" for n in names if n != "id")
    table = prep.format_table(model.__table__)
    alias = f"v({', '.join(prep.quote(n) for n in names)})"
    sql = f"UPDATE {table} SET {sets} FROM unnest({', '.join(casts)}) AS {alias} WHERE {table}.id = v.id"
    session.execute(text(sql), params)


def import_crm(
    session: Session,
    companies: Path | None = None,
    contacts: Path | None = None,
    deals: Path | None = None,
    *,
    deal_contacts: Path | None = None,
) -> ImportReport:
    """Validate then upsert the given CRM files inside ``session`` (flushed, not committed).

    ``deal_contacts`` is an optional link file (Salesforce OpportunityContactRole export, or generic
    ``deal_id,contact_id,role``): when given, each deal it names, and each deal of ``deals``, gets
    exactly the contacts it lists. Raises ``BadInput`` (nothing written) when any file or row is wrong.
    """
    report = ImportReport()
    problems = _Problems()
    parser = _Parser(problems)
    tables: dict[str, _Table] = {}
    for kind, path in (
        ("companies", companies),
        ("contacts", contacts),
        ("deals", deals),
        ("deal_contacts", deal_contacts),
    ):
        if path is None:
            continue
        path = Path(path)
        problems.register(path.name)
        t = _read_table(path, kind, problems, report.notes)
        if t is not None:
            tables[kind] = t
            report.formats[str(path)] = t.fmt
    p_companies = parser.companies(tables["companies"]) if "companies" in tables else []
    p_contacts = parser.contacts(tables["contacts"]) if "contacts" in tables else []
    p_deals = parser.deals(tables["deals"]) if "deals" in tables else []
    p_links = parser.deal_contacts(tables["deal_contacts"]) if "deal_contacts" in tables else []

    session.flush()
    db = _DbState.load(session)
    _check(tables, p_companies, p_contacts, p_deals, p_links, db, problems)
    problems.raise_if_any()

    company_ids = _write_companies(session, p_companies, db, report)
    contact_ids = _write_contacts(session, p_contacts, company_ids, db, report)
    _write_deals(session, p_deals, p_links, "deal_contacts" in tables, company_ids, contact_ids, db, report)
    session.flush()
    # The bulk statements bypass the identity map: make loaded objects re-read what was written.
    session.expire_all()
    return report


@dataclass
class _DbState:
    company_by_crm: dict[str, tuple[int, str]]  # crm_id -> (id, name)
    company_crm_by_id: dict[int, tuple[str | None, str]]  # id -> (crm_id, name)
    domains: dict[str, int]  # domain -> company id
    contact_by_crm: dict[str, dict[str, Any]]
    contact_by_id: dict[int, dict[str, Any]]
    emails: dict[str, tuple[int, str, bool]]  # key -> (contact id, address, is_primary)
    deal_by_crm: dict[str, dict[str, Any]]
    deal_contacts: dict[int, dict[int, str | None]]  # deal id -> {contact id: role}

    @classmethod
    def load(cls, session: Session) -> _DbState:
        company_by_crm: dict[str, tuple[int, str]] = {}
        company_crm_by_id: dict[int, tuple[str | None, str]] = {}
        for cid, crm, name in session.execute(select(Company.id, Company.crm_id, Company.name)):
            company_crm_by_id[cid] = (crm, name)
            if crm is not None:
                company_by_crm[crm] = (cid, name)
        domains = {d: c for d, c in session.execute(select(CompanyDomain.domain, CompanyDomain.company_id))}
        cols = (
            Contact.id,
            Contact.crm_id,
            Contact.first_name,
            Contact.last_name,
            Contact.name,
            Contact.email,
            Contact.company_id,
            Contact.title,
            Contact.phone,
            Contact.origin,
        )
        contact_by_crm: dict[str, dict[str, Any]] = {}
        contact_by_id: dict[int, dict[str, Any]] = {}
        for row in session.execute(select(*cols)):
            r = row._asdict()
            contact_by_id[r["id"]] = r
            if r["crm_id"] is not None:
                contact_by_crm[r["crm_id"]] = r
        emails = {
            k: (c, e, bool(p))
            for k, c, e, p in session.execute(
                select(ContactEmail.key, ContactEmail.contact_id, ContactEmail.email, ContactEmail.is_primary)
            )
        }
        dcols = (
            Deal.id,
            Deal.crm_id,
            Deal.name,
            Deal.company_id,
            Deal.stage,
            Deal.status,
            Deal.amount,
            Deal.created_at,
            Deal.close_date,
            Deal.owner_email,
        )
        deal_by_crm = {row.crm_id: row._asdict() for row in session.execute(select(*dcols))}
        deal_contacts: dict[int, dict[int, str | None]] = defaultdict(dict)
        for d, c, role in session.execute(select(DealContact.deal_id, DealContact.contact_id, DealContact.role)):
            deal_contacts[d][c] = role
        return cls(
            company_by_crm,
            company_crm_by_id,
            domains,
            contact_by_crm,
            contact_by_id,
            emails,
            deal_by_crm,
            deal_contacts,
        )


def _check(
    tables: dict[str, _Table],
    p_companies: list[_PCompany],
    p_contacts: list[_PContact],
    p_deals: list[_PDeal],
    p_links: list[_PDealContact],
    db: _DbState,
    problems: _Problems,
) -> None:
    """Cross-row and database checks: duplicate domains/addresses, references that lead nowhere."""
    # Ids of rows that failed to parse still count as present, so one bad row gives one problem.
    file_companies = {c.crm_id for c in p_companies} | _ids_in(tables.get("companies"))
    file_contacts = {c.crm_id for c in p_contacts} | _ids_in(tables.get("contacts"))
    file_deals = {d.crm_id for d in p_deals} | _ids_in(tables.get("deals"))

    if p_companies:
        t = tables["companies"]
        reimported = {db.company_by_crm[c.crm_id][0] for c in p_companies if c.crm_id in db.company_by_crm}
        owner_line: dict[str, tuple[int, str]] = {}
        for c in p_companies:
            for d in c.domains or ():
                first = owner_line.get(d)
                if first is not None:
                    problems.add(
                        t.fname,
                        c.line,
                        f"domain '{d}' is also given to company '{first[1]}' on line {first[0]}",
                    )
                    continue
                owner_line[d] = (c.line, c.crm_id)
                owner = db.domains.get(d)
                if owner is not None and owner not in reimported:
                    crm, name = db.company_crm_by_id.get(owner, (None, "?"))
                    if crm != c.crm_id:
                        who = f"company '{crm}'" if crm else f"company '{name}' (not from the CRM)"
                        problems.add(t.fname, c.line, f"domain '{d}' already belongs to {who} in the database")

    if p_contacts:
        t = tables["contacts"]
        key_line: dict[str, tuple[int, str]] = {}
        for pc in p_contacts:
            for key, addr, _ in pc.emails or ():
                first = key_line.get(key)
                if first is not None:
                    problems.add(
                        t.fname,
                        pc.line,
                        f"email '{addr}' also belongs to contact '{first[1]}' on line {first[0]}",
                    )
                    continue
                key_line[key] = (pc.line, pc.crm_id)
                held = db.emails.get(key)
                if held is not None:
                    other = db.contact_by_id.get(held[0])
                    ocrm = other["crm_id"] if other else None
                    if ocrm is not None and ocrm != pc.crm_id and ocrm not in file_contacts:
                        problems.add(
                            t.fname,
                            pc.line,
                            f"email '{addr}' already belongs to contact '{ocrm}' in the database",
                        )
            if pc.company_ref and pc.company_ref not in file_companies and pc.company_ref not in db.company_by_crm:
                problems.add(
                    t.fname,
                    pc.line,
                    f"{t.label('company')} '{pc.company_ref}' is not a known company "
                    "(not in the companies file nor in the database)",
                )

    if p_deals:
        t = tables["deals"]
        for pd in p_deals:
            if pd.company_ref and pd.company_ref not in file_companies and pd.company_ref not in db.company_by_crm:
                problems.add(
                    t.fname,
                    pd.line,
                    f"{t.label('company')} '{pd.company_ref}' is not a known company "
                    "(not in the companies file nor in the database)",
                )
            for ref in pd.contact_refs or ():
                if ref not in file_contacts and ref not in db.contact_by_crm:
                    problems.add(
                        t.fname,
                        pd.line,
                        f"{t.label('contacts')} '{ref}' is not a known contact "
                        "(not in the contacts file nor in the database)",
                    )

    if p_links:
        t = tables["deal_contacts"]
        for link in p_links:
            if link.deal_ref not in file_deals and link.deal_ref not in db.deal_by_crm:
                problems.add(
                    t.fname,
                    link.line,
                    f"{t.label('deal')} '{link.deal_ref}' is not a known deal "
                    "(not in the deals file nor in the database)",
                )
            if link.contact_ref not in file_contacts and link.contact_ref not in db.contact_by_crm:
                problems.add(
                    t.fname,
                    link.line,
                    f"{t.label('contact')} '{link.contact_ref}' is not a known "
                    "contact (not in the contacts file nor in the database)",
                )


def _ids_in(t: _Table | None) -> set[str]:
    if t is None:
        return set()
    out = set()
    for _, cells in t.rows:
        v = t.get(cells, "id")
        if v:
            out.add(_sf18(v) if t.fmt == SALESFORCE else v)
    return out


def _write_companies(session: Session, rows: list[_PCompany], db: _DbState, report: ImportReport) -> dict[str, int]:
    """Upsert companies and their domains; returns crm_id -> id for every company known afterwards."""
    ids = {crm: v[0] for crm, v in db.company_by_crm.items()}
    new_rows: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for c in rows:
        old = db.company_by_crm.get(c.crm_id)
        if old is None:
            new_rows.append({"crm_id": c.crm_id, "name": c.name, "activity_count": 0})
        elif old[1] != c.name:
            updates.append({"id": old[0], "name": c.name})
            report.changed_company_ids.add(old[0])
    added = _bulk_insert_ids(session, Company, new_rows)
    ids.update(added)
    report.companies_added = len(added)
    report.changed_company_ids.update(added.values())
    _bulk_update(session, Company, updates)

    # Domains: replace the set of every company whose set changed.
    current: dict[int, set[str]] = defaultdict(set)
    for d, cid in db.domains.items():
        current[cid].add(d)
    delete_domains: set[str] = set()
    insert_domains: list[dict[str, Any]] = []
    for c in rows:
        if c.domains is None:
            continue
        cid = ids[c.crm_id]
        want = set(c.domains)
        if want == current.get(cid, set()):
            continue
        report.changed_company_ids.add(cid)
        delete_domains |= current.get(cid, set())
        delete_domains |= {d for d in want if d in db.domains}  # moving from another re-imported company
        insert_domains += [{"domain": d, "company_id": cid} for d in sorted(want)]
    _bulk_delete(session, CompanyDomain.domain, sorted(delete_domains))
    _bulk_insert(session, CompanyDomain, insert_domains)
    report.companies_updated = len(report.changed_company_ids - set(added.values()))
    return ids


_CONTACT_FIELDS = ("first_name", "last_name", "name", "email", "company_id", "title", "phone")


def _write_contacts(
    session: Session, rows: list[_PContact], company_ids: dict[str, int], db: _DbState, report: ImportReport
) -> dict[str, int]:
    ids = {crm: r["id"] for crm, r in db.contact_by_crm.items()}
    existing_keys: dict[int, dict[str, tuple[str, bool]]] = defaultdict(dict)
    for key, (cid, addr, prim) in db.emails.items():
        existing_keys[cid][key] = (addr, prim)

    new_rows: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    adopted: set[int] = set()
    updated: set[int] = set()
    for c in rows:
        values = dict(c.fields)
        if c.has_company:
            values["company_id"] = company_ids[c.company_ref] if c.company_ref else None
        old = db.contact_by_crm.get(c.crm_id)
        if old is None:
            for key, _, _ in c.emails or ():
                held = db.emails.get(key)
                if held is None:
                    continue
                cand = db.contact_by_id.get(held[0])
                if cand is not None and cand["crm_id"] is None and cand["id"] not in adopted:
                    old = cand
                    adopted.add(cand["id"])
                    values["crm_id"] = c.crm_id
                    values["origin"] = "crm"
                    ids[c.crm_id] = cand["id"]
                    break
        if old is None:
            row: dict[str, Any] = {f: None for f in _CONTACT_FIELDS}
            row.update(values)
            row.update({"crm_id": c.crm_id, "origin": "crm", "activity_count": 0})
            new_rows.append(row)
            continue
        change = {f: v for f, v in values.items() if old.get(f) != v}
        if change:
            change["id"] = old["id"]
            updates.append(change)
            if old["id"] not in adopted:
                updated.add(old["id"])
            if set(change) - {"id", "title", "phone"}:
                report.changed_contact_ids.add(old["id"])
    added = _bulk_insert_ids(session, Contact, new_rows)
    new_ids = set(added.values())
    ids.update(added)
    report.changed_contact_ids.update(new_ids)
    report.changed_contact_ids.update(adopted)
    _bulk_update(session, Contact, updates)

    # Addresses: replace the set of every contact whose set changed; a key moving from another contact
    # (a suggested one, or a re-imported one that gave it up) is deleted there first.
    delete_keys: set[str] = set()
    insert_emails: list[dict[str, Any]] = []
    for c in rows:
        if c.emails is None:
            continue
        cid = ids[c.crm_id]
        want = {k: (a, p) for k, a, p in c.emails}
        have = existing_keys.get(cid, {})
        if want == have:
            continue
        if cid not in adopted and cid not in new_ids:
            updated.add(cid)
        report.changed_contact_ids.add(cid)
        delete_keys |= set(have)
        for k in want:
            held = db.emails.get(k)
            if held is not None and held[0] != cid:
                delete_keys.add(k)
                report.changed_contact_ids.add(held[0])  # the contact that loses the address
        insert_emails += [{"key": k, "contact_id": cid, "email": a, "is_primary": p} for k, (a, p) in want.items()]
    _bulk_delete(session, ContactEmail.key, sorted(delete_keys))
    _bulk_insert(session, ContactEmail, insert_emails)
    report.contacts_added = len(added) + len(adopted)
    report.contacts_adopted = len(adopted)
    report.contacts_updated = len(updated)
    return ids


_DEAL_FIELDS = ("name", "company_id", "stage", "status", "amount", "created_at", "close_date", "owner_email")


def _write_deals(
    session: Session,
    rows: list[_PDeal],
    links: list[_PDealContact],
    have_link_file: bool,
    company_ids: dict[str, int],
    contact_ids: dict[str, int],
    db: _DbState,
    report: ImportReport,
) -> None:
    ids = {crm: r["id"] for crm, r in db.deal_by_crm.items()}
    new_rows: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    updated: set[int] = set()
    for d in rows:
        values = dict(d.fields)
        if d.has_company:
            values["company_id"] = company_ids[d.company_ref] if d.company_ref else None
        old = db.deal_by_crm.get(d.crm_id)
        if old is None:
            row: dict[str, Any] = {f: None for f in _DEAL_FIELDS}
            row.update(values)
            row.update({"crm_id": d.crm_id, "activity_count": 0})
            new_rows.append(row)
            continue
        change = {f: v for f, v in values.items() if old.get(f) != v}
        if change:
            change["id"] = old["id"]
            updates.append(change)
            updated.add(old["id"])
            if set(change) - {"id", "amount", "stage"}:
                report.changed_deal_ids.add(old["id"])
    added = _bulk_insert_ids(session, Deal, new_rows)
    ids.update(added)
    report.changed_deal_ids.update(added.values())
    _bulk_update(session, Deal, updates)

    # Who is on each deal, for the deals whose contacts the files state.
    want: dict[int, dict[int, str | None]] = {}
    for d in rows:
        if d.contact_refs is not None or have_link_file:
            want[ids[d.crm_id]] = {contact_ids[r]: None for r in d.contact_refs or ()}
    for link in links:
        roles = want.setdefault(ids[link.deal_ref], {})
        cid = contact_ids[link.contact_ref]
        if roles.get(cid) is None:
            roles[cid] = link.role
    replace = [deal_id for deal_id, roles in want.items() if roles != db.deal_contacts.get(deal_id, {})]
    _bulk_delete(session, DealContact.deal_id, replace)
    _bulk_insert(
        session,
        DealContact,
        [
            {"deal_id": deal_id, "contact_id": cid, "role": role}
            for deal_id in replace
            for cid, role in want[deal_id].items()
        ],
    )
    new_ids = set(added.values())
    for deal_id in replace:
        report.changed_deal_ids.add(deal_id)
        if deal_id not in new_ids:
            updated.add(deal_id)
    report.deals_added = len(added)
    report.deals_updated = len(updated)


__all__ = ["ImportReport", "import_crm", "normalise_domain", "parse_datetime"]
