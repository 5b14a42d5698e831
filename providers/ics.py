"""iCalendar files and feeds (.ics, http(s)://, webcal://) as a calendar source.

Each sync re-reads the whole calendar when it changed and yields ONE snapshot batch holding every
meeting occurrence that starts inside the window ``[now - 180 days, now + 30 days]``; the engine
deletes this source's occurrences in that window that are no longer listed. Recurring events are
expanded with ``recurring_ical_events`` (RRULE, RDATE, EXDATE, RECURRENCE-ID overrides, moved and
cancelled instances, RANGE=THISANDFUTURE), time zones come from the IANA database or the file's own
VTIMEZONE, and X-WR-TIMEZONE (Google) gives floating times and all-day dates their zone.

Provider id and locator of an occurrence are ``UID|RECURRENCE-ID`` (original start, UTC ISO 8601; empty
for a single event). The cursor is a small dict: for a file ``mtime_ns``, ``size``, ``sha256`` and
``window`` (the window's first day); for a URL ``etag``, ``last_modified``, ``sha256`` and ``window``.
Broken input never raises: a calendar that cannot be parsed becomes one Quarantined entry (not a
snapshot, so nothing is deleted), a broken event series becomes a Quarantined entry of its own.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import warnings
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import httpx
import icalendar
from icalendar.prop import vBroken, vDDDLists, vDDDTypes, vRecur
from recurring_ical_events import EventAdapter, Series

from .base import Source, SyncContext
from .errors import AuthExpired, RateLimited, Unreachable
from .records import Batch, CalendarItem, Item, Participant, Quarantined, printable

WINDOW_PAST = timedelta(days=180)
WINDOW_FUTURE = timedelta(days=30)
DESCRIPTION_MAX = 2000
#: a series with more occurrences than this inside the window is quarantined (no meeting repeats that often)
MAX_OCCURRENCES = 2000
HTTP_TIMEOUT = httpx.Timeout(30.0, connect=10.0)

_TIME_PROPS = frozenset({"DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXDATE", "RECURRENCE-ID"})
_SINGLE_PROPS = ("DTSTART", "DTEND", "DURATION", "RECURRENCE-ID", "SEQUENCE")
_FREQ_SECONDS = {"SECONDLY": 1, "MINUTELY": 60, "HOURLY": 3600, "DAILY": 86400, "WEEKLY": 604800}
_BEGIN_CALENDAR = re.compile(rb"(?im)^BEGIN:VCALENDAR[ \t]*\r?$")
_END_CALENDAR = re.compile(rb"(?im)^END:VCALENDAR[ \t]*\r?$")
_BLOCK = re.compile(r"(?ims)^BEGIN:(VEVENT|VTIMEZONE)[ \t]*\r?$.*?^END:\1[ \t]*\r?$")
_UNFOLD = re.compile(rb"(?<!\n)\n+[ \t]")  # after CRLF -> LF; unfolds like icalendar, in linear time
_VEVENT = re.compile(rb"(?ims)^BEGIN:VEVENT[ \t]*\r?\n.*?^END:VEVENT[ \t]*(?:\r?\n|\Z)")
_FIELD = re.compile(rb"(?im)^(UID|DTSTART|RRULE|RDATE|RECURRENCE-ID|BEGIN)([;:][^\r\n]*)")
_MARGIN = timedelta(days=2)
_DATE8 = re.compile(rb"\d{4}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])")
_UNUSED = re.compile(
    rb"(?im)^(?:X-[A-Z0-9-]*|LOCATION|DTSTAMP|CREATED|LAST-MODIFIED|CLASS|TRANSP|PRIORITY|URL|CATEGORIES|"
    rb"ATTACH|CONTACT|COMMENT|GEO|RESOURCES|CONFERENCE|IMAGE)[;:][^\n]*(?:\n|\Z)"
)
_ALARM = re.compile(rb"(?ims)^BEGIN:VALARM[ \t]*\r?$.*?^END:VALARM[ \t]*\r?(?:\n|\Z)")


class IcsSource(Source):
    """One iCalendar file or feed of one rep."""

    kind = "ics"

    def __init__(
        self,
        location: str,
        owner: str,
        settings: dict[str, Any] | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        super().__init__(location, owner, settings)
        self._client = client
        scheme, _, rest = location.partition("://")
        scheme = scheme.lower() if rest else ""
        self.url: str | None = None
        self.path: Path | None = None
        if scheme == "webcal":
            self.url = "https://" + rest
        elif scheme in ("http", "https"):
            self.url = location
        else:
            self.path = Path(location).expanduser()
        #: how the location appears in messages and quarantine entries: never with credentials
        self.display = redact(self.url) if self.url else location
        self.default_tz = _zone(self.settings.get("timezone")) or UTC

    # -- Source contract -------------------------------------------------------------------------------

    def check(self) -> None:
        if self.path is not None:
            self._stat()
        else:
            self._get({})

    def batches(self, cursor: dict[str, Any] | None, ctx: SyncContext) -> Iterator[Batch]:
        window = sync_window(ctx.now)
        day = window[0].date().isoformat()
        old = cursor if cursor and cursor.get("window") == day else {}
        if self.path is not None:
            st = self._stat()
            if old and (old.get("mtime_ns"), old.get("size")) == (st.st_mtime_ns, st.st_size):
                return
            data = self._read_bytes()
            new: dict[str, object] = {"mtime_ns": st.st_mtime_ns, "size": st.st_size}
        else:
            validators = {"If-None-Match": old.get("etag"), "If-Modified-Since": old.get("last_modified")}
            response = self._get({k: str(v) for k, v in validators.items() if v})
            if response.status_code == 304:
                return
            data = response.content
            new = {
                "etag": response.headers.get("ETag"),
                "last_modified": response.headers.get("Last-Modified"),
            }
        new["sha256"] = hashlib.sha256(data).hexdigest()
        new["window"] = day
        if old and old.get("sha256") == new["sha256"]:
            # touched but unchanged: remember the new stat/validators so it is not even read next time
            yield Batch(items=(), cursor=new)
            return
        try:
            items: list[Item] = list(self.occurrences(data, window))
        except Exception as exc:  # noqa: BLE001 - bad input must never stop the sync
            reason = _one_line(f"{self.display}: cannot parse calendar: {exc or type(exc).__name__}")
            quarantined = Quarantined(provider_id=self.display, locator=self.display, reason=reason)
            yield Batch(items=(quarantined,), cursor=new, snapshot=False)
            return
        yield Batch(items=tuple(items), cursor=new, snapshot=True, window=window, total_hint=len(items))

    def fetch(self, locator: str, ctx: SyncContext) -> Item | None:
        uid, _, rid_text = locator.rpartition("|")
        if not uid:
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
        data = self._read_bytes() if self.path is not None else self._get({}).content
        try:
            found = self.occurrences(data, window, only_uid=uid, singles_only=not rid_text)
        except Exception:  # noqa: BLE001 - unreadable now: nothing to fetch
            return None
        return next((i for i in found if i.provider_id == locator), None)

    # -- reading ---------------------------------------------------------------------------------------

    def _stat(self) -> os.stat_result:
        assert self.path is not None
        try:
            st = self.path.stat()
        except OSError as exc:
            raise Unreachable(f"{self.location}: {exc.strerror or type(exc).__name__}") from None
        if not self.path.is_file():
            raise Unreachable(f"{self.location}: not a file")
        return st

    def _read_bytes(self) -> bytes:
        assert self.path is not None
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise Unreachable(f"{self.location}: {exc.strerror or type(exc).__name__}") from None

    def _get(self, headers: dict[str, str]) -> httpx.Response:
        assert self.url is not None
        try:
            if self._client is not None:
                response = self._client.get(self.url, headers=headers, follow_redirects=True)
            else:
                with httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=True) as client:
                    response = client.get(self.url, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            detail = redact(str(exc).splitlines()[0]) if str(exc) else ""
            raise Unreachable(_one_line(f"{self.display}: {type(exc).__name__} {detail}")) from None
        status = response.status_code
        if status in (401, 403):
            raise AuthExpired(f"{self.display}: HTTP {status}, the feed needs new credentials")
        if status == 429 or (status == 503 and "Retry-After" in response.headers):
            raise RateLimited(f"{self.display}: HTTP {status}", _retry_after(response.headers.get("Retry-After")))
        if status >= 400:
            raise Unreachable(f"{self.display}: HTTP {status}")
        return response

    # -- parsing ---------------------------------------------------------------------------------------

    def occurrences(
        self,
        data: bytes,
        window: tuple[datetime, datetime],
        only_uid: str | None = None,
        singles_only: bool = False,
    ) -> list[CalendarItem | Quarantined]:
        """Every occurrence starting in ``window`` (see :func:`expand`), in this source's default zone."""
        return expand(data, window, self.default_tz, only_uid, singles_only)


