"""A Google Calendar (the Calendar API v3 through google-api-python-client) as a calendar source.

Items are exactly the ICS source's: Google events are turned into iCalendar VEVENTs (the master with
its ``recurrence`` lines, each exception as a VEVENT with RECURRENCE-ID from ``originalStartTime``, a
cancelled exception as an EXDATE on its master, as Google's own .ics export does) and expanded by
:func:`providers.ics.expand` over the same window ``[now - 180 days, now + 30 days]``. Provider id and
locator of an occurrence are therefore ``UID|RECURRENCE-ID`` as in the ICS and CalDAV sources, and the
same meeting read through Google and through an .ics export is one activity.

Sync (Google's sync guide): ``events.list(singleEvents=False, showDeleted=True)`` pages through the
whole calendar; ``nextSyncToken`` (last page only) is saved. That full listing is one *snapshot* batch
for the window (occurrences no longer listed are removed). Afterwards ``events.list(syncToken=...)``
returns the changed events only: every changed series is read again whole (``events.list(iCalUID=...)``:
its master and exceptions) and expanded, and its batch names ``UID|`` in ``complete_for`` so moved and
removed occurrences are replaced; a deleted event (``status: cancelled`` without ``recurringEventId``)
is its prefix with no items. A 410 (``fullSyncRequired``) raises :class:`CursorExpired` and the engine
resyncs. When the window moves to a new day the calendar is listed again in full (occurrences enter the
window without any event changing), as the CalDAV source does.

The owner's ``responseStatus`` becomes the PARTSTAT of their ATTENDEE (declined -> DECLINED) and an event's
``status`` the STATUS (cancelled -> CANCELLED), so classification skips what the rep declined.

Cursor: ``{"sync_token": str, "window": first day of the window, "tz": calendar zone,
"ids": {event id: iCalUID}}`` (deleted events come back as an id only). Errors are translated as for
Gmail (:class:`providers.gmail.GoogleApi`); one Google grant covers both, so the reconnect command is
``inkless connect gmail --owner OWNER``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar

from .base import Source, SyncContext
from .errors import CursorExpired, ProviderError
from .gmail import DEFAULT_RETRIES, GoogleApi, _status, build_service
from .ics import expand, sync_window
from .records import Batch, CalendarItem, Item, Quarantined

log = logging.getLogger("inkless.gcal")

#: events per events.list page (the API's maximum)
PAGE_MAX = 2500
_PARTSTAT = {
    "accepted": "ACCEPTED",
    "declined": "DECLINED",
    "tentative": "TENTATIVE",
    "needsAction": "NEEDS-ACTION",
}
_STATUS = {"confirmed": "CONFIRMED", "tentative": "TENTATIVE", "cancelled": "CANCELLED"}
_PLACEHOLDER = "X-INKLESS-RECURRENCE"


class GoogleCalendarSource(Source):
    """One Google calendar. Settings: ``token_ref`` (the stored OAuth grant, shared with Gmail),
    ``calendar`` (calendar id, default "primary"), ``api_endpoint`` (another API root), ``retries``.
    ``service`` replaces the default Resource built from the grant."""

    kind = "gcal"

    def __init__(
        self,
        location: str,
        owner: str,
        settings: dict[str, Any] | None = None,
        service: Any | None = None,
    ) -> None:
        super().__init__(location, owner, settings)
        self._service = service
        self.calendar_id = str(self.settings.get("calendar") or "primary")
        self.api = GoogleApi("Google Calendar", self.owner, int(self.settings.get("retries", DEFAULT_RETRIES)))

    # -- the SDK seam ------------------------------------------------------------------------------
    def _default_service(self) -> Any:
        return build_service("calendar", "v3", self.owner, self.settings, service_path="calendar/v3/")

    @property
    def service(self) -> Any:
        if self._service is None:
            self._service = self._default_service()
        return self._service

    # -- the contract ------------------------------------------------------------------------------
    def check(self) -> None:
        request = self.service.events().list(calendarId=self.calendar_id, maxResults=1)
        self.api.call(request, f"reading calendar {self.calendar_id}")

    def fetch(self, locator: str, ctx: SyncContext) -> Item | None:
        uid, _, rid_text = locator.rpartition("|")
        if not uid:
            return None
        events, tz = self._series_events(uid)
        if not events:
            return None
        if rid_text:
            rid = datetime.fromisoformat(rid_text)
            window = (rid - timedelta(days=400), rid + timedelta(days=400))
        else:
            window = (datetime(1900, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
        for item in expand(to_ics(events, tz), window, _zone(tz), only_uid=uid):
            if item.provider_id == locator:
                return item
        return None

    def batches(self, cursor: dict[str, Any] | None, ctx: SyncContext) -> Iterator[Batch]:
        window = sync_window(ctx.now)
        day = window[0].date().isoformat()
        state = dict(cursor or {})
        if not state.get("sync_token") or state.get("window") != day:
            yield self._full(window, day)
            return
        batch = self._changes(state, window)
        if batch is not None:
            yield batch

    # -- full listing ------------------------------------------------------------------------------
    def _list(self, doing: str, **params: Any) -> tuple[list[dict[str, Any]], str | None, str | None]:
        """Every page of events.list: (events, nextSyncToken, calendar time zone)."""
        from googleapiclient.errors import HttpError

        events: list[dict[str, Any]] = []
        page_token: str | None = None
        tz: str | None = None
        while True:
            kwargs = {"calendarId": self.calendar_id, "singleEvents": False, "showDeleted": True, **params}
            if page_token:
                kwargs["pageToken"] = page_token
            if "syncToken" not in params and "iCalUID" not in params:
                kwargs["maxResults"] = PAGE_MAX
            request = self.service.events().list(**kwargs)
            try:
                page = request.execute(num_retries=self.api.retries)
            except HttpError as exc:
                if _status(exc) == 410 and "syncToken" in params:
                    raise CursorExpired(
                        f"Google Calendar sync token of {self.owner} ({self.calendar_id}) has expired; "
                        "reading the calendar again"
                    ) from None
                raise self.api.translate(exc, doing) from None
            except Exception as exc:  # noqa: BLE001
                raise self.api.translate(exc, doing) from None
            if not isinstance(page, dict):
                raise ProviderError(f"Google Calendar sent an unreadable answer while {doing}")
            tz = tz or page.get("timeZone")
            events.extend(e for e in page.get("items") or [] if isinstance(e, dict) and e.get("id"))
            page_token = page.get("nextPageToken") or None
            if not page_token:
                return events, page.get("nextSyncToken"), tz

    def _full(self, window: tuple[datetime, datetime], day: str) -> Batch:
        events, token, tz = self._list(f"listing calendar {self.calendar_id}")
        if not token:
            raise ProviderError("Google Calendar listing ended without a nextSyncToken")
        ids = {str(e["id"]): str(e["iCalUID"]) for e in events if e.get("iCalUID") and not e.get("recurringEventId")}
        live = [e for e in events if not _deleted(e)]
        items, bad = self._expand(live, tz, window)
        cursor: dict[str, object] = {"sync_token": token, "window": day, "tz": tz, "ids": _live_ids(ids, events)}
        return Batch(items=tuple([*items, *bad]), cursor=cursor, snapshot=True, window=window, total_hint=len(items))

    # -- changes -----------------------------------------------------------------------------------
    def _changes(self, state: dict[str, Any], window: tuple[datetime, datetime]) -> Batch | None:
        old_token = str(state["sync_token"])
        changed, token, tz = self._list(f"reading changes of calendar {self.calendar_id}", syncToken=old_token)
        tz = tz or state.get("tz")
        ids: dict[str, str] = dict(state.get("ids") or {})
        new_state = {**state, "sync_token": token or old_token, "tz": tz}
        if not changed:
            if token and token != old_token:
                return Batch(items=(), cursor=new_state)
            return None
        prefixes: dict[str, None] = {}
        series: dict[str, None] = {}  # uids to read again whole
        singles: dict[str, dict[str, Any]] = {}  # uid -> the (complete) non-recurring event
        for event in changed:
            eid = str(event["id"])
            master = event.get("recurringEventId")
            if _deleted(event):
                uid = ids.pop(eid, None) or event.get("iCalUID") or _google_uid(eid)
                prefixes[f"{uid}|"] = None
                singles.pop(str(uid), None)
                continue
            if master:
                uid = event.get("iCalUID") or ids.get(str(master)) or self._uid_of(str(master))
                if not uid:
                    continue
                series[str(uid)] = None
            else:
                uid = str(event.get("iCalUID") or _google_uid(eid))
                ids[eid] = uid
                if event.get("recurrence"):
                    series[uid] = None
                else:
                    singles[uid] = event
            prefixes[f"{uid}|"] = None
        items: list[CalendarItem | Quarantined] = []
        for uid, event in singles.items():
            if uid in series:
                continue
            found, bad = self._expand([event], tz, window)
            items += [*found, *bad]
        for uid in series:
            events, series_tz = self._series_events(uid)
            for e in events:
                if not e.get("recurringEventId") and e.get("iCalUID"):
                    if _deleted(e):
                        ids.pop(str(e["id"]), None)
                    else:
                        ids[str(e["id"])] = str(e["iCalUID"])
            live = [e for e in events if not _deleted(e)]
            found, bad = self._expand(live, series_tz or tz, window)
            items += [*found, *bad]
        new_state["ids"] = ids
        return Batch(
            items=tuple(items),
            cursor=new_state,
            window=window,
            complete_for=tuple(prefixes),
            total_hint=len(items),
        )

    def _series_events(self, uid: str) -> tuple[list[dict[str, Any]], str | None]:
        """The master and every exception of one series (or the one event of that UID)."""
        events, _, tz = self._list(f"reading event {uid}", iCalUID=uid)
        return events, tz

    def _uid_of(self, event_id: str) -> str | None:
        from googleapiclient.errors import HttpError

        request = self.service.events().get(calendarId=self.calendar_id, eventId=event_id)
        try:
            event = request.execute(num_retries=self.api.retries)
        except HttpError as exc:
            if _status(exc) in (404, 410):
                return None
            raise self.api.translate(exc, f"reading event {event_id}") from None
        except Exception as exc:  # noqa: BLE001
            raise self.api.translate(exc, f"reading event {event_id}") from None
        uid = event.get("iCalUID") if isinstance(event, dict) else None
        return str(uid) if uid else None

    def _expand(
        self, events: list[dict[str, Any]], tz: str | None, window: tuple[datetime, datetime]
    ) -> tuple[list[CalendarItem], list[Quarantined]]:
        items: list[CalendarItem] = []
        bad: list[Quarantined] = []
        good: list[dict[str, Any]] = []
        for event in events:
            problem = _malformed(event)
            if problem:
                key = f"{event.get('iCalUID') or _google_uid(str(event.get('id')))}|"
                bad.append(Quarantined(key, key, f"Google event {event.get('id')}: {problem}"))
            else:
                good.append(event)
        if not good:
            return items, bad
        for entry in expand(to_ics(good, tz), window, _zone(tz)):
            if isinstance(entry, Quarantined):
                bad.append(entry)
            else:
                items.append(entry)
        return items, bad


# -- Google event -> iCalendar ---------------------------------------------------------------------


def to_ics(events: list[dict[str, Any]], tz: str | None) -> bytes:
    """A VCALENDAR holding ``events`` (masters, singles, exceptions; no deleted series) the way Google's
    .ics export writes them: recurrence lines verbatim, exceptions with RECURRENCE-ID, cancelled
    exceptions as EXDATE on the master."""
    cal = icalendar.Calendar()
    cal.add("prodid", "-//inkless//gcal//EN")
    cal.add("version", "2.0")
    if tz:
        cal.add("x-wr-timezone", tz)
    masters: dict[str, icalendar.Event] = {}
    uids: dict[str, str] = {}
    recurrence: dict[int, list[str]] = {}
    cancelled: list[dict[str, Any]] = []
    for event in events:
        if not event.get("recurringEventId"):
            uids[str(event["id"])] = str(event.get("iCalUID") or _google_uid(str(event["id"])))
    for event in events:
        master_id = event.get("recurringEventId")
        if master_id and event.get("status") == "cancelled":
            cancelled.append(event)
            continue
        uid = str(event.get("iCalUID") or uids.get(str(master_id or "")) or _google_uid(str(event["id"])))
        vevent = icalendar.Event()
        vevent.add("uid", uid)
        vevent.add("dtstart", _when(event["start"]))
        if event.get("end") and not event.get("endTimeUnspecified"):
            vevent.add("dtend", _when(event["end"]))
        if master_id:
            vevent.add("recurrence-id", _when(event["originalStartTime"]))
        elif event.get("recurrence"):
            lines = [str(line) for line in event["recurrence"] if isinstance(line, str)]
            recurrence[len(recurrence)] = lines
            vevent.add(_PLACEHOLDER, str(len(recurrence) - 1))
        vevent.add("summary", str(event.get("summary") or ""))
        if event.get("description"):
            vevent.add("description", str(event["description"]))
        vevent.add("status", _STATUS.get(str(event.get("status") or "confirmed"), "CONFIRMED"))
        if isinstance(event.get("sequence"), int):
            vevent.add("sequence", event["sequence"])
        organizer = event.get("organizer") or {}
        if isinstance(organizer, dict) and organizer.get("email"):
            vevent.add("organizer", _address(organizer, None))
        for attendee in event.get("attendees") or []:
            if isinstance(attendee, dict) and attendee.get("email"):
                partstat = _PARTSTAT.get(str(attendee.get("responseStatus") or ""), "NEEDS-ACTION")
                vevent.add("attendee", _address(attendee, partstat))
        cal.add_component(vevent)
        if not master_id:
            masters[str(event["id"])] = vevent
    for event in cancelled:
        master = masters.get(str(event["recurringEventId"]))
        if master is not None and isinstance(event.get("originalStartTime"), dict):
            master.add("exdate", _when(event["originalStartTime"]))
    text: str = cal.to_ical().decode("utf-8")
    for n, lines in recurrence.items():
        text = text.replace(f"{_PLACEHOLDER}:{n}\r\n", "".join(line.strip() + "\r\n" for line in lines), 1)
    return text.encode("utf-8")


def _when(value: dict[str, Any]) -> date | datetime:
    """A Google EventDateTime as a date (all-day) or an aware datetime in its ``timeZone``."""
    if value.get("date"):
        return date.fromisoformat(str(value["date"]))
    moment = datetime.fromisoformat(str(value["dateTime"]).replace("Z", "+00:00"))
    zone = _zone(value.get("timeZone"))
    if moment.tzinfo is None:
        return moment.replace(tzinfo=zone or UTC)
    if zone is not None:
        return moment.astimezone(zone)
    return moment.astimezone(UTC) if moment.utcoffset() == timedelta(0) else moment


def _address(person: dict[str, Any], partstat: str | None) -> icalendar.vCalAddress:
    address = icalendar.vCalAddress(f"mailto:{person['email']}")
    if person.get("displayName"):
        address.params["CN"] = str(person["displayName"])
    if partstat:
        address.params["PARTSTAT"] = partstat
    return address


def _malformed(event: dict[str, Any]) -> str | None:
    """Why an event cannot become a VEVENT (None if it can)."""
    try:
        if event.get("recurringEventId") and event.get("status") == "cancelled":
            _when(event["originalStartTime"])
            return None
        for key in ("start", "end"):
            if key == "end" and (event.get("endTimeUnspecified") or key not in event):
                continue
            _when(event[key])
        if event.get("recurringEventId"):
            _when(event["originalStartTime"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return f"unusable start/end ({type(exc).__name__}: {str(exc)[:80]})"
    return None


def _deleted(event: dict[str, Any]) -> bool:
    """A deleted event or series (a cancelled *exception* of a live series is not a delete)."""
    return event.get("status") == "cancelled" and not event.get("recurringEventId")


def _live_ids(ids: dict[str, str], events: list[dict[str, Any]]) -> dict[str, str]:
    gone = {str(e["id"]) for e in events if _deleted(e)}
    return {k: v for k, v in ids.items() if k not in gone}


def _google_uid(event_id: str) -> str:
    # what Google puts in iCalUID for events created in Google Calendar
    return f"{event_id}@google.com"


def _zone(name: object) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(str(name))
    except (KeyError, ValueError, OSError):
        return None
