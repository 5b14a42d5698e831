"""Attribution throughput (items/s) against synthetic CRMs of growing size.

    python bench/attribution_throughput.py [--sizes 1000,10000,100000] [--deals 5000 | --deals-per-company F]
                                           [--account-share 0.92 | --uniform] [--items 20000] [--seed 7]
                                           [--repeats 3] [--json] [--profile] [--pin CPU]

For every CRM size the script generates, deterministically and in memory, a CRM (companies with one or
two domains, contacts with syllable-built names, deals with contact roles), builds a ``CrmIndex`` (timed
and, separately, measured with tracemalloc), generates a realistic mix of items and times
``matching.attribute.attribute`` over them on one core: a warm-up, then the best of ``--repeats`` passes.
The same items are also timed apart: those with a candidate deal and those without. Every CRM size is built
first and the passes then go round the sizes in turn, so that a slow spell of a shared machine slows all sizes
alike (the figures are compared with each other); all sizes are held in memory at once.

Targets (reported as information, the exit code is 0 either way):
  * at least 3,000 items/s at 100k contacts;
  * the cost per item at every size within ±25 % of the smallest size's (indexes and candidate sets,
    never a scan of all contacts);
  * the same for items alike ("like items"): those with a candidate deal, and those without, each against
    their own figure at the smallest size. With 5,000 deals fixed, the smallest CRM has 40 deals per company,
    so more of the same mail has a candidate deal there (and several compete): the all-items figure then
    falls with size for that reason alone, while what an item of either kind costs shows whether the work
    grows with the CRM.

The mail is the same at every size. A rep writes mostly to the companies the team sells to: in both labelled
corpora (synthetic-dev small and medium) 92 % of the logged items concern a company with at least one deal.
So every item's company is drawn with that share (``--account-share``) from the companies with deals and
otherwise from the others. (``--uniform`` draws it from all companies alike, as earlier versions did: with
5,000 deals fixed, 88 % of the items at 1k contacts then have a candidate deal and 26 % at 100k, where two
thirds of the companies have no deal; the per-item figure then compares different mail, not CRM sizes.)

What an item costs. Resolving its people (address, domain and name lookups) costs about the same at every
size (column "µs without": items with no candidate deal). An item with at least one candidate deal (an
open deal of its companies or contacts; column "items with cand.") then has its subject and body read
once: split into words and matched against every deal word at once (typos, numeronyms, prefixes and
acronyms included), which costs about as much again (column "µs with cand."). How many deals compete
adds little (column "cand. deals/item": 7.4 at 1k contacts, under 1 at 100k): only the candidates that the
text, a participant's role or the thread speaks for are scored in full; the others share the prior and
only count in the normalisation. ``--deals-per-company`` keeps the deal density constant across sizes.

``--profile`` runs cProfile over one pass at the largest size and prints the top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import random
import sys
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from matching.attribute import Result, attribute  # noqa: E402
from matching.deals import open_at  # noqa: E402
from matching.identity import email_key, registered_domain  # noqa: E402
from matching.index import CompanyRec, ContactRec, CrmIndex, DealRec, Team  # noqa: E402
from providers.records import Participant  # noqa: E402

TARGET_ITEMS_PER_S = 3000.0
TARGET_AT_CONTACTS = 100_000
TARGET_SPREAD = 0.25
WARMUP_ITEMS = 500

TEAM_DOMAIN = "northwind.io"
OWNER = "ana@northwind.io"
COLLEAGUES = ("ben.okafor@northwind.io", "chloe@northwind.io", "deals@eu.northwind.io", "marc.lind@northwind.io")
FREEMAIL = ("gmail.com", "gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "gmx.de", "googlemail.com")

EPOCH = datetime(2023, 1, 1, tzinfo=UTC)
HORIZON_DAYS = 3 * 365 + 180  # items and deals live between 2023-01 and mid-2026
NOW = EPOCH + timedelta(days=HORIZON_DAYS)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_ONSETS = _words("b br c ch d dr f g gr h j k l m n p pr r s sh st t th tr v w z")
_VOWELS = _words("a e i o u a e i o ai ea io ou")
_CODAS = ["", "", "", "n", "r", "l", "s", "th", "m", "nd", "k", "x"]
_CO_SUFFIX = _words("Systems Labs Group Industries Logistics Analytics Partners Health Foods Energy Bank Retail")
_PHONE_PREFIXES = ("4420", "4930", "3314", "1415", "1212", "3120", "6129")
_TLDS = ("com", "com", "com", "com", "io", "de", "co.uk", "fr", "net", "com.au", "nl")
PRODUCT_WORDS = _words(
    "Data Warehouse Migration Platform Renewal Expansion Observability Security Analytics Cloud Licensing Pilot "
    "Rollout Integration Support Upgrade Training Onboarding Backup Disaster Recovery Compliance Audit Network Edge "
    "Storage Mobile Payments Billing Identity Access Monitoring Forecasting Pipeline Automation Helpdesk Procurement "
    "Marketplace Reporting Infrastructure Consolidation Modernisation Telemetry Fleet Scheduling Payroll "
    "Inventory Kiosk Portal Archive Search Personalisation Loyalty Fraud Detection Routing Sensors Gateway Ledger"
)
COMMON_WORDS = _words(
    "the be to of and a in that have it for not on with as you do at this but by from they we say her she or an "
    "will my one all would there their what so up out if about who get which go me when make can like time no just "
    "him know take people into year your good some could them see other than then now look only come its over think "
    "also back after use two how our work first well way even new want because any these give day most us thanks "
    "call meeting next week team update quick question follow attached please let know proposal pricing contract "
    "review draft timeline budget schedule kick off agenda notes slides demo trial feedback legal security "
    "questionnaire invoice purchase order signature renewal scope phase milestone deliverable sync tomorrow monday "
    "friday afternoon morning regards best cheers hope doing great looking forward hearing soon"
)
GENERIC_SUBJECTS = (
    "Quick question",
    "Follow-up from our call",
    "Next steps",
    "Agenda for Thursday",
    "Intro",
    "Checking in",
    "Notes from today",
    "Re: your message",
    "Pricing",
    "Contract draft",
    "Security questionnaire",
    "Invoice",
    "Lunch next week?",
    "Weekly sync",
)

# the mix of items: kind -> share
ITEM_MIX = {
    "exact": 0.52,  # known contacts by their exact address
    "alias": 0.10,  # a known address written differently: upper case, +tag, Gmail dots / googlemail
    "new_at_domain": 0.10,  # someone unknown at a known company's domain (sometimes a sub-domain)
    "freemail_name": 0.08,  # unknown freemail address whose display name is a contact's name
    "multi_company": 0.12,  # contacts of two or three companies on one thread
    "unknown": 0.08,  # nobody and no domain the CRM knows
}


# --------------------------------------------------------------------------------------------- CRM


@dataclass
class Crm:
    """The generated CRM as plain records, plus what the item generator needs to know about it."""

    companies: list[CompanyRec]
    contacts: list[tuple[ContactRec, list[str]]]
    deals: list[DealRec]
    contacts_by_company: dict[int, list[int]] = field(default_factory=dict)
    deals_by_company: dict[int, list[int]] = field(default_factory=dict)
    first_names: list[str] = field(default_factory=list)
    last_names: list[str] = field(default_factory=list)


def _word(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(rng.randint(lo, hi)))


def _pool(rng: random.Random, n: int, lo: int, hi: int, taken: set[str] | None = None) -> list[str]:
    taken = set() if taken is None else taken
    out: list[str] = []
    while len(out) < n:
        w = _word(rng, lo, hi)
        if 3 <= len(w) <= 14 and w not in taken:
            taken.add(w)
            out.append(w.capitalize())
    return out


def _zipf_weights(n: int, s: float = 0.8) -> list[float]:
    return [1.0 / (r**s) for r in range(1, n + 1)]


def generate_crm(n_contacts: int, n_deals: int, seed: int) -> Crm:
    rng = random.Random(f"crm:{seed}:{n_contacts}:{n_deals}")
    n_companies = max(1, n_contacts // 8)

    # companies: unique short names, one or two domains
    shorts = _pool(rng, n_companies, 2, 3)
    companies: list[CompanyRec] = []
    taken_domains: set[str] = set()
    for i, short in enumerate(shorts, start=1):
        name = f"{short} {rng.choice(_CO_SUFFIX)}" if rng.random() < 0.7 else short
        slug = short.lower()
        domains = [f"{slug}.{rng.choice(_TLDS)}"]
        if rng.random() < 0.35:
            domains.append(rng.choice([f"{slug}-group.com", f"{slug}.io", f"{slug}.eu", f"get{slug}.com"]))
        domains = [d for d in dict.fromkeys(domains) if d not in taken_domains]
        taken_domains.update(domains)
        companies.append(CompanyRec(i, f"co-{i}", name, tuple(domains)))

    # contacts: Zipf-distributed first names (many share one), a last-name pool that grows with the CRM
    first_names = _pool(rng, 400, 1, 2)
    last_names = _pool(rng, max(300, n_contacts // 4), 2, 2)
    first_w = _zipf_weights(len(first_names))
    firsts = rng.choices(first_names, weights=first_w, k=n_contacts)
    lasts = rng.choices(last_names, weights=_zipf_weights(len(last_names), 0.6), k=n_contacts)
    used: set[str] = set()
    contacts: list[tuple[ContactRec, list[str]]] = []
    contacts_by_company: dict[int, list[int]] = {}
    for i in range(n_contacts):
        cid = i + 1
        co = companies[i] if i < n_companies else companies[rng.randrange(n_companies)]
        first, last = firsts[i], lasts[i]
        if contacts and rng.random() < 0.01:  # a namesake at another company
            twin = contacts[rng.randrange(len(contacts))][0]
            first, last = twin.first_name or first, twin.last_name or last
        dom = co.domains[0] if len(co.domains) == 1 or rng.random() < 0.8 else co.domains[1]
        f, la = first.lower(), last.lower()
        local = rng.choice([f"{f}.{la}", f"{f}.{la}", f"{f[0]}{la}", f"{f}", f"{f}_{la}", f"{la}.{f[0]}"])
        email = f"{local}@{dom}"
        n = 1
        while email_key(email) in used:
            n += 1
            email = f"{local}{n}@{dom}"
        used.add(email_key(email))
        emails = [email]
        if rng.random() < 0.10:
            if rng.random() < 0.5:
                extra = f"{f}.{la}.{rng.randint(1, 9999)}@{rng.choice(FREEMAIL[:6])}"
            else:
                extra = f"{f[0]}.{la}{rng.randint(1, 99)}@{rng.choice(co.domains)}"
            if email_key(extra) not in used:
                used.add(email_key(extra))
                emails.append(extra)
        phone = f"{rng.choice(_PHONE_PREFIXES)}{rng.randint(1_000_000, 9_999_999)}" if rng.random() < 0.6 else ""
        rec = ContactRec(
            cid, f"ct-{cid}", f"{first} {last}", co.id, first_name=first, last_name=last, phone_digits=phone
        )
        contacts.append((rec, emails))
        contacts_by_company.setdefault(co.id, []).append(cid)

    # deals: spread uniformly over companies, 1-3 contact roles from the company, product-word names
    deals: list[DealRec] = []
    deals_by_company: dict[int, list[int]] = {}
    for i in range(n_deals):
        did = i + 1
        co = companies[rng.randrange(n_companies)]
        created = EPOCH + timedelta(days=rng.uniform(-120, HORIZON_DAYS - 60))
        close = created + timedelta(days=rng.uniform(20, 300))
        if close < NOW:  # mostly settled; some stale deals are still marked open
            status = rng.choices(["open", "won", "lost"], weights=[1, 5, 4])[0]
        else:
            status = "open"
        year = (close if rng.random() < 0.5 else created).year
        words = " ".join(rng.sample(PRODUCT_WORDS, rng.choice([2, 2, 3])))
        short = co.name.split(" ", 1)[0]
        name = f"{short} – {words} {year}" if rng.random() < 0.85 else f"{words} {year}"
        staff = contacts_by_company.get(co.id, [])
        roles = frozenset(rng.sample(staff, min(len(staff), rng.randint(1, 3)))) if staff else frozenset()
        deals.append(DealRec(did, f"deal-{did}", name, co.id, status, created, close, roles))
        deals_by_company.setdefault(co.id, []).append(did)

    return Crm(companies, contacts, deals, contacts_by_company, deals_by_company, first_names, last_names)


def build_index(crm: Crm) -> CrmIndex:
    """What the store does on load: records into the index; what deal scoring uses (vocabulary, per-deal
    data, per-company and per-contact timelines) is built eagerly, so its time and memory count here."""
    index = CrmIndex()
    for co in crm.companies:
        index.add_company(co)
    for rec, emails in crm.contacts:
        index.add_contact(rec, emails)
    for d in crm.deals:
        index.add_deal(d)
    index.prepare()
    return index


def measure_index_memory(n_contacts: int, n_deals: int, seed: int) -> tuple[float, float]:
    """(retained MiB, peak MiB) of records + index, with tracemalloc around generation and build.

    Retained is what stays allocated once the generator's temporaries are gone: the records, their
    strings, the index's dictionaries, the deal vocabulary and the per-deal data and timelines (the global
    lru caches are cleared first so they do not count)."""
    gc.collect()
    email_key.cache_clear()
    registered_domain.cache_clear()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    crm = generate_crm(n_contacts, n_deals, seed)
    index = build_index(crm)
    del crm
    email_key.cache_clear()
    registered_domain.cache_clear()
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del index
    return (current - base) / 2**20, (peak - base) / 2**20


# ------------------------------------------------------------------------------------------- items


@dataclass(frozen=True, slots=True)
class BenchItem:
    kind: str
    people: tuple[Participant, ...]
    when: datetime
    subject: str
    body: str
    thread_deal: int | None = None
    expect_contacts: frozenset[int] = frozenset()  # contacts a correct attribution must find
    expect_companies: frozenset[int] = frozenset()  # companies a correct attribution must find
    named: int | None = None  # the contact behind an unlisted address, recognisable by name + domain/signature
    namesake: int | None = None  # a contact whose name a stranger shares, with nothing to corroborate it


def _typo(rng: random.Random, word: str) -> str:
    if len(word) < 5:
        return word
    i = rng.randrange(1, len(word) - 1)
    op = rng.randrange(3)
    if op == 0:
        return word[:i] + word[i + 1 :]  # dropped letter
    if op == 1:
        return word[:i] + word[i] + word[i:]  # doubled letter
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]  # swapped letters


#: share of items about a company with at least one deal (an account the team sells to): 92 % of the logged
#: items of both labelled corpora (synthetic-dev small and medium) are; the rest concern other companies
ACCOUNT_SHARE = 0.92


class ItemFactory:
    """Items about companies drawn, with ``account_share``, from the companies with deals (else from the others;
    ``None``: uniformly from all companies, whatever their deals)."""

    def __init__(self, crm: Crm, index: CrmIndex, seed: int, account_share: float | None = ACCOUNT_SHARE) -> None:
        self.crm = crm
        self.index = index
        self.rng = random.Random(f"items:{seed}:{len(crm.contacts)}:{len(crm.deals)}")
        self.filler = [w.lower() for w in _pool(self.rng, 2500, 1, 3)]
        self.emails = {rec.id: emails for rec, emails in crm.contacts}
        self.recs = {rec.id: rec for rec, _ in crm.contacts}
        self.companies_with_staff = sorted(crm.contacts_by_company)
        self.account_share = account_share
        self.accounts = [c for c in self.companies_with_staff if c in crm.deals_by_company]
        self.others = [c for c in self.companies_with_staff if c not in crm.deals_by_company]

    def _company(self) -> int:
        """The company an item is about: an account with ``account_share`` (when both kinds exist)."""
        if self.account_share is None:
            return self.rng.choice(self.companies_with_staff)
        account = self.rng.random() < self.account_share
        pool = self.accounts if (account and self.accounts) or not self.others else self.others
        return self.rng.choice(pool)

    # -- people
    def _internal(self) -> list[Participant]:
        out = [Participant(OWNER, "Ana Ruiz")]
        if self.rng.random() < 0.3:
            out.append(Participant(self.rng.choice(COLLEAGUES), None, "cc"))
        return out

    def _known(self, cid: int, alias: bool = False) -> Participant:
        emails = self.emails[cid]
        addr = emails[0] if len(emails) == 1 or self.rng.random() < 0.7 else emails[1]
        if alias:
            local, _, dom = addr.partition("@")
            if dom in ("gmail.com", "googlemail.com") and self.rng.random() < 0.7:
                local = local.replace(".", "") if "." in local else ".".join(local)
                dom = self.rng.choice(["gmail.com", "googlemail.com"])
                addr = f"{local}@{dom}"
            elif self.rng.random() < 0.5:
                addr = f"{local}+{self.rng.choice(['crm', 'sales', 'news', 'q3'])}@{dom}"
            else:
                addr = addr.upper() if self.rng.random() < 0.5 else addr.title()
        return Participant(addr, self.recs[cid].name)

    def _domain_of(self, co: CompanyRec) -> str:
        dom = self.rng.choice(co.domains)
        if self.rng.random() < 0.2:
            dom = f"{self.rng.choice(['mail', 'eu', 'us', 'corp'])}.{dom}"
        return dom

    def _unknown_at(self, co: CompanyRec) -> Participant:
        first, last = self.rng.choice(self.crm.first_names), self.rng.choice(self.filler).capitalize()
        addr = f"{first.lower()}.{last.lower()}.x{self.rng.randint(1, 999)}@{self._domain_of(co)}"
        return Participant(addr, f"{first} {last}")

    def _unlisted_at(self, cid: int, co: CompanyRec) -> Participant:
        """A known contact writing from an address the CRM does not list, at their company's domain."""
        rec = self.recs[cid]
        f, la = (rec.first_name or "x").lower(), (rec.last_name or "y").lower()
        return Participant(f"{f[0]}{la}.u{self.rng.randint(1, 999)}@{self._domain_of(co)}", rec.name)

    def _freemail_namesake(self, cid: int) -> Participant:
        rec = self.recs[cid]
        first, last = rec.first_name or "", rec.last_name or ""
        shown = f"{first} {last}" if self.rng.random() < 0.7 else f"{last}, {first}"
        addr = f"{first.lower()}{last.lower()}{self.rng.randint(100, 99999)}@{self.rng.choice(FREEMAIL)}"
        return Participant(addr, shown)

    def _stranger(self) -> Participant:
        w = self.rng.choice(self.filler)
        return Participant(f"{self.rng.choice(self.filler)}@{w}-{self.rng.randint(1, 9999)}.net", w.capitalize())

    # -- text
    def _signature(self, p: Participant, cid: int | None, corroborate: bool | None = None) -> str:
        """The sign-off of the item's author: name, and for a contact sometimes company and phone."""
        lines = ["Best regards,", p.name or p.email.partition("@")[0]]
        if cid is None:
            if p.email == OWNER:
                lines += ["Northwind", "+44 20 7946 0018"]
            return "\n".join(lines)
        rec = self.recs[cid]
        show = self.rng.random() < 0.6 if corroborate is None else corroborate
        if show and rec.company_id is not None:
            lines.append(self.index.companies[rec.company_id].name)
            if rec.phone_digits and self.rng.random() < 0.5:
                d = rec.phone_digits
                lines.append(f"+{d[:2]} {d[2:4]} {d[4:8]} {d[8:]}")
        return "\n".join(lines)

    def _body(self, n_words: int, mention: str | None, signature: str) -> str:
        words = [
            self.rng.choice(self.filler) if self.rng.random() < 0.3 else w
            for w in self.rng.choices(COMMON_WORDS, k=n_words)
        ]
        sentences: list[str] = []
        i = 0
        while i < len(words):
            n = self.rng.randint(6, 18)
            s = " ".join(words[i : i + n])
            sentences.append(s[:1].upper() + s[1:] + ".")
            i += n
        if mention:
            sentences.insert(self.rng.randrange(len(sentences) + 1), f"About the {mention} work, see my notes below.")
        paras = [" ".join(sentences[j : j + 4]) for j in range(0, len(sentences), 4)]
        return "\n\n".join(paras) + "\n\n" + signature + "\n"

    def _deal_text(self, deal_id: int | None) -> tuple[str, str | None, int | None]:
        """(subject, body mention, thread deal) about a deal, or a generic subject."""
        if deal_id is None or self.rng.random() < 0.35:
            return self.rng.choice(GENERIC_SUBJECTS), None, None
        words = [w for w in self.index.deal_words(deal_id) if not w.isdigit()]
        pick = [w.capitalize() for w in words] or ["Proposal"]
        if self.rng.random() < 0.08 and len(pick) >= 2:
            phrase = "".join(w[0] for w in pick).upper()  # an acronym: "DWM"
        else:
            if self.rng.random() < 0.3:
                pick = self.rng.sample(pick, max(1, len(pick) - 1))
            if self.rng.random() < 0.15:
                j = self.rng.randrange(len(pick))
                pick[j] = _typo(self.rng, pick[j])
            phrase = " ".join(pick)
        thread = deal_id if self.rng.random() < 0.15 else None
        if self.rng.random() < 0.6:
            prefix = self.rng.choice(["", "Re: ", "RE: ", "Fwd: "])
            return f"{prefix}{phrase} – {self.rng.choice(GENERIC_SUBJECTS).lower()}", None, thread
        return self.rng.choice(GENERIC_SUBJECTS), phrase.lower(), thread

    def _when_for(self, deal_id: int | None) -> datetime:
        if deal_id is not None and self.rng.random() < 0.85:
            d = self.index.deals[deal_id]
            if d.created_at is not None and d.close_date is not None:
                span = (d.close_date - d.created_at).total_seconds()
                return d.created_at + timedelta(seconds=self.rng.uniform(0, span))
        return EPOCH + timedelta(seconds=self.rng.uniform(0, HORIZON_DAYS * 86400))

    def _company_deal(self, co_id: int) -> int | None:
        ids = self.crm.deals_by_company.get(co_id)
        return self.rng.choice(ids) if ids else None

    # -- one item
    def make(self, kind: str) -> BenchItem:
        rng = self.rng
        co_id = self._company()
        co = self.index.companies[co_id]
        staff = self.crm.contacts_by_company[co_id]
        deal_id = self._company_deal(co_id)
        externals: list[tuple[Participant, int | None]] = []  # (participant, the contact behind it)
        expect_ct: set[int] = set()
        expect_co: set[int] = set()
        named: int | None = None
        namesake: int | None = None
        corroborate: bool | None = None
        if kind in ("exact", "alias"):
            chosen = rng.sample(staff, min(len(staff), rng.choice([1, 1, 1, 2, 3])))
            externals += [(self._known(cid, alias=kind == "alias" and k == 0), cid) for k, cid in enumerate(chosen)]
            expect_ct.update(chosen)
            expect_co.add(co_id)
        elif kind == "new_at_domain":
            if rng.random() < 0.3:
                named = rng.choice(staff)
                externals.append((self._unlisted_at(named, co), named))
            else:
                externals.append((self._unknown_at(co), None))
            if rng.random() < 0.4:
                cid = rng.choice(staff)
                externals.append((self._known(cid), cid))
                expect_ct.add(cid)
            expect_co.add(co_id)
        elif kind == "freemail_name":
            cid = rng.choice(staff)
            externals.append((self._freemail_namesake(cid), cid))
            corroborate = rng.random() < 0.5
            named, namesake = (cid, None) if corroborate else (None, cid)
            deal_id = deal_id if rng.random() < 0.5 else None
        elif kind == "multi_company":
            cos = [co_id, *(self._company() for _ in range(rng.choice([1, 2])))]
            for c in dict.fromkeys(cos):
                cid = rng.choice(self.crm.contacts_by_company[c])
                externals.append((self._known(cid), cid))
                expect_ct.add(cid)
                expect_co.add(c)
        else:  # unknown
            externals = [(self._stranger(), None) for _ in range(rng.choice([1, 1, 2]))]
            deal_id = None
        subject, mention, thread = self._deal_text(deal_id)
        when = self._when_for(deal_id)
        internal = self._internal()
        ext = [p for p, _ in externals]
        if named is None and namesake is None and rng.random() < 0.15:  # a meeting
            people = [
                Participant(p.email, p.name, "organizer" if i == 0 else "attendee", "ACCEPTED")
                for i, p in enumerate([*internal, *ext])
            ]
            body = self._body(rng.randint(20, 80), mention, self._signature(internal[0], None))
        else:
            inbound = named is not None or namesake is not None or rng.random() < 0.55
            if inbound:
                (sender, sender_id), others = externals[0], internal + ext[1:]
            else:
                (sender, sender_id), others = (internal[0], None), ext + internal[1:]
            people = [Participant(sender.email, sender.name, "from")]
            people += [Participant(p.email, p.name, "cc" if p.email in COLLEAGUES else "to") for p in others]
            signature = self._signature(sender, sender_id, corroborate)
            body = self._body(rng.randint(120, 420), mention, signature)
        return BenchItem(
            kind,
            tuple(people),
            when,
            subject,
            body,
            thread,
            frozenset(expect_ct),
            frozenset(expect_co),
            named,
            namesake,
        )

    def items(self, n: int) -> list[BenchItem]:
        kinds = self.rng.choices(list(ITEM_MIX), weights=list(ITEM_MIX.values()), k=n)
        return [self.make(k) for k in kinds]