def expand(
    data: bytes,
    window: tuple[datetime, datetime],
    default_tz: tzinfo | None = None,
    only_uid: str | None = None,
    singles_only: bool = False,
) -> list[CalendarItem | Quarantined]:
    """Every meeting occurrence of an iCalendar stream that starts in ``window`` (sorted by start, uid),
    then one Quarantined entry per series that could not be expanded.

    Provider id and locator of an occurrence are ``UID|RECURRENCE-ID``, of a Quarantined series ``UID|``;
    sources that hold several calendars prefix them. ``default_tz`` (UTC if None) is the zone of floating
    times and all-day dates when the calendar has no X-WR-TIMEZONE. ``only_uid`` limits the result to one
    series, ``singles_only`` to non-recurring events. Raises ValueError when ``data`` is not an iCalendar
    stream at all.
    """
    data = _as_utf8(data)
    with warnings.catch_warnings():
        # icalendar warns about guessed TZIDs and the like: input quality, not our bug
        warnings.simplefilter("ignore")
        calendars, bad = _parse(data, window, only_uid)
        items: dict[str, CalendarItem] = {}
        quarantined = {q.provider_id: q for q in bad if only_uid is None or q.provider_id == f"{only_uid}|"}
        for cal in calendars:
            for entry in _Expansion(cal, default_tz or UTC, window).run(only_uid, singles_only):
                target: dict[str, Any] = quarantined if isinstance(entry, Quarantined) else items
                target.setdefault(entry.provider_id, entry)
    ordered = sorted(items.values(), key=lambda i: (i.start, i.ical_uid, i.recurrence_id or i.start))
    return [*ordered, *sorted(quarantined.values(), key=lambda q: q.provider_id)]


