"""The small frozen records that cross package boundaries.

A source adapter turns whatever it reads (a Maildir file, an mbox slice, an .ics occurrence, later an
IMAP message or a Gmail resource) into exactly these records; the sync engine, the classifier and the
matcher only ever see them. Every datetime here is timezone-aware UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f]")


def printable(text: str) -> str:
    """Text from mail or calendars without control characters (NUL breaks PostgreSQL, ESC sequences
    would drive a terminal). Tabs and newlines are kept."""
    return _CONTROL.sub(" ", text) if _CONTROL.search(text) else text


@dataclass(frozen=True, slots=True)
class Participant:
    """One person on an item. ``email`` is lower-cased; ``name`` is the decoded display name.

    ``role`` is one of from, to, cc, bcc, reply_to (mail) or organizer, attendee (meetings).
    ``partstat`` is the iCalendar PARTSTAT of an attendee (ACCEPTED, DECLINED, ...) or None.
    """

    email: str
    name: str | None = None
    role: str = "to"
    partstat: str | None = None


@dataclass(frozen=True, slots=True)
class MailItem:
    """One email message as one source saw it.

    ``provider_id`` is stable within the source (a Maildir unique name, an mbox offset, a Gmail id).
    ``locator`` lets the same source fetch the message again (a path, an offset) when a CRM change
    makes a skipped message worth another look. ``message_id`` is the RFC 5322 Message-ID with its
    angle brackets, or a synthetic ``<sha1@inkless.invalid>`` when the header is missing.
    ``headers`` holds only the headers classification needs, lower-case names.
    ``body_text`` is the plain text (or text converted from HTML), cut to a bounded length; it is
    used for attribution and the snippet and is never stored whole.
    """

    provider_id: str
    locator: str
    message_id: str
    occurred_at: datetime
    subject: str
    sender: Participant | None
    participants: tuple[Participant, ...]
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    has_calendar: bool = False
    body_text: str = ""
    fingerprint: str = ""
    content_hash: str = ""
    kind: str = field(default="email", init=False)

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None


@dataclass(frozen=True, slots=True)
class CalendarItem:
    """One meeting occurrence.

    ``ical_uid`` is the iCalendar UID; ``recurrence_id`` is the occurrence's original start in UTC for
    a recurring series (None for a single event). ``status`` is CONFIRMED, TENTATIVE or CANCELLED.
    ``attendees`` includes the organizer as an attendee only if the calendar lists them as one.
    """

    provider_id: str
    locator: str
    ical_uid: str
    recurrence_id: datetime | None
    start: datetime
    end: datetime | None
    summary: str
    description: str
    organizer: Participant | None
    attendees: tuple[Participant, ...]
    status: str = "CONFIRMED"
    all_day: bool = False
    content_hash: str = ""
    kind: str = field(default="meeting", init=False)

    @property
    def occurred_at(self) -> datetime:
        return self.start


@dataclass(frozen=True, slots=True)
class Quarantined:
    """Input the source could not turn into a record, with a one-line reason. Never fatal."""

    provider_id: str
    locator: str
    reason: str


Item = MailItem | CalendarItem | Quarantined


@dataclass(frozen=True, slots=True)
class Batch:
    """What a source yields: items plus the cursor that is valid once they are stored.

    ``snapshot`` marks a batch that lists every item the source currently holds inside ``window``
    (a calendar file re-read whole): anything of this source in that window that is not in the
    snapshot was deleted. ``complete_for`` does the same for some provider-id prefixes only (a
    CalDAV object ``"UID|"`` re-read after a change: its occurrences in ``window`` are exactly those
    in the batch; a deleted object comes as its prefix with no items). ``deleted`` lists provider ids
    the source knows were removed.
    """

    items: tuple[Item, ...]
    cursor: dict[str, object]
    snapshot: bool = False
    window: tuple[datetime, datetime] | None = None
    deleted: tuple[str, ...] = ()
    total_hint: int | None = None
    complete_for: tuple[str, ...] = ()