def generate_items(
    crm: Crm, index: CrmIndex, n: int, seed: int, account_share: float | None = ACCOUNT_SHARE
) -> list[BenchItem]:
    return ItemFactory(crm, index, seed, account_share).items(n)


# ----------------------------------------------------------------------------------------- running

TEAM = Team([TEAM_DOMAIN], [OWNER])


def run_items(items: Sequence[BenchItem], index: CrmIndex, team: Team = TEAM) -> list[Result]:
    return [attribute(it.people, it.when, it.subject, it.body, index, team, it.thread_deal) for it in items]


def time_pass(items: Sequence[BenchItem], index: CrmIndex, team: Team = TEAM) -> float:
    """Seconds for one pass of attribute() over the items (results are discarded)."""
    t0 = time.perf_counter()
    for it in items:
        attribute(it.people, it.when, it.subject, it.body, index, team, it.thread_deal)
    return time.perf_counter() - t0


def open_candidates(res: Result, when: datetime, index: CrmIndex) -> int:
    """How many deals competed for the item (the candidate set attribute() scores): deals of its
    companies and contacts open at its date."""
    ids: set[int] = set()
    for link in res.companies:
        ids.update(index.deals_by_company.get(link.target_id, ()))
    for link in res.contacts:
        ids.update(index.deals_by_contact.get(link.target_id, ()))
    return sum(
        1 for i in ids if open_at(index.deals[i].status, index.deals[i].created_at, index.deals[i].close_date, when)
    )


