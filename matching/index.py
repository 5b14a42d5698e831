"""An in-memory index of the CRM for attribution: address -> contact, domain -> company, company ->
deals. Built from plain records (the store loads them); lookups are dictionary hits, never scans."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from sys import intern
from typing import TYPE_CHECKING

from .identity import company_words, domain_chain, domain_of, email_key, is_freemail, surname_keys

if TYPE_CHECKING:
    from .deals import DealInfo, DealTimeline, DealVocabulary


@dataclass(frozen=True, slots=True)
class ContactRec:
    id: int
    crm_id: str | None
    name: str | None
    company_id: int | None
    origin: str = "crm"
    first_name: str | None = None
    last_name: str | None = None
    phone_digits: str = ""


@dataclass(frozen=True, slots=True)
class CompanyRec:
    id: int
    crm_id: str | None
    name: str
    domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DealRec:
    id: int
    crm_id: str
    name: str
    company_id: int | None
    status: str
    created_at: datetime | None
    close_date: datetime | None
    contact_ids: frozenset[int] = frozenset()


@dataclass
class CrmIndex:
    contacts: dict[int, ContactRec] = field(default_factory=dict)
    by_email: dict[str, int] = field(default_factory=dict)
    companies: dict[int, CompanyRec] = field(default_factory=dict)
    by_domain: dict[str, int] = field(default_factory=dict)
    deals: dict[int, DealRec] = field(default_factory=dict)
    deals_by_company: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    deals_by_contact: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    #: words of the folded surname (identity.surname_keys) -> contacts (for display-name resolution)
    by_surname: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    #: the same by (surname word, company): the namesakes at one company, however common the name in the CRM
    by_surname_company: dict[tuple[str, int], list[int]] = field(default_factory=lambda: defaultdict(list))
    #: a company's name as running text writes it (identity.company_words), by its first one or two words
    by_name_start: dict[tuple[str, ...], list[int]] = field(default_factory=lambda: defaultdict(list))
    #: the first words of company names in by_name_start: alone (one-word names) and followed by another
    name_singles: set[str] = field(default_factory=set)
    name_firsts: set[str] = field(default_factory=set)
    #: company id -> its company_words
    name_words: dict[int, tuple[str, ...]] = field(default_factory=dict)
    #: the last eight digits of a named contact's phone number -> contacts (a signature's phone number)
    by_phone: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    _vocab: DealVocabulary | None = None
    _deal_words: dict[int, list[str]] = field(default_factory=dict)
    _deal_info: dict[int, DealInfo] = field(default_factory=dict)
    _company_deals: dict[int, DealTimeline] = field(default_factory=dict)
    _contact_deals: dict[int, DealTimeline] = field(default_factory=dict)

    def vocabulary(self) -> DealVocabulary:
        """Word rarity over all deal names (built on first use, rebuilt when deals change)."""
        if self._vocab is None:
            from .deals import DealVocabulary

            self._vocab = DealVocabulary(d.name for d in self.deals.values())
        return self._vocab

    def prepare(self) -> None:
        """Build what deal scoring uses up front (otherwise built on first use): the deal vocabulary and its
        lexicon, every deal's DealInfo and the per-company and per-contact timelines."""
        self.vocabulary()
        for company_id in self.deals_by_company:
            self.company_deals(company_id)
        for contact_id in self.deals_by_contact:
            self.contact_deals(contact_id)

    def deal_words(self, deal_id: int) -> list[str]:
        """The deal name's words, less the words of its company's name ("Acme – DWH Migration")."""
        words = self._deal_words.get(deal_id)
        if words is None:
            from .deals import tokens

            d = self.deals[deal_id]
            co = self.companies.get(d.company_id) if d.company_id is not None else None
            skip = set(tokens(co.name)) if co else set()
            words = [intern(w) for w in tokens(d.name) if w not in skip]  # the same few words in many deals
            self._deal_words[deal_id] = words
        return words

    def deal_info(self, deal_id: int) -> DealInfo:
        """What scoring needs of a deal (its words, acronyms, open dates), worked out on first use."""
        info = self._deal_info.get(deal_id)
        if info is None:
            from .deals import DealInfo

            d = self.deals[deal_id]
            words = self.deal_words(deal_id)
            info = DealInfo.of(d.id, d.name, words, d.status, d.created_at, d.close_date, d.contact_ids)
            self._deal_info[deal_id] = info
        return info

    def company_deals(self, company_id: int) -> DealTimeline:
        """The company's deals (``deals_by_company``) by the dates they are open."""
        out = self._company_deals.get(company_id)
        if out is None:
            out = self._timeline(self.deals_by_company.get(company_id, ()))
            self._company_deals[company_id] = out
        return out

    def contact_deals(self, contact_id: int) -> DealTimeline:
        """The deals the contact has a role on (``deals_by_contact``) by the dates they are open."""
        out = self._contact_deals.get(contact_id)
        if out is None:
            out = self._timeline(self.deals_by_contact.get(contact_id, ()))
            self._contact_deals[contact_id] = out
        return out

    def _timeline(self, deal_ids: Iterable[int]) -> DealTimeline:
        from .deals import DealTimeline

        return DealTimeline(self.deal_info(i) for i in deal_ids)

    def add_company(self, c: CompanyRec) -> None:
        self.companies[c.id] = c
        for d in c.domains:
            self.by_domain[d.lower()] = c.id
        words = self.name_words[c.id] = company_words(c.name)
        if words:
            self.by_name_start[words[:2]].append(c.id)
            (self.name_singles if len(words) == 1 else self.name_firsts).add(words[0])

    def add_contact(self, c: ContactRec, emails: list[str]) -> None:
        self.contacts[c.id] = c
        for e in emails:
            self.by_email[email_key(e)] = c.id
        if c.origin == "crm" and c.first_name and c.last_name:
            for key in surname_keys(c.last_name):
                self.by_surname[key].append(c.id)
                if c.company_id is not None:
                    self.by_surname_company[(key, c.company_id)].append(c.id)
            if len(c.phone_digits) >= 7:
                self.by_phone[c.phone_digits[-8:]].append(c.id)

    def add_deal(self, d: DealRec) -> None:
        self.deals[d.id] = d
        self._vocab = None
        self._deal_words.pop(d.id, None)
        self._deal_info.pop(d.id, None)
        self._company_deals.clear()
        self._contact_deals.clear()
        if d.company_id is not None:
            self.deals_by_company[d.company_id].append(d.id)
        for cid in d.contact_ids:
            self.deals_by_contact[cid].append(d.id)

    def contact_for(self, email: str) -> ContactRec | None:
        cid = self.by_email.get(email_key(email))
        return self.contacts.get(cid) if cid is not None else None

    def company_for_email(self, email: str) -> tuple[CompanyRec, str] | None:
        """The company owning the address's domain or a parent domain (never a freemail domain)."""
        domain = domain_of(email)
        if not domain or is_freemail(domain):
            return None
        for d in domain_chain(domain):
            cid = self.by_domain.get(d)
            if cid is not None:
                return self.companies[cid], d
        return None

    def knows(self, email: str) -> bool:
        return self.contact_for(email) is not None or self.company_for_email(email) is not None


class Team:
    """The team's own identity: internal domains (with sub-domains) and the source owners' addresses."""

    def __init__(self, domains: Iterable[str], owners: Iterable[str] = ()) -> None:
        self.owners = {o.lower() for o in owners}
        self.domains = {d.lower().strip(".") for d in domains} | {domain_of(o) for o in self.owners}

    def is_internal(self, email: str) -> bool:
        if email.lower() in self.owners:
            return True
        d = domain_of(email)
        while d:
            if d in self.domains:
                return True
            if "." not in d:
                return False
            d = d.split(".", 1)[1]
        return False
