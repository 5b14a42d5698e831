"""An on-premises Exchange mailbox (EWS, through exchangelib) as a mail and calendar source.

Exchange Online is not served here: Microsoft is switching EWS off for it, so Microsoft 365 mailboxes go
through Graph (``inkless connect microsoft``) and an Office 365 server is refused up front.

Mail
    Inbox and Sent Items are read with ``SyncFolderItems`` (``folder.sync_items``): only ids travel in the
    sync pass, the new messages' MIME is then fetched with ``GetItem`` one chunk of ``ctx.batch_size`` at a
    time and parsed by :func:`providers.mailparse.parse_message`, the parser every mail source shares.
    Provider id and locator are the EWS item id. The cursor holds the sync state of each folder::

        {"folders": {"inbox": {"state": str}, "sentitems": {"state": str}},
         "calendar": {"synced_at": ISO instant, "count": int}}

    A folder's sync state is only replaced once a ``sync_items`` pass was consumed completely; every batch
    committed during a pass carries the state the pass started from. A crash mid-pass therefore replays the
    pass, and ``ctx.is_known`` skips what was stored already: nothing is lost, nothing is parsed twice.
    Deletions and read-flag changes are ignored: deleted mail stays logged (like IMAP expunges).
    An expired sync state (``ErrorInvalidSyncStateData``) raises :class:`CursorExpired`; the engine then
    reads everything again from cursor None, and items are recognised by id and Message-ID.

Calendar
    A calendar view (``FindItem`` with ``CalendarView``, then ``GetItem`` for the attendees) over the sync
    window of :func:`providers.ics.sync_window`, expanded by the server into occurrences and exceptions.
    Provider ids are ``"cal|" + <the ICS source's key>``, i.e. ``"cal|UID|RECURRENCE-ID"`` (ISO UTC, empty
    for a single meeting): ``ical_uid`` and ``recurrence_id`` equal what the ICS and CalDAV sources yield for
    the same meeting, so the engine dedupes them, and the ``cal|`` prefix (an EWS item id is base64 and never
    contains ``|``) lets the view be one batch with ``complete_for=("cal|",)`` and ``window`` set: calendar
    items of this source in the window that the view no longer lists are removed, mail is never touched.
    A view is not incremental, so it is re-read at most every ``calendar_every`` seconds (default 900).

Errors are translated once, here: 401 / :class:`UnauthorizedError` -> :class:`AuthExpired` with the
reconnect command; throttling (``ErrorServerBusy`` with ``BackOffMilliseconds``, ``Retry-After``) is
waited out by exchangelib's :class:`FaultTolerance` up to ``max_wait`` seconds (default 300), beyond that
:class:`RateLimited`; connection errors, timeouts and 5xx -> :class:`Unreachable`; a message that cannot
be read or parsed -> :class:`Quarantined`.

Settings: ``server`` (host name, or the full EWS URL), ``auth`` ("ntlm" | "basic" | "oauth"), ``user``
(default the owner), ``password_cmd`` / ``password_env`` or ``token_ref`` / ``password_ref`` (a name under which
``inkless connect exchange`` stored the password with :func:`providers.secrets.save_secret`; for "oauth"
it holds the token JSON and ``client_id`` / ``tenant_id`` are needed), ``max_wait`` (seconds),
``timeout`` (seconds per request, default 120), ``calendar`` (default true), ``calendar_every`` (seconds),
``autodiscover`` (only used when no server is given).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import requests
from exchangelib import (
    BASIC,
    DELEGATE,
    NTLM,
    OAUTH2,
    Account,
    Configuration,
    Credentials,
    EWSDateTime,
    EWSTimeZone,
    FaultTolerance,
    OAuth2AuthorizationCodeCredentials,
)
from exchangelib.errors import (
    CASError,
    ErrorAccessDenied,
    ErrorFolderNotFound,
    ErrorInternalServerTransientError,
    ErrorInvalidSyncStateData,
    ErrorItemNotFound,
    ErrorMailboxStoreUnavailable,
    ErrorNonExistentMailbox,
    ErrorServerBusy,
    ErrorTimeoutExpired,
    EWSError,
    MalformedResponseError,
    RateLimitError,
    RedirectError,
    ResponseMessageError,
    TransportError,
    UnauthorizedError,
)
from exchangelib.version import EXCHANGE_2013

from .base import Source, SyncContext
from .errors import AuthExpired, CursorExpired, ProviderError, RateLimited, Unreachable
from .ics import DESCRIPTION_MAX, sync_window
from .mailparse import parse_message
from .records import Batch, CalendarItem, Item, Participant, Quarantined, printable
from .secrets import load_secret, resolve_password

log = logging.getLogger("inkless.ews")

#: the folders read for mail: cursor key -> exchangelib Account attribute
MAIL_FOLDERS = (("inbox", "inbox"), ("sentitems", "sent"))
CAL_PREFIX = "cal|"
#: SyncFolderItems page size (EWS allows up to 512)
SYNC_PAGE = 200
DEFAULT_MAX_WAIT = 300.0
DEFAULT_CALENDAR_EVERY = 900.0
#: Exchange Online hosts: EWS there is being retired, Graph is the way in
_ONLINE_HOSTS = ("outlook.office365.com", "outlook.office.com")
_ONLINE_SUFFIXES = (".office365.com", ".office.com", ".outlook.com")
_PARTSTAT = {
    "Accept": "ACCEPTED",
    "Organizer": "ACCEPTED",
    "Decline": "DECLINED",
    "Tentative": "TENTATIVE",
    "NoResponseReceived": "NEEDS-ACTION",
    "Unknown": "NEEDS-ACTION",
}
_CAL_FIELDS = (
    "uid",
    "recurrence_id",
    "original_start",
    "type",
    "subject",
    "start",
    "end",
    "is_all_day",
    "is_cancelled",
    "my_response_type",
    "organizer",
    "required_attendees",
    "optional_attendees",
    "text_body",
)


class ExchangeOnlineRefused(ProviderError):
    """An Exchange Online (Microsoft 365) server was given: that mailbox belongs to the Graph source."""

    exit_code = 2


class ExchangeRetryPolicy(FaultTolerance):  # type: ignore[misc]
    """exchangelib's FaultTolerance, except that an HTTP 401 is a login failure, not a hint to back off
    (FaultTolerance retries 401s as throttling for up to ``max_wait``: a wrong password would look like a
    busy server for minutes)."""

    def raise_response_errors(self, response: requests.Response) -> None:
        if response.status_code == 401:
            raise UnauthorizedError(f"Invalid credentials for {response.url}")
        super().raise_response_errors(response)


def _patch_sync_error_parsing() -> None:
    """exchangelib 5.6 reads <m:SyncState> and <m:IncludesLastItemInRange> of a SyncFolderItems answer before
    its ResponseCode, so an error answer without them (ErrorServerBusy, ErrorInvalidSyncStateData) raises
    AttributeError instead of the error: throttling then could not be retried. Let such answers reach the
    normal error handling."""
    from exchangelib.services.sync_folder_hierarchy import SyncFolder
    from exchangelib.util import MNS

    original = SyncFolder._get_element_container
    if getattr(original, "_inkless_patched", False):
        return

    def _get_element_container(self: Any, message: Any, name: Any = None) -> Any:
        if message.find(f"{{{MNS}}}SyncState") is None or message.find(self.last_in_range_name) is None:
            return super(SyncFolder, self)._get_element_container(message=message, name=name)
        return original(self, message, name)

    _get_element_container._inkless_patched = True  # type: ignore[attr-defined]
    SyncFolder._get_element_container = _get_element_container


_patch_sync_error_parsing()


def is_exchange_online(server: str) -> bool:
    host = (urlsplit(server).hostname if "://" in server else server.split("/")[0].split(":")[0]) or ""
    host = host.lower().rstrip(".")
    return host in _ONLINE_HOSTS or host.endswith(_ONLINE_SUFFIXES)


def _parse_job(job: tuple[bytes, str]) -> Item:
    """Top-level (picklable) worker for the engine's parallel map."""
    raw, pid = job
    return parse_message(raw, pid, pid)