def check_results(items: Sequence[BenchItem], results: Sequence[Result]) -> dict[str, float]:
    """Shares that show the benchmark exercises what it claims (and that attribution still works)."""
    n = len(items)
    found_ct = found_co = want_ct = want_co = 0
    with_deal = with_new = needs_review = 0
    named = named_found = namesakes = namesakes_linked = 0
    for it, res in zip(items, results, strict=True):
        got_ct = {link.target_id for link in res.contacts}
        if it.named is not None:
            named += 1
            named_found += it.named in got_ct
        if it.namesake is not None:
            namesakes += 1
            namesakes_linked += it.namesake in got_ct
        got_co = {link.target_id for link in res.companies}
        want_ct += len(it.expect_contacts)
        want_co += len(it.expect_companies)
        found_ct += len(it.expect_contacts & got_ct)
        found_co += len(it.expect_companies & got_co)
        with_deal += res.deal is not None
        with_new += bool(res.new_contacts)
        needs_review += res.status == "needs_review"
    return {
        "expected_contacts_found": found_ct / want_ct if want_ct else 1.0,
        "expected_companies_found": found_co / want_co if want_co else 1.0,
        "unlisted_resolved_by_name": named_found / named if named else 1.0,
        "bare_namesakes_linked": namesakes_linked / namesakes if namesakes else 0.0,
        "with_deal": with_deal / n,
        "with_new_contact": with_new / n,
        "needs_review": needs_review / n,
    }


