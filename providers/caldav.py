"""CalDAV calendars (RFC 4791) as a calendar source, kept in step with RFC 6578 sync tokens.

The location is a CalDAV URL: the server root, a principal or one calendar collection. Settings: ``user``,
``password_cmd`` or ``password_env`` (see :mod:`providers.secrets`; the password is never stored, logged
or put in an error), ``calendar`` (a display name or collection id; default every calendar of the
principal that holds events) and ``timezone`` (the zone of floating times and all-day dates; default the
calendar's CALDAV:calendar-timezone, else UTC). The caldav client is injectable (``client=``).

Items are exactly the ICS source's (same expansion, same window ``[now - 180 days, now + 30 days]``),
with the calendar's collection id in front of the provider id: ``calendar|UID|RECURRENCE-ID``, so the
engine's UID + RECURRENCE-ID dedupe spans .ics files, CalDAV and cloud calendars. The locator is the
object's URL, then ``#`` and ``UID|RECURRENCE-ID`` (fetch needs to know the occurrence as well as the
object). :meth:`CaldavSource.folder_of` gives the calendar.

The cursor is ``{"folders": {calendar: {"token", "window", "hrefs", "verified_through"}}}``: the sync
token, the window's first day, object name -> UID (a deleted object comes back as its URL only) and when
a full listing last proved the calendar complete. Per calendar and run:

* first sync, a new window day, or a token the server no longer accepts (403/412 DAV:valid-sync-token;
  said in a log line, never a silent fallback): a full listing, one batch holding every occurrence in the
  window with ``complete_for=("calendar|",)``, so occurrences that vanished are removed. A listing that is
  suddenly empty where the last one had objects removes nothing and raises ProviderError instead, until a
  person confirms (``confirm_empty`` setting), like the engine's rail for snapshots;
* otherwise the changes since the token: changed objects expanded, ``complete_for`` one ``calendar|UID|``
  prefix per changed or deleted object; nothing changed, no batch.

A server without sync-collection gets a full listing on every run (said in a log line).

An object that cannot be read becomes Quarantined with a one-line reason and its stored occurrences are
kept (its prefix is left out of ``complete_for``); the rest goes on.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, cast
from urllib.parse import unquote, urlsplit, urlunsplit

from caldav.calendarobjectresource import Event
from caldav.collection import Calendar, Principal
from caldav.davclient import DAVClient
from caldav.elements import cdav, dav
from caldav.lib import error as dav_error

from .base import Source, SyncContext
from .errors import AuthExpired, InklessError, ProviderError, RateLimited, Unreachable
from .ics import _as_utc, _one_line, _unfold, _zone, expand, redact, sync_window
from .records import Batch, CalendarItem, Item, Quarantined
from .secrets import resolve_password

log = logging.getLogger("inkless.caldav")

TIMEOUT = 30
_CALENDAR_TYPE = "{urn:ietf:params:xml:ns:caldav}calendar"
_UID_LINE = re.compile(rb"(?im)^UID(?:;[^:\r\n]*)?:[ \t]*(.*?)[ \t]*\r?$")
_TZID_LINE = re.compile(r"(?im)^TZID(?:;[^:\r\n]*)?:[ \t]*(.*?)[ \t]*\r?$")


@dataclass(frozen=True)
class _Calendar:
    id: str  # the collection's last path segment: provider-id prefix and folder
    name: str  # display name, for messages
    tz: tzinfo
    events: bool  # False for a task list or journal (supported-calendar-component-set without VEVENT)
    handle: Calendar


@dataclass(frozen=True)
class _Read:
    """One object turned into records: its items, its UID and whether it could be read."""

    items: list[Item]
    uid: str
    broken: bool


class CaldavSource(Source):
    """The calendars of one rep on a CalDAV server (Radicale, Nextcloud, iCloud, Fastmail, SOGo, ...)."""

    kind = "caldav"

    def __init__(
        self,
        location: str,
        owner: str,
        settings: dict[str, Any] | None = None,
        client: DAVClient | None = None,
    ) -> None:
        super().__init__(location, owner, settings)
        self._client = client
        parts = urlsplit(location)
        # credentials never travel in the URL: the user comes from settings (or the URL), the password
        # from password_cmd / password_env only
        self.url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        self.user: str | None = self.settings.get("user") or (unquote(parts.username) if parts.username else None)
        #: how the location appears in messages and logs: never with credentials or query strings
        self.display = redact(location)
        self.timezone = _zone(self.settings.get("timezone"))

    # -- Source contract -------------------------------------------------------------------------------

    def check(self) -> None:
        with self._session() as client, self._errors("this URL"):
            calendars = self._calendars(client)
        if not calendars:
            raise ProviderError(f"{self.display}: no calendars with events found")

    def batches(self, cursor: dict[str, Any] | None, ctx: SyncContext) -> Iterator[Batch]:
        window = sync_window(ctx.now)
        day = window[0].date().isoformat()
        previous = (cursor or {}).get("folders") or {}
        with self._session() as client:
            with self._errors("this URL"):
                calendars = self._calendars(client)
            # calendars that are gone drop out of the cursor; their stored meetings stay (no silent wipe)
            state: dict[str, dict[str, Any]] = {
                c.id: previous[c.id] for c in calendars if isinstance(previous.get(c.id), dict)
            }
            for cal in calendars:
                if ctx.stopping():
                    return
                with self._errors(f"calendar {cal.name!r}"):
                    result = self._sync(cal, state.get(cal.id), window, day, ctx)
                if result is None:
                    continue
                items, entry, complete = result
                state[cal.id] = entry
                yield Batch(
                    items=tuple(items),
                    cursor={"folders": dict(state)},
                    window=window,
                    complete_for=complete,
                    total_hint=len(items),
                )

    def fetch(self, locator: str, ctx: SyncContext) -> Item | None:
        href, sep, key = locator.partition("#")
        uid, bar, rid_text = key.rpartition("|")
        if not sep or not bar or not uid:
            return None
        if rid_text:
            try:
                rid = _as_utc(datetime.fromisoformat(rid_text))
            except ValueError:
                return None
            # an override may have moved its occurrence away from its original start, so look widely
            window = (rid - timedelta(days=400), rid + timedelta(days=400))
        else:
            window = (datetime(1900, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
        calendar_url = href.rsplit("/", 1)[0] + "/"
        with self._session() as client, self._errors("the event"):
            handle = Calendar(client=client, url=calendar_url)
            cal = self._describe(handle)
            obj = Event(client=client, url=href, parent=handle)
            try:
                obj.load(multiget_fallback=False)
            except dav_error.NotFoundError:
                return None
        data = _data_of(obj)
        if data is None:
            return None
        try:
            found = expand(data, window, cal.tz, only_uid=uid, singles_only=not rid_text)
        except Exception:  # noqa: BLE001 - unreadable now: nothing to fetch
            return None
        for item in found:
            if isinstance(item, CalendarItem) and item.provider_id == key:
                return replace(item, provider_id=f"{cal.id}|{key}", locator=f"{href}#{key}")
        return None

    def folder_of(self, provider_id: str) -> str | None:
        folder, sep, _ = provider_id.partition("|")
        return folder if sep else None

    # -- one calendar ----------------------------------------------------------------------------------

    def _sync(
        self,
        cal: _Calendar,
        old: dict[str, Any] | None,
        window: tuple[datetime, datetime],
        day: str,
        ctx: SyncContext,
    ) -> tuple[list[Item], dict[str, Any], tuple[str, ...]] | None:
        """The items, new cursor entry and complete_for prefixes of one calendar; None if nothing changed."""
        hrefs: dict[str, str] = dict((old or {}).get("hrefs") or {})
        token = (old or {}).get("token")
        if old is None:
            reason = "first sync"
        elif old.get("window") != day:
            reason = "the sync window moved to a new day"
        elif not token:
            reason = "the server offers no sync token"
        else:
            try:
                listing = cal.handle.get_objects_by_sync_token(
                    sync_token=token, load_objects=True, disable_fallback=True
                )
            except dav_error.DAVError as exc:
                if not _token_rejected(exc):
                    raise
                log.warning(
                    "%s: calendar %r: the server no longer accepts the saved sync token (HTTP %s); "
                    "doing a full resync of the calendar",
                    self.display,
                    cal.name,
                    exc.status or "?",
                )
                reason = "the sync token expired"
            else:
                return self._changes(cal, listing, hrefs, token, window, day, old.get("verified_through"))
        log.info("%s: calendar %r: full listing (%s)", self.display, cal.name, reason)
        return self._full(cal, hrefs, window, day, ctx)

    def _full(
        self, cal: _Calendar, old_hrefs: dict[str, str], window: tuple[datetime, datetime], day: str, ctx: SyncContext
    ) -> tuple[list[Item], dict[str, Any], tuple[str, ...]]:
        try:
            listing = cal.handle.get_objects_by_sync_token(load_objects=True, disable_fallback=True)
        except dav_error.DAVError as exc:
            if isinstance(exc, dav_error.AuthorizationError | dav_error.NotFoundError | dav_error.RateLimitError):
                raise
            # no sync-collection REPORT on this server: list every object, every time (said, not silent)
            log.warning(
                "%s: calendar %r: the server does not support sync tokens (HTTP %s); listing every object",
                self.display,
                cal.name,
                exc.status or "?",
            )
            listing = cal.handle.get_objects_by_sync_token(load_objects=True)
        objects = _present(listing)
        confirmed = bool(self.settings.get("confirm_empty"))
        if not objects and old_hrefs and not confirmed:
            raise ProviderError(
                f"{self.display}: calendar {cal.name!r} now lists no events where it had {len(old_hrefs)}; "
                "nothing was removed. If that is right, run `inkless source confirm-empty` for this source"
            )
        items: list[Item] = []
        hrefs: dict[str, str] = {}
        good: set[str] = set()
        broken: set[str] = set()
        for obj, data in objects:
            name = _name(obj.url)
            read = self._read(cal, obj, data, window, old_hrefs.get(name))
            items.extend(read.items)
            hrefs[name] = read.uid
            (broken if read.broken else good).add(read.uid)
        if not objects:
            # nothing listed: remove what was stored only once a person confirmed the calendar is empty
            complete: tuple[str, ...] = (f"{cal.id}|",) if confirmed else ()
        elif broken:
            # a prefix per readable or vanished object, so the unreadable ones keep what was stored
            complete = tuple(f"{cal.id}|{uid}|" for uid in sorted((good | set(old_hrefs.values())) - broken))
        else:
            complete = (f"{cal.id}|",)
        return items, _entry(listing, hrefs, day, _as_utc(ctx.now).isoformat()), complete

    def _changes(
        self,
        cal: _Calendar,
        listing: Any,
        hrefs: dict[str, str],
        token: str,
        window: tuple[datetime, datetime],
        day: str,
        verified: str | None,
    ) -> tuple[list[Item], dict[str, Any], tuple[str, ...]] | None:
        objects = _present(listing)
        if not objects and not listing.deleted_urls and listing.sync_token == token:
            return None
        touched: set[str] = set()
        broken: set[str] = set()
        for url in listing.deleted_urls:
            uid = hrefs.pop(_name(url), None)
            if uid is not None:  # an object we never listed (or a deletion reported twice) names nothing
                touched.add(uid)
        items: list[Item] = []
        for obj, data in objects:
            name = _name(obj.url)
            before = hrefs.get(name)
            read = self._read(cal, obj, data, window, before)
            items.extend(read.items)
            hrefs[name] = read.uid
            if before is not None and before != read.uid:
                touched.add(before)  # the object now holds another UID: the old series is gone
            (broken if read.broken else touched).add(read.uid)
        complete = tuple(f"{cal.id}|{uid}|" for uid in sorted(touched - broken))
        return items, _entry(listing, hrefs, day, verified), complete

    def _read(
        self, cal: _Calendar, obj: Any, data: bytes, window: tuple[datetime, datetime], known_uid: str | None
    ) -> _Read:
        href = str(obj.url)
        name = _name(obj.url)
        try:
            found = expand(data, window, cal.tz)
        except Exception as exc:  # noqa: BLE001 - one bad object must not stop the calendar
            uid = _uid_in(data) or known_uid or name
            reason = _one_line(f"{cal.name}/{name}: cannot parse calendar object: {exc or type(exc).__name__}")
            return _Read([Quarantined(f"{cal.id}|{uid}|", f"{href}#{uid}|", reason)], uid, True)
        items: list[Item] = []
        uid = ""
        broken = False
        for entry in found:
            if isinstance(entry, Quarantined):
                uid = uid or entry.provider_id.rpartition("|")[0]
                broken = True
                reason = _one_line(f"{cal.name}/{name}: {entry.reason}")
                items.append(Quarantined(f"{cal.id}|{entry.provider_id}", f"{href}#{entry.provider_id}", reason))
            elif isinstance(entry, CalendarItem):
                uid = uid or entry.ical_uid
                items.append(
                    replace(entry, provider_id=f"{cal.id}|{entry.provider_id}", locator=f"{href}#{entry.provider_id}")
                )
        # nothing in the window: the UID still has to be known to turn a later deletion into a prefix
        return _Read(items, uid or _uid_in(data) or known_uid or name, broken)

    # -- connection and discovery ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _session(self) -> Iterator[DAVClient]:
        if self._client is not None:
            yield self._client
            return
        password = resolve_password(self.settings)
        client = DAVClient(url=self.url, username=self.user, password=password, timeout=TIMEOUT, enable_rfc6764=False)
        try:
            yield client
        finally:
            client.close()

    def _calendars(self, client: DAVClient) -> list[_Calendar]:
        """The calendars to read: the location itself if it is one, else the principal's event calendars."""
        target = Calendar(client=client, url=self.url)
        props = _props(target, [dav.ResourceType(), dav.CurrentUserPrincipal()])
        if _CALENDAR_TYPE in (props.get(dav.ResourceType.tag) or []):
            handles = [target]
        else:
            principal_url = props.get(dav.CurrentUserPrincipal.tag) or self.url
            principal = Principal(client=client, url=client.url.join(principal_url))
            handles = cast(list[Calendar], principal.get_calendars())
        found = [self._describe(handle) for handle in handles]
        wanted = self.settings.get("calendar")
        if not wanted:
            return [cal for cal in found if cal.events]
        chosen = [cal for cal in found if wanted in (cal.id, cal.name, str(cal.handle.url))]
        if not chosen:
            names = ", ".join(sorted(repr(cal.name) for cal in found)) or "none"
            raise ProviderError(f"{self.display}: no calendar named {wanted!r} (calendars found: {names})")
        return chosen

    def _describe(self, handle: Calendar) -> _Calendar:
        """A calendar's id, display name, zone and whether it holds events (one PROPFIND)."""
        props = _props(handle, [dav.DisplayName(), cdav.CalendarTimeZone(), cdav.SupportedCalendarComponentSet()])
        components = props.get(cdav.SupportedCalendarComponentSet.tag)
        events = not isinstance(components, list) or not components or "VEVENT" in components
        cal_id = _calendar_id(str(handle.url))
        name = str(props.get(dav.DisplayName.tag) or cal_id)
        tz = self.timezone or _calendar_zone(props.get(cdav.CalendarTimeZone.tag)) or UTC
        return _Calendar(cal_id, name, tz, events, handle)

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Translate caldav and network exceptions into inkless errors, once, with no secret in them."""
        try:
            yield
        except InklessError:
            raise
        except dav_error.AuthorizationError as exc:
            if exc.status == 401 or (exc.status is None and "unauthorized" in str(exc.reason).lower()):
                who = f" for user {self.user}" if self.user else ""
                raise AuthExpired(
                    f"{self.display}: the server refused the login{who} (HTTP 401); check the user and password"
                ) from None
            raise ProviderError(f"{self.display}: access to {what} is forbidden (HTTP {exc.status or 403})") from None
        except dav_error.RateLimitError as exc:
            raise RateLimited(
                f"{self.display}: the server asks us to slow down (HTTP {exc.status or 429})", exc.retry_after_seconds
            ) from None
        except dav_error.NotFoundError:
            raise Unreachable(f"{self.display}: {what} was not found (HTTP 404)") from None
        except dav_error.DAVError as exc:
            # caldav puts the server's status line in ``url`` or ``reason``, depending on where it was raised
            text = next((t for t in (str(exc.reason), str(exc.url or "")) if t.strip() and t != "no reason"), "")
            detail = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
            status = f"HTTP {exc.status}: " if exc.status else ""
            raise ProviderError(
                _one_line(redact(f"{self.display}: reading {what} failed ({status}{detail})"))
            ) from None
        except OSError as exc:  # niquests/requests ConnectionError, Timeout, SSLError are OSErrors
            raise Unreachable(f"{self.display}: cannot reach the server ({_network_reason(exc)})") from None


# -- helpers -------------------------------------------------------------------------------------------


def _entry(listing: Any, hrefs: dict[str, str], day: str, verified: str | None) -> dict[str, Any]:
    """A calendar's cursor entry; ``verified`` is when a full listing last proved it complete."""
    token = listing.sync_token
    if not isinstance(token, str) or token.startswith("fake-"):
        token = None  # the library's emulated token: the next run lists everything again
    return {"token": token, "window": day, "hrefs": hrefs, "verified_through": verified}


