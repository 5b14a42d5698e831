"""The provider contract.

Terms
-----
item
    One email message (:class:`~providers.records.MailItem`) or one meeting occurrence
    (:class:`~providers.records.CalendarItem`) as one source sees it. A source that cannot read an
    input yields :class:`~providers.records.Quarantined` with the reason instead of raising.
provider id
    The source's own stable key for an item: a Maildir unique name (without the ``:2,`` flags),
    an mbox byte offset, an ``UID|RECURRENCE-ID`` pair, a Gmail message id. It is what sync state
    remembers so an unchanged item is never parsed twice.
Message-ID
    The RFC 5322 Message-ID, the identity of a real-world email across every mailbox that holds it.
    Meetings use iCalendar UID + RECURRENCE-ID the same way.
thread
    Emails linked by References / In-Reply-To (or, when a client dropped them, by subject).
cursor
    A small JSON-able dict that lets a source continue where it stopped. A source yields
    :class:`~providers.records.Batch` objects; the engine stores a batch's items and its cursor in one
    transaction, so a crash never loses or duplicates anything. A source must tolerate being resumed
    from any cursor it yielded. An invalid cursor raises :class:`~providers.errors.CursorExpired`.

Sources are read-only: they never change the mailbox or calendar they read.
Networked sources take their client (HTTP client, SDK service) as a constructor argument.
"""

from __future__ import annotations

import abc
import importlib
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from .records import Batch, Item

#: kind -> "module:Class"; imported lazily so optional SDKs load only when used.
REGISTRY: dict[str, str] = {
    "maildir": "providers.mailfiles:MaildirSource",
    "mbox": "providers.mailfiles:MboxSource",
    "eml": "providers.mailfiles:EmlFolderSource",
    "ics": "providers.ics:IcsSource",
    "imap": "providers.imap:ImapSource",
    "caldav": "providers.caldav:CaldavSource",
    "gmail": "providers.gmail:GmailSource",
    "gcal": "providers.gcal:GoogleCalendarSource",
    "graph_mail": "providers.graph:GraphMailSource",
    "graph_calendar": "providers.graph:GraphCalendarSource",
    "exchange": "providers.ews:ExchangeSource",
}


class SyncContext:
    """What the engine tells a source about the run: the clock and a parallel map for parsing."""

    def __init__(
        self,
        now: datetime,
        batch_size: int = 500,
        pmap: Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]] | None = None,
        is_known: Callable[[list[str]], set[str]] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.now = now
        self.batch_size = batch_size
        self.pmap = pmap or map
        #: given provider ids, returns those the engine has already stored (so they are not parsed again)
        self.is_known = is_known or (lambda ids: set())
        #: set when the user asked to stop (SIGINT/SIGTERM): finish the batch in hand, start no other
        self.stop = stop or threading.Event()

    def stopping(self) -> bool:
        return self.stop.is_set()


class Source(abc.ABC):
    """A mail or calendar source. Subclasses set ``kind`` and implement :meth:`batches`."""

    kind: str = ""

    def __init__(self, location: str, owner: str, settings: dict[str, Any] | None = None) -> None:
        self.location = location
        self.owner = owner.lower()
        self.settings = dict(settings or {})

    @abc.abstractmethod
    def batches(self, cursor: dict[str, Any] | None, ctx: SyncContext) -> Iterator[Batch]:
        """Yield batches of items newer than ``cursor``, each with the cursor valid after it."""

    def fetch(self, locator: str, ctx: SyncContext) -> Item | None:
        """Read one item again by its locator (used when a CRM change revives a skipped item)."""
        return None

    def check(self) -> None:
        """Raise a ProviderError if the source cannot be read at all (called by ``source add``)."""

    def folder_of(self, provider_id: str) -> str | None:
        """The folder or calendar an item lives in, for per-folder status (None: the source is one folder)."""
        return None

    def close(self) -> None:
        """Release connections (an IMAP IDLE session); the source may be used again afterwards."""

    def wait_for_change(self, ctx: SyncContext, timeout: float) -> bool:
        """Block until the source reports a change (IMAP IDLE) or ``timeout`` passes or ``ctx.stop`` is
        set; True when a change was seen. Sources without push simply wait (the engine then polls)."""
        ctx.stop.wait(timeout)
        return False


def source_class(kind: str) -> type[Source]:
    from .errors import BadInput

    try:
        target = REGISTRY[kind]
    except KeyError:
        raise BadInput(f"unknown source kind {kind!r}; known: {', '.join(sorted(REGISTRY))}") from None
    module, _, name = target.partition(":")
    cls: type[Source] = getattr(importlib.import_module(module), name)
    return cls


def make_source(kind: str, location: str, owner: str, settings: dict[str, Any] | None = None) -> Source:
    return source_class(kind)(location, owner, settings)