@dataclass
class Row:
    contacts: int
    companies: int
    deals: int
    emails: int
    index_build_s: float
    index_mib: float
    index_peak_mib: float
    items: int
    items_per_s: float
    us_per_item: float
    vs_smallest: float
    candidates_per_item: float
    with_candidates: float  # share of items with at least one open candidate deal (their text gets read)
    us_with_candidates: float | None  # µs per item over those items alone
    us_without_candidates: float | None  # ... and over the others
    pass_seconds: list[float]
    checks: dict[str, float]


@dataclass
class SizeRun:
    """One CRM size under measurement: its index and items, and the best pass times so far."""

    n_contacts: int
    crm: Crm
    index: CrmIndex
    items: list[BenchItem]
    build_s: float
    mib: float
    peak_mib: float
    per_item: list[int]  # open candidate deals of each item
    split: dict[str, list[BenchItem]]  # "with" / "without" a candidate deal
    passes: list[float] = field(default_factory=list)
    by_kind: dict[str, float] = field(default_factory=dict)  # best pass of each split, seconds


def prepare_size(
    n_contacts: int, n_deals: int, n_items: int, seed: int, log: bool, account_share: float | None = ACCOUNT_SHARE
) -> SizeRun:
    def say(msg: str) -> None:
        if log:
            print(f"  [{n_contacts:>7,} contacts] {msg}", file=sys.stderr, flush=True)

    mib, peak_mib = measure_index_memory(n_contacts, n_deals, seed)
    say(f"index memory {mib:.1f} MiB retained, {peak_mib:.1f} MiB peak (generation + build)")
    crm = generate_crm(n_contacts, n_deals, seed)
    gc.collect()
    t0 = time.perf_counter()
    index = build_index(crm)
    build_s = time.perf_counter() - t0
    say(f"index built in {build_s:.3f} s")
    items = generate_items(crm, index, n_items, seed, account_share)
    say(f"{len(items):,} items generated")
    run_items(items[:WARMUP_ITEMS], index)
    results = run_items(items, index)
    per_item = [open_candidates(res, it.when, index) for it, res in zip(items, results, strict=True)]
    # the same items by kind: with a candidate deal (their text is read) and without
    split = {
        "with": [it for it, n in zip(items, per_item, strict=True) if n],
        "without": [it for it, n in zip(items, per_item, strict=True) if not n],
    }
    return SizeRun(n_contacts, crm, index, items, build_s, mib, peak_mib, per_item, split)


