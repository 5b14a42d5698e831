"""SQLAlchemy 2 models. The schema itself is created and changed only by Alembic migrations.

Times are stored as naive UTC (``UtcDateTime`` adds and strips the zone) so SQLite and PostgreSQL
compare them the same way. Sync state is kept apart from activities and never holds bodies.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy import DateTime as _DateTime
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, naive UTC in the database."""

    impl = _DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: UtcDateTime}


class Setting(Base):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class Source(Base):
    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    location: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(String(320))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cursor: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(30), default="new")
    last_sync_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    item_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column()
    __table_args__ = (UniqueConstraint("kind", "location", "owner", name="uq_source"),)


class SyncState(Base):
    """One row per item a source has handed over: enough to never parse it again, nothing more."""

    __tablename__ = "sync_state"
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True)
    provider_id: Mapped[str] = mapped_column(String(500), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    locator: Mapped[str] = mapped_column(Text, default="")
    activity_id: Mapped[int | None] = mapped_column(
        ForeignKey("activities.id", ondelete="SET NULL"), nullable=True, index=True
    )
    occurred_at: Mapped[datetime | None] = mapped_column(nullable=True)
    outcome: Mapped[str] = mapped_column(String(20), default="logged")  # logged | skipped | quarantined


class Company(Base):
    __tablename__ = "companies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    crm_id: Mapped[str | None] = mapped_column(String(100), unique=True, nullable=True)
    name: Mapped[str] = mapped_column(String(300))
    last_contact_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_inbound_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_outbound_at: Mapped[datetime | None] = mapped_column(nullable=True)
    next_meeting_at: Mapped[datetime | None] = mapped_column(nullable=True)
    activity_count: Mapped[int] = mapped_column(Integer, default=0)
    #: when one of the roll-ups above last changed (what `export entities --changed` picks up)
    rollup_changed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class CompanyDomain(Base):
    __tablename__ = "company_domains"
    domain: Mapped[str] = mapped_column(String(255), primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)


class Contact(Base):
    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    crm_id: Mapped[str | None] = mapped_column(String(100), unique=True, nullable=True)
    first_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    last_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    name: Mapped[str | None] = mapped_column(String(400), nullable=True)
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    company_id: Mapped[int | None] = mapped_column(
        ForeignKey("companies.id", ondelete="SET NULL"), nullable=True, index=True
    )
    title: Mapped[str | None] = mapped_column(String(300), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # crm: imported from the CRM; suggested: met in mail at a CRM company, not confirmed yet
    origin: Mapped[str] = mapped_column(String(20), default="crm")
    last_contact_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_inbound_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_outbound_at: Mapped[datetime | None] = mapped_column(nullable=True)
    next_meeting_at: Mapped[datetime | None] = mapped_column(nullable=True)
    activity_count: Mapped[int] = mapped_column(Integer, default=0)
    #: when one of the roll-ups above last changed (what `export entities --changed` picks up)
    rollup_changed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ContactEmail(Base):
    """Every address of a contact in matching form (lower case, plus-tag removed, gmail dots removed)."""

    __tablename__ = "contact_emails"
    key: Mapped[str] = mapped_column(String(320), primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)


class Deal(Base):
    __tablename__ = "deals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    crm_id: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(400))
    company_id: Mapped[int | None] = mapped_column(
        ForeignKey("companies.id", ondelete="SET NULL"), nullable=True, index=True
    )
    stage: Mapped[str | None] = mapped_column(String(100), nullable=True)
    status: Mapped[str] = mapped_column(String(10), default="open")  # open | won | lost
    amount: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime | None] = mapped_column(nullable=True)
    close_date: Mapped[datetime | None] = mapped_column(nullable=True)
    owner_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    last_contact_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_inbound_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_outbound_at: Mapped[datetime | None] = mapped_column(nullable=True)
    next_meeting_at: Mapped[datetime | None] = mapped_column(nullable=True)
    activity_count: Mapped[int] = mapped_column(Integer, default=0)
    #: when one of the roll-ups above last changed (what `export entities --changed` picks up)
    rollup_changed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class DealContact(Base):
    __tablename__ = "deal_contacts"
    deal_id: Mapped[int] = mapped_column(ForeignKey("deals.id", ondelete="CASCADE"), primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True, index=True)
    role: Mapped[str | None] = mapped_column(String(100), nullable=True)


class Activity(Base):
    __tablename__ = "activities"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # email | meeting
    dedupe_key: Mapped[str] = mapped_column(String(600), unique=True)
    occurred_at: Mapped[datetime] = mapped_column(index=True)
    end_at: Mapped[datetime | None] = mapped_column(nullable=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    direction: Mapped[str | None] = mapped_column(String(10), nullable=True)  # inbound | outbound | None
    thread_key: Mapped[str | None] = mapped_column(String(600), nullable=True, index=True)
    snippet: Mapped[str | None] = mapped_column(Text, nullable=True)
    ical_uid: Mapped[str | None] = mapped_column(String(500), nullable=True)
    recurrence_id: Mapped[datetime | None] = mapped_column(nullable=True)
    #: auto | needs_review | confirmed | corrected | ignored (a person said: not business / private)
    status: Mapped[str] = mapped_column(String(20), default="auto", index=True)
    confidence: Mapped[float] = mapped_column(Float, default=0.0)
    evidence: Mapped[Any] = mapped_column(JSON, default=list)
    #: ranked deal candidates [[deal_id, probability], ...] kept for the review queue
    candidates: Mapped[Any] = mapped_column(JSON, nullable=True)
    #: the correction rule that last decided this item (so undoing the rule can hand it back to the matcher)
    rule_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()


class ActivityKey(Base):
    """Every identity of an activity: ``mid:<Message-ID>``, ``fp:<fingerprint>``, ``ics:<uid>|<rid>``."""

    __tablename__ = "activity_keys"
    key: Mapped[str] = mapped_column(String(600), primary_key=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("activities.id", ondelete="CASCADE"), index=True)


class Participant(Base):
    __tablename__ = "participants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("activities.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    name: Mapped[str | None] = mapped_column(String(400), nullable=True)
    role: Mapped[str] = mapped_column(String(20))
    is_internal: Mapped[bool] = mapped_column(Boolean, default=False)
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), nullable=True, index=True
    )