class ExchangeSource(Source):
    """An on-premises Exchange mailbox. ``account`` replaces the default exchangelib Account built from
    the settings (tests pass one pointed at a mocked endpoint)."""

    kind = "exchange"

    def __init__(
        self, location: str, owner: str, settings: dict[str, Any] | None = None, account: Account | None = None
    ) -> None:
        super().__init__(location, owner, settings)
        server = str(self.settings.get("server") or "")
        if not server and location and location.lower() != self.owner:
            url = urlsplit(location) if "://" in location else None
            if url is None:
                server = location if "@" not in location else location.rpartition("@")[2]
            elif url.scheme.lower() in ("http", "https"):
                server = location
            else:  # exchange://user@host
                server = url.hostname or ""
        self.server = server.strip()
        if self.server and is_exchange_online(self.server):
            raise ExchangeOnlineRefused(
                f"{self.server} is Exchange Online (Microsoft 365); its EWS is being switched off, so inkless reads "
                f"it through Microsoft Graph: run `inkless connect microsoft --owner {self.owner}`"
            )
        self.user = str(self.settings.get("user") or self.owner)
        self.auth = str(self.settings.get("auth") or "ntlm").lower()
        if self.auth not in ("ntlm", "basic", "oauth"):
            raise ProviderError(f"Exchange auth must be ntlm, basic or oauth, not {self.auth!r}")
        try:
            self.max_wait = float(self.settings.get("max_wait", DEFAULT_MAX_WAIT))
            self.timeout = float(self.settings.get("timeout", 120))
            self.calendar_every = float(self.settings.get("calendar_every", DEFAULT_CALENDAR_EVERY))
        except (TypeError, ValueError):
            raise ProviderError("Exchange max_wait, timeout and calendar_every must be numbers of seconds") from None
        self.read_calendar = bool(self.settings.get("calendar", True))
        self._account = account

    # -- connecting --------------------------------------------------------------------------------
    @property
    def reconnect(self) -> str:
        server = self.server or "<server>"
        return f"inkless connect exchange --owner {self.owner} --server {server}"

    def _secret_ref(self) -> str | None:
        """Where ``inkless connect exchange`` stored the password (or OAuth token): ``token_ref`` as
        agent/connect.py writes it, ``password_ref`` accepted too."""
        ref = self.settings.get("token_ref") or self.settings.get("password_ref")
        return str(ref) if ref else None

    def _credentials(self) -> Any:
        if self.auth == "oauth":
            ref = self._secret_ref()
            if not ref:
                raise AuthExpired(f"Exchange source {self.owner} has no stored OAuth token: run `{self.reconnect}`")
            token = json.loads(load_secret(str(ref), self.reconnect))
            return OAuth2AuthorizationCodeCredentials(
                client_id=self.settings.get("client_id"),
                client_secret=None,
                tenant_id=self.settings.get("tenant_id"),
                access_token=token,
            )
        password = resolve_password(self.settings)
        ref = self._secret_ref()
        if password is None and ref:
            password = load_secret(ref, self.reconnect)
        if password is None:
            raise AuthExpired(
                f"Exchange source {self.owner} has no password (set password_cmd or password_env, "
                f"or run `{self.reconnect}`)"
            )
        return Credentials(self.user, password)

    def _default_account(self) -> Account:
        auth_type = {"ntlm": NTLM, "basic": BASIC, "oauth": OAUTH2}[self.auth]
        config_args: dict[str, Any] = {
            "credentials": self._credentials(),
            "auth_type": auth_type,
            "retry_policy": ExchangeRetryPolicy(max_wait=self.max_wait),
        }
        if self.server:
            if "://" in self.server:
                config_args["service_endpoint"] = self.server
            else:
                config_args["server"] = self.server
            return Account(self.owner, config=Configuration(**config_args), autodiscover=False, access_type=DELEGATE)
        if not self.settings.get("autodiscover"):
            raise ProviderError(
                f"Exchange source {self.owner} has no server: run `inkless connect exchange --owner {self.owner} "
                "--server <host>` (or set autodiscover)"
            )
        return Account(self.owner, config=Configuration(**config_args), autodiscover=True, access_type=DELEGATE)

    def _acc(self) -> Account:
        if self._account is None:
            with self._translated("connecting"):
                self._account = self._default_account()
        return self._account

    @contextlib.contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """Every exchangelib / requests failure leaves here as one ProviderError."""
        try:
            yield
        except ProviderError:
            raise
        except Exception as exc:
            raise self._translate(exc, what) from None

    def _translate(self, exc: BaseException, what: str) -> ProviderError:
        where = self.server or "the Exchange server"
        chain = _chain(exc)
        if any(isinstance(e, UnauthorizedError) for e in chain) or any("HTTP 401" in str(e) for e in chain):
            return AuthExpired(f"Exchange refused the login of {self.user} at {where}: run `{self.reconnect}`")
        if any(isinstance(e, ErrorInvalidSyncStateData) for e in chain):
            return CursorExpired(f"Exchange no longer accepts the saved sync state ({what})")
        if isinstance(exc, RateLimitError):
            cause = next(
                (e for e in chain[1:] if isinstance(e, (ErrorTimeoutExpired, requests.RequestException))), None
            )
            if cause is not None:
                return Unreachable(f"Exchange server {where} did not answer while {what}: {_reason(cause)}")
            transient = next((e for e in chain[1:] if isinstance(e, ErrorInternalServerTransientError)), None)
            if transient is not None:
                return Unreachable(f"Exchange server {where} kept failing while {what}: {_reason(transient)}")
            wait = float(getattr(exc, "wait", 0) or 0) or None
            return RateLimited(
                f"Exchange server {where} is throttling us (asked to wait {wait or 0:.0f} s, more than the "
                f"{self.max_wait:.0f} s we wait)",
                retry_after=wait,
            )
        if isinstance(exc, ErrorServerBusy):
            back_off = getattr(exc, "back_off", None)
            return RateLimited(f"Exchange server {where} is busy", retry_after=float(back_off) if back_off else None)
        if isinstance(exc, (ErrorTimeoutExpired, requests.RequestException, OSError)):
            return Unreachable(f"cannot reach Exchange server {where} while {what}: {_reason(exc)}")
        if isinstance(exc, (ErrorMailboxStoreUnavailable, ErrorInternalServerTransientError)):
            return Unreachable(f"Exchange server {where} is unavailable while {what}: {_reason(exc)}")
        if isinstance(exc, (ErrorNonExistentMailbox, ErrorAccessDenied, ErrorFolderNotFound)):
            return ProviderError(f"Exchange refused {what} for {self.owner} at {where}: {_reason(exc)}")
        if isinstance(exc, CASError | RedirectError):
            return Unreachable(f"Exchange server {where} answered with an error page while {what}: {_reason(exc)}")
        if isinstance(exc, MalformedResponseError):
            status = _status_of(str(exc))
            if status and status >= 500:
                return Unreachable(f"Exchange server {where} answered HTTP {status} while {what}")
            return ProviderError(f"Exchange server {where} sent an unreadable answer while {what}: {_reason(exc)}")
        if isinstance(exc, ResponseMessageError | TransportError | EWSError):
            return ProviderError(f"Exchange server {where} refused {what}: {_reason(exc)}")
        if isinstance(exc, AttributeError | KeyError | TypeError | ValueError):
            # exchangelib 5.6 trips over some malformed answers (an error message without <m:SyncState/>
            # raises AttributeError); for a sync the only safe reading is "start again"
            if what.startswith("syncing"):
                return CursorExpired(f"Exchange sent a malformed answer while {what} ({type(exc).__name__})")
            return ProviderError(f"Exchange sent a malformed answer while {what} ({type(exc).__name__})")
        return ProviderError(f"Exchange failed while {what}: {_reason(exc)}")

    # -- the contract ------------------------------------------------------------------------------
    def check(self) -> None:
        acc = self._acc()
        with self._translated("opening the inbox"):
            _ = acc.inbox.id

    def folder_of(self, provider_id: str) -> str | None:
        return "Calendar" if provider_id.startswith(CAL_PREFIX) else None

    def close(self) -> None:
        if self._account is not None:
            with contextlib.suppress(Exception):
                self._account.protocol.close()

    def batches(self, cursor: dict[str, Any] | None, ctx: SyncContext) -> Iterator[Batch]:
        previous = (cursor or {}).get("folders")
        folders: dict[str, dict[str, Any]] = {}
        if isinstance(previous, dict):
            for key, st in previous.items():
                if isinstance(st, dict) and isinstance(st.get("state"), str):
                    folders[key] = {"state": st["state"]}
        cal_prev = (cursor or {}).get("calendar")
        calendar: dict[str, Any] = dict(cal_prev) if isinstance(cal_prev, dict) else {}

        def snapshot() -> dict[str, Any]:
            return {"folders": {k: dict(v) for k, v in folders.items()}, "calendar": dict(calendar)}

        acc = self._acc()
        for key, attr in MAIL_FOLDERS:
            if ctx.stopping():
                return
            with self._translated(f"opening {key}"):
                folder = getattr(acc, attr)
            yield from self._sync_folder(acc, key, folder, folders, snapshot, ctx)
        if self.read_calendar and not ctx.stopping() and self._calendar_due(calendar, ctx.now):
            batch = self._calendar_batch(acc, calendar, ctx)
            calendar.update(synced_at=ctx.now.isoformat(), count=len(batch.items))
            yield Batch(items=batch.items, cursor=snapshot(), window=batch.window, complete_for=batch.complete_for)

    def fetch(self, locator: str, ctx: SyncContext) -> Item | None:
        if locator.startswith(CAL_PREFIX):
            return None  # meetings are re-read whole with the next calendar view
        items = self._fetch_mail(self._acc(), [locator], ctx)
        return items[0] if items else None

    # -- mail --------------------------------------------------------------------------------------
    def _sync_folder(
        self,
        acc: Account,
        key: str,
        folder: Any,
        folders: dict[str, dict[str, Any]],
        snapshot: Any,
        ctx: SyncContext,
    ) -> Iterator[Batch]:
        state = folders.get(key, {}).get("state") or None
        # the folder object may be cached by the account and remember an older pass: say exactly where to start
        folder.item_sync_state = state
        what = f"syncing {key}"
        changes = folder.sync_items(sync_state=state, only_fields=[], max_changes_returned=SYNC_PAGE)
        seen: set[str] = set()
        pending: list[str] = []
        while True:
            with self._translated(what):
                step = next(changes, None)
            if step is None:
                break
            change, item = step
            if change not in ("create", "update"):
                continue  # deletions and read flags: deleted mail stays logged
            item_id = getattr(item, "id", None)
            if not item_id or item_id in seen:
                continue
            seen.add(item_id)
            pending.append(item_id)
            if len(pending) >= ctx.batch_size:
                items = self._new_items(acc, pending, ctx)
                pending = []
                if items:
                    yield Batch(items=tuple(items), cursor=snapshot())
                if ctx.stopping():
                    return  # the pass is not complete: its state is not saved, the next run replays it
        items = self._new_items(acc, pending, ctx) if pending else []
        new_state = folder.item_sync_state
        if not isinstance(new_state, str) or not new_state:
            raise CursorExpired(f"Exchange ended the {key} sync without a sync state")
        folders[key] = {"state": new_state}
        yield Batch(items=tuple(items), cursor=snapshot())

    def _new_items(self, acc: Account, ids: list[str], ctx: SyncContext) -> list[Item]:
        known = ctx.is_known(list(ids))
        fresh = [i for i in ids if i not in known]
        return self._fetch_mail(acc, fresh, ctx) if fresh else []

    def _fetch_mail(self, acc: Account, ids: list[str], ctx: SyncContext) -> list[Item]:
        with self._translated("fetching messages"):
            fetched = list(acc.fetch(ids=[(i, None) for i in ids], only_fields=["mime_content"]))
        jobs: list[tuple[bytes, str]] = []
        out: list[Item] = []
        slots: list[int] = []
        for item_id, got in zip(ids, fetched, strict=False):
            if isinstance(got, ErrorItemNotFound):
                continue  # deleted between the sync and the fetch: never seen, nothing to log
            if isinstance(got, Exception):
                out.append(Quarantined(item_id, item_id, _one_line(f"Exchange could not return it: {_reason(got)}")))
                continue
            raw = getattr(got, "mime_content", None)
            if isinstance(raw, str):
                raw = raw.encode("utf-8", "replace")
            if not isinstance(raw, bytes) or not raw.strip():
                out.append(Quarantined(item_id, item_id, "Exchange returned no MIME content for this item"))
                continue
            slots.append(len(out))
            out.append(Quarantined(item_id, item_id, "placeholder"))
            jobs.append((raw, item_id))
        for slot, parsed in zip(slots, ctx.pmap(_parse_job, jobs), strict=True):
            out[slot] = parsed
        return out

    # -- calendar ----------------------------------------------------------------------------------
    def _calendar_due(self, calendar: dict[str, Any], now: datetime) -> bool:
        last = calendar.get("synced_at")
        if not isinstance(last, str):
            return True
        try:
            when = datetime.fromisoformat(last)
        except ValueError:
            return True
        return not (timedelta(0) <= now - when < timedelta(seconds=self.calendar_every))

    def _calendar_batch(self, acc: Account, calendar: dict[str, Any], ctx: SyncContext) -> Batch:
        start, end = sync_window(ctx.now)
        utc = EWSTimeZone("UTC")
        with self._translated("reading the calendar"):
            folder = acc.calendar
            # TextBody exists from Exchange 2013 on; older servers would refuse the whole view
            fields = [f for f in _CAL_FIELDS if f != "text_body" or acc.version.build >= EXCHANGE_2013]
            view = folder.view(
                start=EWSDateTime.from_datetime(start).astimezone(utc),
                end=EWSDateTime.from_datetime(end).astimezone(utc),
            ).only(*fields)
            found = list(view)
        items: dict[str, Item] = {}
        for ev in found:
            if isinstance(ev, ErrorItemNotFound):
                continue  # deleted between FindItem and GetItem
            if isinstance(ev, Exception):
                log.warning("Exchange calendar item unreadable: %s", _reason(ev))
                continue
            try:
                item = self._meeting(ev)
            except Exception as exc:  # noqa: BLE001 - one odd meeting must not stop the calendar
                uid = str(getattr(ev, "uid", "") or getattr(ev, "id", "") or "unknown")
                pid = f"{CAL_PREFIX}{uid}|"
                items[pid] = Quarantined(pid, pid, _one_line(f"meeting {uid}: {_reason(exc)}"))
                continue
            if item is not None and start <= item.start <= end:
                items[item.provider_id] = item
        before = calendar.get("count")
        if not items and isinstance(before, int) and before > 0 and not self.settings.get("confirm_empty"):
            # safety rail: a calendar that suddenly lists nothing removes nothing until a person confirms
            raise ProviderError(
                f"the Exchange calendar of {self.owner} now lists no meetings where it had {before}; nothing was "
                "removed. If that is right, confirm it with: inkless source confirm-empty <source id>"
            )
        return Batch(items=tuple(items.values()), cursor={}, window=(start, end), complete_for=(CAL_PREFIX,))

    def _meeting(self, ev: Any) -> CalendarItem | None:
        uid = printable(str(ev.uid or "")).strip()
        if not uid:
            uid = f"{hashlib.sha1(str(ev.id).encode()).hexdigest()}@inkless.invalid"
        tz = getattr(ev, "_start_timezone", None)
        all_day = bool(ev.is_all_day)
        begin = _utc(ev.start, tz)
        if begin is None:
            raise ValueError("no start")
        end = _utc(ev.end, getattr(ev, "_end_timezone", None) or tz)
        if all_day and end is not None and isinstance(ev.end, date) and not isinstance(ev.end, datetime):
            end += timedelta(days=1)  # exchangelib gives the last day; iCalendar's DTEND is exclusive
        recurrence_id: datetime | None = None
        if ev.type in ("Occurrence", "Exception"):
            recurrence_id = _utc(ev.recurrence_id or ev.original_start, tz) or begin
        key = f"{uid}|{recurrence_id.isoformat() if recurrence_id else ''}"
        organizer = _person(ev.organizer, "organizer")
        attendees: list[Participant] = []
        for a in [*(ev.required_attendees or []), *(ev.optional_attendees or [])]:
            p = _person(getattr(a, "mailbox", None), "attendee", _PARTSTAT.get(str(a.response_type or "")))
            if p is not None and all(p.email != q.email for q in attendees):
                attendees.append(p)
        if ev.my_response_type == "Decline":
            # the owner declined: the classifier reads that from the owner's own PARTSTAT
            mine = [p for p in attendees if p.email == self.owner]
            attendees = [p for p in attendees if p.email != self.owner]
            name = mine[0].name if mine else None
            attendees.append(Participant(self.owner, name, "attendee", "DECLINED"))
        status = "CANCELLED" if ev.is_cancelled else "CONFIRMED"
        summary = printable(str(ev.subject or "")).strip()
        description = printable(str(ev.text_body or ""))[:DESCRIPTION_MAX]
        fields = [summary, description, organizer, attendees, status, begin, end, all_day]
        digest = hashlib.sha1(json.dumps(fields, default=_jsonable).encode()).hexdigest()
        pid = CAL_PREFIX + key
        return CalendarItem(
            provider_id=pid,
            locator=pid,
            ical_uid=uid,
            recurrence_id=recurrence_id,
            start=begin,
            end=end,
            summary=summary,
            description=description,
            organizer=organizer,
            attendees=tuple(attendees),
            status=status,
            all_day=all_day,
            content_hash=digest,
        )