def time_round(run: SizeRun, log: bool) -> None:
    """One pass over all the items, then one over each kind, keeping the best times."""
    gc.collect()
    run.passes.append(time_pass(run.items, run.index))
    for kind, subset in run.split.items():
        if subset:
            gc.collect()
            t = time_pass(subset, run.index)
            run.by_kind[kind] = min(t, run.by_kind.get(kind, t))
    if log:
        print(f"  [{run.n_contacts:>7,} contacts] pass {len(run.passes)}: {run.passes[-1]:.2f} s", file=sys.stderr)


def row_of(run: SizeRun) -> Row:
    items, per_item, best = run.items, run.per_item, min(run.passes)
    results = run_items(items, run.index)

    def us(kind: str) -> float | None:
        return round(run.by_kind[kind] / len(run.split[kind]) * 1e6, 1) if run.split[kind] else None

    return Row(
        contacts=run.n_contacts,
        companies=len(run.crm.companies),
        deals=len(run.crm.deals),
        emails=len(run.index.by_email),
        index_build_s=round(run.build_s, 4),
        index_mib=round(run.mib, 1),
        index_peak_mib=round(run.peak_mib, 1),
        items=len(items),
        items_per_s=round(len(items) / best, 1),
        us_per_item=round(best / len(items) * 1e6, 1),
        vs_smallest=1.0,
        candidates_per_item=round(sum(per_item) / len(items), 2),
        with_candidates=round(sum(1 for n in per_item if n) / len(items), 3),
        us_with_candidates=us("with"),
        us_without_candidates=us("without"),
        pass_seconds=[round(p, 3) for p in run.passes],
        checks={k: round(v, 4) for k, v in check_results(items, results).items()},
    )