def _props(target: Calendar, props: list[Any]) -> dict[str, Any]:
    """Properties of a collection (one depth-0 PROPFIND); a property the server does not have is None."""
    return cast(dict[str, Any], target.get_properties(props))


def _present(listing: Any) -> list[tuple[Any, bytes]]:
    """The listed objects that still exist, with their data (a deleted one comes without)."""
    deleted = {str(u) for u in listing.deleted_urls}
    out = []
    for obj in listing.objects:
        if str(obj.url.canonical()) in deleted:
            continue
        data = _data_of(obj)
        if data:
            out.append((obj, data))
    return out


def _data_of(obj: Any) -> bytes | None:
    """The object as the server sent it (byte for byte after a GET), else as caldav holds it."""
    raw = obj.raw_data
    if raw:
        return bytes(raw)
    wire = obj.wire_data
    return bytes(wire) if wire else None


def _name(url: Any) -> str:
    """An object's name inside its calendar (the last path segment, decoded): the key of the href map."""
    return unquote(urlsplit(str(url)).path.rstrip("/").rsplit("/", 1)[-1])


def _calendar_id(url: str) -> str:
    """A calendar's id: its collection's last path segment, decoded, without the provider-id separator."""
    return _name(url).replace("|", "%7C") or "calendar"


def _calendar_zone(vtimezone: object) -> tzinfo | None:
    """The zone of a CALDAV:calendar-timezone value (a VCALENDAR holding one VTIMEZONE) if it is an IANA name."""
    if not isinstance(vtimezone, str):
        return None
    found = _TZID_LINE.search(vtimezone)
    return _zone(found.group(1)) if found else None


def _uid_in(data: bytes) -> str | None:
    found = _UID_LINE.search(_unfold(data))
    if found is None:
        return None
    return found.group(1).decode("utf-8", "replace").strip() or None


def _token_rejected(exc: dav_error.DAVError) -> bool:
    """An RFC 6578 DAV:valid-sync-token refusal: 403 (Radicale and most), 412 (Xandikos)."""
    return dav.ValidSyncToken.tag in exc.preconditions or exc.status in (403, 412)


def _network_reason(exc: OSError) -> str:
    text = str(exc)
    if found := re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text):
        return found.group(1).strip()
    if "resolve" in text.lower():
        return "host name not found"
    if "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
        return "timed out"
    return type(exc).__name__


__all__ = ["CaldavSource"]