# -- helpers -------------------------------------------------------------------------------------------


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 10:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return _one_line(line, 200) or type(exc).__name__


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(printable(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _status_of(text: str) -> int | None:
    marker = "Code: "
    at = text.find(marker)
    if at < 0:
        return None
    digits = text[at + len(marker) : at + len(marker) + 3]
    return int(digits) if digits.isdigit() else None


def _utc(value: Any, tz: Any = None) -> datetime | None:
    """A plain UTC datetime (exchangelib's EWSDateTime refuses non-EWS zones); a date is midnight in ``tz``."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        zone: Any = UTC
        if tz is not None:
            with contextlib.suppress(Exception):
                zone = ZoneInfo(str(getattr(tz, "key", tz)))
        value = datetime.combine(value, time(), tzinfo=zone)
    plain = datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        tzinfo=value.tzinfo or UTC,
    )
    return plain.astimezone(UTC)


def _person(mailbox: Any, role: str, partstat: str | None = None) -> Participant | None:
    if mailbox is None:
        return None
    email = str(getattr(mailbox, "email_address", "") or "").strip().lower()
    if "@" not in email or " " in email:
        return None
    name = printable(str(getattr(mailbox, "name", "") or "")).strip() or None
    return Participant(email=email, name=name, role=role, partstat=partstat if role == "attendee" else None)


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Participant):
        return [value.email, value.name, value.role, value.partstat]
    return str(value)