def bench_sizes(
    sizes: Sequence[tuple[int, int]],
    n_items: int,
    seed: int,
    repeats: int,
    log: bool,
    account_share: float | None = ACCOUNT_SHARE,
) -> tuple[list[Row], SizeRun]:
    """Rows for (contacts, deals) sizes. The passes go round the sizes in turn (1k, 10k, 100k, 1k, ...), so a
    slow spell of a shared machine slows every size alike rather than the one that happened to run then:
    the figures are compared with each other."""
    runs = [prepare_size(n, d, n_items, seed, log, account_share) for n, d in sizes]
    for _ in range(repeats):
        for run in runs:
            time_round(run, log)
    return [row_of(run) for run in runs], runs[-1]


def profile(index: CrmIndex, items: Sequence[BenchItem], top: int = 25) -> str:
    prof = cProfile.Profile()
    prof.enable()
    time_pass(items, index)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def pin_to(cpu: int | None) -> int | None:
    """Keep the process on one CPU so the scheduler does not move it around (attribution is single-threaded
    either way). Opt-in: two runs pinned to the same CPU would share it."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return None
    os.sched_setaffinity(0, {cpu})
    return cpu


def verdict(rows: list[Row]) -> dict[str, Any]:
    big = next((r for r in rows if r.contacts == TARGET_AT_CONTACTS), None)
    worst = max(rows, key=lambda r: abs(r.vs_smallest - 1.0))
    spread = worst.vs_smallest - 1.0
    throughput: dict[str, Any] = {
        "target": f">= {TARGET_ITEMS_PER_S:,.0f} items/s at {TARGET_AT_CONTACTS:,} contacts",
        "measured": big.items_per_s if big else None,
        "pass": (big.items_per_s >= TARGET_ITEMS_PER_S) if big else None,
    }
    scaling: dict[str, Any] = {
        "target": f"us/item within ±{TARGET_SPREAD:.0%} of the {rows[0].contacts:,}-contact figure",
        "measured": f"worst {spread:+.0%} at {worst.contacts:,} contacts" if len(rows) > 1 else None,
        "pass": abs(spread) <= TARGET_SPREAD if len(rows) > 1 else None,
    }
    # the same criterion for items of one kind: what an item costs for the same work, the mix of items aside
    like: list[tuple[float, str, int]] = []
    for label, col in (("with a candidate deal", "us_with_candidates"), ("without", "us_without_candidates")):
        base = getattr(rows[0], col)
        like += [(getattr(r, col) / base - 1.0, label, r.contacts) for r in rows[1:] if base and getattr(r, col)]
    worst_like = max(like, key=lambda x: abs(x[0]), default=None)
    like_items: dict[str, Any] = {
        "target": f"us/item of items alike (with / without a candidate deal) within ±{TARGET_SPREAD:.0%}",
        "measured": None if worst_like is None else f"worst {worst_like[0]:+.0%} ({worst_like[1]}, {worst_like[2]:,})",
        "pass": None if worst_like is None else abs(worst_like[0]) <= TARGET_SPREAD,
    }
    return {"throughput": throughput, "scaling": scaling, "like items": like_items}


def _size(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else f"{n:,}"


def format_table(rows: list[Row]) -> str:
    base = rows[0].contacts
    head = [
        "contacts",
        "deals",
        "index build s",
        "index MiB",
        "items/s",
        "µs/item",
        f"vs {_size(base)}",
        "cand. deals/item",
        "items with cand.",
        "µs with cand.",
        "µs without",
    ]
    body = [
        [
            f"{r.contacts:,}",
            f"{r.deals:,}",
            f"{r.index_build_s:.3f}",
            f"{r.index_mib:.1f}",
            f"{r.items_per_s:,.0f}",
            f"{r.us_per_item:.1f}",
            f"{r.vs_smallest:.2f}x",
            f"{r.candidates_per_item:.2f}",
            f"{r.with_candidates:.0%}",
            "-" if r.us_with_candidates is None else f"{r.us_with_candidates:.1f}",
            "-" if r.us_without_candidates is None else f"{r.us_without_candidates:.1f}",
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = [" | ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.rjust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000", help="CRM sizes in contacts, comma-separated")
    ap.add_argument("--deals", type=int, default=5000, help="deals in every CRM")
    ap.add_argument(
        "--deals-per-company",
        type=float,
        default=None,
        help="instead of --deals, scale the deals with the CRM (companies are contacts/8): a control that keeps "
        "the candidate-deal density constant across sizes",
    )
    ap.add_argument(
        "--account-share",
        type=float,
        default=ACCOUNT_SHARE,
        help="share of items about a company with deals (default %(default)s, as in the labelled corpora)",
    )
    ap.add_argument(
        "--uniform",
        action="store_true",
        help="draw every item's company uniformly, whatever its deals: with a fixed --deals the share of items "
        "with a candidate deal then falls as the CRM grows",
    )
    ap.add_argument("--items", type=int, default=20000, help="items attributed per pass")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per size; the best is reported")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--profile", action="store_true", help="cProfile one pass at the largest size")
    ap.add_argument("--pin", type=int, default=None, metavar="CPU", help="pin the process to this CPU (Linux)")
    args = ap.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    account_share = None if args.uniform else args.account_share

    cpu = pin_to(args.pin)
    log = not args.json
    deals_label = (
        f"{args.deals:,} deals" if args.deals_per_company is None else f"{args.deals_per_company:g} deals per company"
    )
    if log:
        where = f"pinned to CPU {cpu}" if cpu is not None else "not pinned"
        mix = "companies drawn uniformly" if account_share is None else f"{account_share:.0%} about accounts"
        print(
            f"attribution throughput: {args.items:,} items ({mix}), {deals_label}, seed {args.seed}, {where}",
            file=sys.stderr,
        )
    shapes = [
        (n, args.deals if args.deals_per_company is None else round(n / 8 * args.deals_per_company)) for n in sizes
    ]
    rows, last = bench_sizes(shapes, args.items, args.seed, args.repeats, log, account_share)
    for r in rows:
        r.vs_smallest = round(r.us_per_item / rows[0].us_per_item, 3)
    targets = verdict(rows)
    result: dict[str, Any] = {
        "config": {
            "sizes": sizes,
            "deals": args.deals if args.deals_per_company is None else None,
            "deals_per_company": args.deals_per_company,
            "items": args.items,
            "seed": args.seed,
            "repeats": args.repeats,
            "warmup_items": WARMUP_ITEMS,
            "item_mix": ITEM_MIX,
            "account_share": account_share,
            "cpu": cpu,
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "rows": [asdict(r) for r in rows],
        "targets": targets,
    }
    prof_text = profile(last.index, last.items) if args.profile else None
    if prof_text is not None:
        result["profile_contacts"] = rows[-1].contacts
    if args.json:
        if prof_text is not None:
            result["profile"] = prof_text
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    print(format_table(rows))
    print()
    for r in rows:
        c = r.checks
        print(
            f"{r.contacts:>7,} contacts: {r.companies:,} companies, {r.emails:,} addresses; passes "
            f"{', '.join(f'{p:.2f}' for p in r.pass_seconds)} s; expected contacts found "
            f"{c['expected_contacts_found']:.1%}, companies {c['expected_companies_found']:.1%}; deal chosen "
            f"{c['with_deal']:.1%}, new contact {c['with_new_contact']:.1%}, needs review {c['needs_review']:.1%}; "
            f"unlisted addresses resolved by name {c['unlisted_resolved_by_name']:.1%}, "
            f"bare namesakes linked {c['bare_namesakes_linked']:.1%}"
        )
    print()
    for name, t in targets.items():
        state = "n/a" if t["pass"] is None else ("PASS" if t["pass"] else "FAIL")
        print(f"{name:>11}: {state}  ({t['target']}; measured {t['measured']})")
    if prof_text is not None:
        print(f"\ncProfile of one pass at {rows[-1].contacts:,} contacts:\n{prof_text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