class Attribution(Base):
    """A link from an activity to a contact, company or deal, with how sure and why."""

    __tablename__ = "attributions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("activities.id", ondelete="CASCADE"))
    target_type: Mapped[str] = mapped_column(String(10))  # contact | company | deal
    target_id: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float] = mapped_column(Float)
    evidence: Mapped[Any] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(20), default="auto")
    __table_args__ = (
        UniqueConstraint("activity_id", "target_type", "target_id", name="uq_attribution"),
        Index("ix_attr_target", "target_type", "target_id"),
    )


class Skipped(Base):
    """An item deliberately not logged, with the reason. Holds addresses, never subjects or bodies."""

    __tablename__ = "skipped"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    provider_id: Mapped[str] = mapped_column(String(500))
    locator: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(10))
    dedupe_key: Mapped[str | None] = mapped_column(String(600), nullable=True)
    reason: Mapped[str] = mapped_column(String(40), index=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    occurred_at: Mapped[datetime | None] = mapped_column(nullable=True)
    sender: Mapped[str | None] = mapped_column(String(320), nullable=True)
    # addresses of a 'personal' item, so a later CRM import can tell whether it now matters
    addresses: Mapped[Any] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column()
    __table_args__ = (UniqueConstraint("source_id", "provider_id", name="uq_skipped"),)


class Quarantine(Base):
    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    provider_id: Mapped[str] = mapped_column(String(500))
    locator: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()
    __table_args__ = (UniqueConstraint("source_id", "provider_id", name="uq_quarantine"),)


class Correction(Base):
    """One decision a person took (a review pick, a reassignment, an ignore), with what it replaced.

    ``before`` holds, per affected activity, its status and links as they were, so ``undo`` can put
    them back exactly; ``rule_id`` points at the rule a scoped correction left for future mail."""

    __tablename__ = "corrections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    activity_id: Mapped[int | None] = mapped_column(ForeignKey("activities.id", ondelete="SET NULL"), nullable=True)
    target_type: Mapped[str] = mapped_column(String(10))
    old_target_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    new_target_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    scope: Mapped[str] = mapped_column(String(20), default="item")
    rule: Mapped[Any] = mapped_column(JSON, nullable=True)
    actor: Mapped[str | None] = mapped_column(String(320), nullable=True)
    created_at: Mapped[datetime] = mapped_column()
    undone_at: Mapped[datetime | None] = mapped_column(nullable=True)
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("rules.id", ondelete="SET NULL"), nullable=True)
    before: Mapped[Any] = mapped_column(JSON, nullable=True)
    affected: Mapped[int] = mapped_column(Integer, default=0)


class Rule(Base):
    """What a scoped correction teaches: applied to the items it covers now and to future mail.

    scope ``thread`` matches a thread key, ``sender`` a normalised address, ``domain`` a domain;
    action ``assign`` sets ``target_type``/``target_id``, ``ignore`` keeps matching items out of the log."""

    __tablename__ = "rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(10))
    match: Mapped[str] = mapped_column(String(600))
    action: Mapped[str] = mapped_column(String(10))
    target_type: Mapped[str | None] = mapped_column(String(10), nullable=True)
    target_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: for a contact reassignment: the address whose contact is replaced
    address: Mapped[str | None] = mapped_column(String(320), nullable=True)
    actor: Mapped[str | None] = mapped_column(String(320), nullable=True)
    created_at: Mapped[datetime] = mapped_column()
    undone_at: Mapped[datetime | None] = mapped_column(nullable=True)
    __table_args__ = (Index("ix_rules_scope_match", "scope", "match"),)


class AuditEntry(Base):
    """Who did what, when: every decision, undo, user change and sign-in. Never mail content."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(40))
    detail: Mapped[Any] = mapped_column(JSON, default=dict)


class User(Base):
    """A person allowed to use the web page when it listens beyond loopback. Only a scrypt hash is kept."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(320), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column()
    disabled_at: Mapped[datetime | None] = mapped_column(nullable=True)


ROLLUP_MODELS: dict[str, type[Company] | type[Contact] | type[Deal]] = {
    "company": Company,
    "contact": Contact,
    "deal": Deal,
}

__all__ = [
    "Activity",
    "ActivityKey",
    "Attribution",
    "AuditEntry",
    "Base",
    "Company",
    "CompanyDomain",
    "Contact",
    "ContactEmail",
    "Correction",
    "Deal",
    "DealContact",
    "Participant",
    "Quarantine",
    "ROLLUP_MODELS",
    "Rule",
    "Setting",
    "Skipped",
    "Source",
    "SyncState",
    "User",
]