def sync_window(now: datetime) -> tuple[datetime, datetime]:
    """The span a snapshot covers: occurrences starting in [now - 180 days, now + 30 days]."""
    now = _as_utc(now)
    return now - WINDOW_PAST, now + WINDOW_FUTURE


def redact(text: str) -> str:
    """Drop user:password@, query strings and Google-style private path tokens from any URL in text."""
    text = re.sub(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@", r"\1", text)
    text = re.sub(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s?#]*)\?[^\s#]*", r"\1?…", text)
    return re.sub(r"(?i)\bprivate-[0-9a-z]{6,}", "private-…", text)


class _Expansion:
    """Turns the VEVENTs of one VCALENDAR into CalendarItems (or Quarantined series)."""

    def __init__(self, cal: icalendar.Component, default_tz: tzinfo, window: tuple[datetime, datetime]) -> None:
        if str(cal.get("CALSCALE", "GREGORIAN")).upper() != "GREGORIAN":
            raise ValueError(f"unsupported CALSCALE {cal.get('CALSCALE')}")
        zone = _zone(cal.get("X-WR-TIMEZONE"))
        _normalise_times(cal, zone)
        self.cal = cal
        self.tz = zone or default_tz
        self.cancel_all = str(cal.get("METHOD", "")).upper() == "CANCEL"
        self.window = window

    def run(self, only_uid: str | None, singles_only: bool) -> Iterator[CalendarItem | Quarantined]:
        groups: dict[str, list[icalendar.Component]] = {}
        for event in self.cal.walk("VEVENT"):
            uid = _text(event.get("UID")).strip() or _synthetic_uid(event)
            if event.get("UID") != uid:
                event["UID"] = uid
            groups.setdefault(uid, []).append(event)
        for uid, events in groups.items():
            if only_uid is not None and uid != only_uid:
                continue
            recurring = any(p in e for e in events for p in ("RRULE", "RDATE", "RECURRENCE-ID"))
            if singles_only and recurring:
                continue
            try:
                yield from self._series(uid, events, recurring)
            except Exception as exc:  # noqa: BLE001 - one bad series must not stop the calendar
                reason = _one_line(f"VEVENT {uid}: {exc or type(exc).__name__}")
                yield Quarantined(provider_id=f"{uid}|", locator=f"{uid}|", reason=reason)

    def _series(self, uid: str, events: list[icalendar.Component], recurring: bool) -> list[CalendarItem]:
        for event in events:
            for name, message in event.errors:
                if name in _TIME_PROPS:
                    raise ValueError(f"{name}: {message}")
                if name:  # drop a broken SEQUENCE, ATTENDEE, ...: the library would trip over it
                    values = [v for v in _as_list(event.pop(name, None)) if not isinstance(v, vBroken)]
                    if values:
                        event[name] = values if len(values) > 1 else values[0]
            if "DTSTART" not in event:
                raise ValueError("no DTSTART")
            twice = [name for name in _SINGLE_PROPS if isinstance(event.get(name), list)]
            if twice:
                raise ValueError(f"{twice[0]} given more than once")
        start, stop = self.window
        if _too_dense(events, self.window):
            raise ValueError(f"repeats more than {MAX_OCCURRENCES} times in the sync window")
        adapters = [EventAdapter(e) for e in events]
        # which VEVENT an occurrence comes from: the master (key None) or the override for a recurrence id;
        # the library keeps the highest SEQUENCE, the first one on a tie
        owner: dict[datetime | None, icalendar.Component] = {}
        for event, adapter in zip(events, adapters, strict=True):
            key = adapter.recurrence_ids[0] if adapter.recurrence_ids else None
            if key not in owner or adapter.sequence > EventAdapter(owner[key]).sequence:
                owner[key] = event
        series = Series(adapters)
        # query a day wider: floating and all-day values are compared in local wall time by the library
        day = timedelta(days=1)
        occurrences = list(itertools.islice(series.between(start - day, stop + day), MAX_OCCURRENCES + 1))
        if len(occurrences) > MAX_OCCURRENCES:
            raise ValueError(f"repeats more than {MAX_OCCURRENCES} times in the sync window")
        items = []
        details: dict[int, _Details] = {}
        for occurrence in occurrences:
            begin = self._utc(occurrence.start)
            if not start <= begin <= stop:  # both ends included, as the engine deletes
                continue
            rids = occurrence.recurrence_ids
            event = owner[rids[0] if rids else None]
            recurrence_id = None
            if recurring:
                recurrence_id = begin
                if rids:  # an override: its RECURRENCE-ID is the original start
                    prop: Any = _first(event.get("RECURRENCE-ID"))
                    recurrence_id = self._utc(prop.dt)
                    if str(prop.params.get("RANGE", "")).upper() == "THISANDFUTURE":
                        # it also moves every later occurrence by the same amount
                        dtstart: Any = event["DTSTART"]
                        recurrence_id = begin - (self._utc(dtstart.dt) - recurrence_id)
            if id(event) not in details:
                details[id(event)] = self._details(event)
            end = self._utc(occurrence.end) if occurrence.end is not None else None
            all_day = not isinstance(occurrence.start, datetime)
            items.append(_make_item(uid, recurrence_id, begin, end, all_day, details[id(event)]))
        return items

    def _details(self, event: icalendar.Component) -> _Details:
        status = _text(event.get("STATUS")).strip().upper()
        if self.cancel_all:
            status = "CANCELLED"
        elif status not in ("TENTATIVE", "CANCELLED"):
            status = "CONFIRMED"
        organizer = _participant(_first(event.get("ORGANIZER")), "organizer")
        attendees = tuple(
            p for p in (_participant(a, "attendee") for a in _as_list(event.get("ATTENDEE"))) if p is not None
        )
        summary = _text(event.get("SUMMARY")).strip()
        description = _text(event.get("DESCRIPTION"))[:DESCRIPTION_MAX]
        fields = [summary, description, organizer, attendees, status]
        digest = hashlib.sha1(json.dumps(fields, default=_jsonable).encode()).hexdigest()
        return _Details(summary, description, organizer, attendees, status, digest)

    def _utc(self, value: date) -> datetime:
        """A date is midnight in the calendar's zone; a floating time is in that zone too."""
        if not isinstance(value, datetime):
            value = datetime.combine(value, time())
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.tz)
        return value.astimezone(UTC)


class _Details(NamedTuple):
    """What an occurrence takes from its VEVENT, worked out once per VEVENT."""

    summary: str
    description: str
    organizer: Participant | None
    attendees: tuple[Participant, ...]
    status: str
    digest: str


def _make_item(
    uid: str,
    recurrence_id: datetime | None,
    start: datetime,
    end: datetime | None,
    all_day: bool,
    d: _Details,
) -> CalendarItem:
    key = f"{uid}|{recurrence_id.isoformat() if recurrence_id else ''}"
    times = f"{key}|{start.isoformat()}|{end.isoformat() if end else ''}|{all_day}"
    return CalendarItem(
        provider_id=key,
        locator=key,
        ical_uid=uid,
        recurrence_id=recurrence_id,
        start=start,
        end=end,
        summary=d.summary,
        description=d.description,
        organizer=d.organizer,
        attendees=d.attendees,
        status=d.status,
        all_day=all_day,
        content_hash=hashlib.sha1(f"{d.digest}|{times}".encode()).hexdigest(),
    )


# -- helpers -------------------------------------------------------------------------------------------


def _parse(
    data: bytes, window: tuple[datetime, datetime], only_uid: str | None
) -> tuple[list[icalendar.Component], list[Quarantined]]:
    """The VCALENDARs in ``data`` plus VEVENTs that could only be quarantined. ValueError if none."""
    if len(_END_CALENDAR.findall(data)) < len(_BEGIN_CALENDAR.findall(data)):
        # a file still being written or a cut download: never let it become a snapshot
        raise ValueError("incomplete calendar, END:VCALENDAR missing")
    try:
        components = icalendar.Calendar.from_ical(_prefilter(data, window, only_uid), multiple=True)
        for component in components:
            component.walk()  # subcomponents are parsed lazily: parse them now, inside this try
    except Exception as exc:  # noqa: BLE001 - the parser raises many kinds on garbage
        return _salvage(data, exc)
    calendars: list[icalendar.Component] = [c for c in components if c.name == "VCALENDAR"]
    loose = [c for c in components if c.name == "VEVENT"]
    if loose:  # bare VEVENTs without a VCALENDAR around them
        wrapper = icalendar.Calendar()
        for event in loose:
            wrapper.add_component(event)
        calendars.append(wrapper)
    if not calendars:
        raise ValueError("no VCALENDAR found")
    return calendars, []


def _prefilter(data: bytes, window: tuple[datetime, datetime], only_uid: str | None) -> bytes:
    """Slim the calendar text before the slow full parse (icalendar reads about 2 MB/s).

    Drops the VEVENTs of a UID that cannot start inside ``window`` (or is not ``only_uid``): none has an
    RDATE and each starts after the window, or before it with no RRULE or an RRULE whose UNTIL is before
    it too; an override also needs its RECURRENCE-ID outside. Two days of margin cover time zones;
    anything unclear stays. Kept VEVENTs lose VALARMs and some properties no CalendarItem uses (X-ALT-DESC,
    ATTACH, LOCATION, ...).
    """
    text = _unfold(data)
    if not _BEGIN_CALENDAR.search(text):  # bare VEVENTs: dropping them all would leave nothing to parse
        return text
    low, high = ((w + d).strftime("%Y%m%d").encode() for w, d in zip(window, (-_MARGIN, _MARGIN), strict=True))
    blocks: list[tuple[bytes, int, int]] = []
    keep: set[bytes] = set()
    for block in _VEVENT.finditer(text):
        fields = [(name.upper(), rest) for name, rest in _FIELD.findall(block.group(0))]
        uid = next((rest.partition(b":")[2].strip() for name, rest in fields if name == b"UID"), b"")
        blocks.append((uid, *block.span()))
        out = bool(uid) and b"\\" not in uid and (only_uid is None or uid != only_uid.encode())
        if out and only_uid is None:
            day = {name: rest.rpartition(b":")[2][:8] for name, rest in fields if name != b"RRULE"}
            untils = [re.search(rb"(?i)UNTIL=(\d{8})", rest) for name, rest in fields if name == b"RRULE"]
            start, rid = day.get(b"DTSTART", b""), day.get(b"RECURRENCE-ID", b"00010101")
            out = (
                sum(name == b"BEGIN" and rest[1:].strip().upper() == b"VEVENT" for name, rest in fields) == 1
                and b"RDATE" not in day
                and all(_DATE8.fullmatch(d) for d in (start, rid, *(u.group(1) for u in untils if u)))
                and (start > high or (start < low and all(u and u.group(1) < low for u in untils)))
                and not low <= rid <= high
            )
        if not out:
            keep.add(uid)
    pieces, position = [], 0
    for uid, begin, end in blocks:
        pieces.append(text[position:begin])
        if uid in keep:
            pieces.append(_UNUSED.sub(b"", _ALARM.sub(b"", text[begin:end])))
        position = end
    pieces.append(text[position:])
    return b"".join(pieces)


def _as_utf8(data: bytes) -> bytes:
    """Calendars exported by Windows tools are sometimes UTF-16 with a byte-order mark."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16", "replace").encode("utf-8")
    if data[:3] == b"\xef\xbb\xbf":
        return data[3:]
    return data


def _unfold(data: bytes) -> bytes:
    return _UNFOLD.sub(b"", data.replace(b"\r\n", b"\n"))


def _salvage(data: bytes, error: Exception) -> tuple[list[icalendar.Component], list[Quarantined]]:
    """Parse VTIMEZONE and VEVENT blocks one by one after icalendar rejected the whole file.

    icalendar is strict outside VEVENTs: one bad VALARM TRIGGER or VTIMEZONE offset fails the whole
    calendar. Alarms are irrelevant here and dropped; a VEVENT that still fails is quarantined alone.
    """
    text = _ALARM.sub(b"", _unfold(data)).decode("utf-8", "replace")
    cal = icalendar.Calendar()
    for name in ("METHOD", "X-WR-TIMEZONE", "CALSCALE"):
        if found := re.search(rf"(?im)^{name}:(.*?)\r?$", text):
            cal.add(name, found.group(1).strip())
    quarantined = []
    blocks = sorted(_BLOCK.finditer(text), key=lambda m: m.group(1).upper() != "VTIMEZONE")  # zones first
    for block in blocks:
        body = block.group(0)
        try:
            component = icalendar.Component.from_ical(body)
            component.walk()
        except Exception as exc:  # noqa: BLE001
            if block.group(1).upper() == "VEVENT":
                found = re.search(r"(?im)^UID:(.*?)\r?$", body)
                uid = found.group(1).strip() if found else _synthetic_uid(icalendar.Event())
                reason = _one_line(f"VEVENT {uid}: {exc or type(exc).__name__}")
                quarantined.append(Quarantined(provider_id=f"{uid}|", locator=f"{uid}|", reason=reason))
            continue
        cal.add_component(component)
    if not blocks:
        raise ValueError(str(error) or type(error).__name__)
    return [cal], quarantined


def _normalise_times(cal: icalendar.Component, zone: tzinfo | None) -> None:
    """Fix the zones of the VEVENTs' date-times in place (keeping each event's parse errors).

    A custom TZID (neither IANA nor Windows name) gets this file's own VTIMEZONE: icalendar caches custom
    VTIMEZONEs process-wide by TZID, first one wins, so two Outlook exports that both say
    ``TZID=Customized Time Zone`` would otherwise share one definition. With X-WR-TIMEZONE (Google),
    floating and UTC times move into that zone, as the x-wr-timezone package does, so a weekly UTC rule
    keeps its local wall-clock time across DST.
    """
    definitions: dict[str, Any] = {str(tz.get("TZID")): tz for tz in cal.walk("VTIMEZONE")}
    own: dict[str, tzinfo | None] = {}

    def fixed(dt: datetime, tzid: str) -> datetime:
        tz = dt.tzinfo
        if tz is None or tz is UTC or (isinstance(tz, ZoneInfo) and tz.key == "UTC"):
            if zone is None:
                return dt
            return dt.replace(tzinfo=zone) if tz is None else dt.astimezone(zone)
        if isinstance(tz, ZoneInfo) or tzid not in definitions:
            return dt
        if tzid not in own:
            try:
                own[tzid] = definitions[tzid].to_tz(lookup_tzid=False)
            except Exception:  # noqa: BLE001 - keep what icalendar chose
                own[tzid] = None
        return dt.replace(tzinfo=own[tzid]) if own[tzid] is not None else dt

    if zone is None and not definitions:
        return
    for event in cal.walk("VEVENT"):
        for name in ("DTSTART", "DTEND", "RECURRENCE-ID", "EXDATE", "RDATE"):
            for prop in _as_list(event.get(name)):
                tzid = str(getattr(prop, "params", {}).get("TZID", ""))
                values: list[Any] = (
                    [prop] if isinstance(prop, vDDDTypes) else prop.dts if isinstance(prop, vDDDLists) else []
                )
                for value in values:
                    try:
                        if isinstance(value.dt, datetime):
                            value.dt = fixed(value.dt, tzid)
                        elif isinstance(value.dt, tuple):  # RDATE period (start, end | duration)
                            begin, finish = value.dt
                            value.dt = (
                                fixed(begin, tzid),
                                fixed(finish, tzid) if isinstance(finish, datetime) else finish,
                            )
                    except (OverflowError, ValueError):  # year 1 or 9999 in another zone: leave as is
                        continue


def _too_dense(events: list[icalendar.Component], window: tuple[datetime, datetime]) -> bool:
    """Estimate, before expanding, whether an RRULE floods the window (dateutil lists every instance)."""
    for event in events:
        for rule in _as_list(event.get("RRULE")):
            if not isinstance(rule, vRecur):
                continue
            seconds = _FREQ_SECONDS.get(str(_first(rule.get("FREQ")) or "").upper())
            count, until = _first(rule.get("COUNT")), _first(rule.get("UNTIL"))
            if seconds is None or (count is not None and int(count) <= MAX_OCCURRENCES):
                continue
            if isinstance(until, date) and _as_utc(until) < window[0]:
                continue
            per_period = 1
            for part, unit in (("BYSECOND", 1), ("BYMINUTE", 60), ("BYHOUR", 3600), ("BYDAY", 86400)):
                if unit < seconds:
                    per_period *= max(len(rule.get(part, ())), 1)
            interval = max(int(_first(rule.get("INTERVAL")) or 1), 1)
            if (window[1] - window[0]).total_seconds() / (seconds * interval) * per_period > MAX_OCCURRENCES:
                return True
    return False


def _participant(address: Any, role: str) -> Participant | None:
    if address is None:
        return None
    email = str(address).strip()
    if email[:7].lower() == "mailto:":
        email = email[7:]
    email = email.strip().lower()
    if "@" not in email:
        return None
    params = getattr(address, "params", {})
    name = printable(str(params.get("CN") or "")).strip().strip('"').strip() or None
    partstat = (str(params.get("PARTSTAT") or "").strip().upper() or None) if role == "attendee" else None
    return Participant(email=email, name=name, role=role, partstat=partstat)


def _synthetic_uid(event: icalendar.Component) -> str:
    start = event.get("DTSTART")
    try:
        raw_start = start.to_ical().decode() if start is not None else ""
    except Exception:  # noqa: BLE001
        raw_start = str(start)
    digest = hashlib.sha1(f"{_text(event.get('SUMMARY'))}\x1f{raw_start}".encode()).hexdigest()
    return f"{digest}@inkless.invalid"


def _zone(name: object) -> tzinfo | None:
    text = _text(name).strip()
    if not text:
        return None
    try:
        return ZoneInfo(text)
    except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return None


def _as_utc(value: date) -> datetime:
    if not isinstance(value, datetime):
        value = datetime.combine(value, time())
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else (None if isinstance(value, list) else value)


def _text(value: Any) -> str:
    value = _first(value)
    return "" if value is None else printable(str(value))


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(printable(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Participant):
        return [value.email, value.name, value.role, value.partstat]
    return str(value)


__all__ = ["IcsSource", "expand", "redact", "sync_window"]
