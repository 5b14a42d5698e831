"""The Google Calendar source with the real google-api-python-client against recorded-shape answers:
full listing with paging, recurring masters with moved and cancelled exceptions (same occurrences as the
ICS source), incremental sync tokens, a 410 through the engine, declined and cancelled meetings, errors."""

from __future__ import annotations

import copy
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httplib2
import pytest
from googleapiclient.discovery import build
from googleapiclient.http import HttpMockSequence
from sqlalchemy.orm import Session, sessionmaker

import providers.base
from agent.sync import SyncEngine
from providers.base import SyncContext
from providers.errors import AuthExpired, CursorExpired, RateLimited, Unreachable
from providers.gcal import GoogleCalendarSource
from providers.ics import IcsSource
from providers.records import Batch, CalendarItem, Quarantined
from store.export import activity_rows
from tests.test_gmail import DATA, DEMO, OWNER, RECONNECT, TimeoutHttp, activities, add_source, fixture
from tests.test_gmail import no_sleep as no_sleep  # noqa: F401 - autouse fixture
from tests.test_mailfiles import Spy

DEMO_NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
SERIES = "coiuducln4rftjxnnuaoc2iekz"


class FakeCalendar:
    """An httplib2.Http stand-in for Calendar v3 events.list / events.get: paged listing, sync tokens
    (``nextSyncToken`` on the last page only, 410 ``fullSyncRequired`` once expired), ``iCalUID``
    filtering and ``showDeleted``. Every change bumps a version; a sync token is a version."""

    def __init__(self, events: list[dict[str, Any]], page_size: int = 5, tz: str = "Europe/Madrid") -> None:
        self.version = 1
        self.events: dict[str, dict[str, Any]] = {}
        self.changed: dict[str, int] = {}
        self.page_size = page_size
        self.tz = tz
        self.expired_before = 0
        self.log: list[str] = []
        for e in events:
            self.put(e)

    def put(self, event: dict[str, Any]) -> None:
        self.version += 1
        self.events[event["id"]] = copy.deepcopy(event)
        self.changed[event["id"]] = self.version

    def delete(self, event_id: str) -> None:
        old = self.events[event_id]
        self.put(
            {
                "kind": "calendar#event",
                "etag": '"9"',
                "id": event_id,
                "status": "cancelled",
                **(
                    {"recurringEventId": old["recurringEventId"], "originalStartTime": old["originalStartTime"]}
                    if old.get("recurringEventId")
                    else {}
                ),
            }
        )

    def request(self, uri: str, method: str = "GET", body: Any = None, headers: Any = None, **_: Any) -> Any:
        parts = urlsplit(uri)
        path, query = unquote(parts.path), parse_qs(parts.query)
        self.log.append(f"{method} {path} {parts.query}")
        prefix = "/calendar/v3/calendars/primary/events"
        assert path.startswith(prefix), path
        rest = path[len(prefix) :].strip("/")
        if rest:
            event = self.events.get(rest)
            if event is None:
                return httplib2.Response({"status": "404"}), b'{"error": {"code": 404, "message": "Not Found"}}'
            return self._ok(event)
        if "syncToken" in query:
            since = int(query["syncToken"][0].split("-")[1])
            if since < self.expired_before:
                return httplib2.Response({"status": "410"}), fixture("error_410_sync_token.json").encode()
            ids = [i for i, v in self.changed.items() if v > since]
        else:
            ids = list(self.events)
            if "iCalUID" in query:
                uid = query["iCalUID"][0]
                ids = [i for i in ids if self._uid(self.events[i]) == uid]
            if query.get("showDeleted", ["false"])[0] != "true":
                ids = [i for i in ids if self.events[i].get("status") != "cancelled"]
        start = int(query.get("pageToken", ["0"])[0])
        size = min(int(query.get("maxResults", ["250"])[0]), self.page_size)
        page: dict[str, Any] = {
            "kind": "calendar#events",
            "summary": OWNER,
            "timeZone": self.tz,
            "accessRole": "owner",
            "items": [self.events[i] for i in ids[start : start + size]],
        }
        if start + size < len(ids):
            page["nextPageToken"] = str(start + size)
        else:
            page["nextSyncToken"] = f"tok-{self.version}"
        return self._ok(page)

    def _uid(self, event: dict[str, Any]) -> str | None:
        if event.get("iCalUID"):
            return str(event["iCalUID"])
        master = self.events.get(str(event.get("recurringEventId")))
        return str(master["iCalUID"]) if master and master.get("iCalUID") else None

    @staticmethod
    def _ok(data: Any) -> Any:
        return httplib2.Response({"status": "200", "content-type": "application/json"}), json.dumps(data).encode()


def demo_events() -> list[dict[str, Any]]:
    return list(json.loads((DATA / "calendar_events.json").read_text())["items"])


def service_for(http: Any) -> Any:
    return build("calendar", "v3", http=http, static_discovery=True)


def gcal(http: Any, **settings: Any) -> GoogleCalendarSource:
    return GoogleCalendarSource("gcal:" + OWNER, OWNER, {"retries": 2, **settings}, service=service_for(http))


def run(src: Any, cursor: dict[str, Any] | None, now: Any = DEMO_NOW) -> tuple[list[Batch], dict[str, Any] | None]:
    spy = Spy()
    ctx = spy.ctx()
    ctx.now = now
    batches = list(src.batches(cursor, ctx))
    return batches, (batches[-1].cursor if batches else cursor)


def by_id(batches: list[Batch]) -> dict[str, Any]:
    return {i.provider_id: i for b in batches for i in b.items}


def ics_items() -> dict[str, CalendarItem]:
    src = IcsSource(str(DEMO / "calendar.ics"), OWNER)
    batches = list(src.batches(None, SyncContext(DEMO_NOW)))
    return {i.provider_id: i for b in batches for i in b.items if isinstance(i, CalendarItem)}


# ---------------------------------------------------------------------------------- full listing
def test_gcal_full_sync_pages_and_expands_exactly_like_the_ics_source() -> None:
    fake = FakeCalendar(demo_events(), page_size=4)
    batches, cursor = run(gcal(fake), None)
    assert len(batches) == 1 and batches[0].snapshot and batches[0].window is not None
    items = by_id(batches)
    expected = {k: v for k, v in ics_items().items() if v.status != "CANCELLED"}  # Google: cancelled = deleted
    assert items == expected
    assert f"{SERIES}@google.com|2026-10-29T08:30:00+00:00" not in items  # the cancelled exception
    moved = items[f"{SERIES}@google.com|2026-11-12T08:30:00+00:00"]
    assert moved.start.isoformat() == "2026-11-13T10:00:00+00:00"
    assert cursor is not None and cursor["sync_token"] == f"tok-{fake.version}"
    lists = [line for line in fake.log if "syncToken" not in line]
    assert len(lists) == 4  # 13 events on pages of 4, all with singleEvents=False and showDeleted=True
    assert all("singleEvents=false" in line and "showDeleted=true" in line for line in lists)
    json.dumps(cursor)


def test_gcal_declined_and_cancelled_map_to_partstat_and_status() -> None:
    events = demo_events()
    first = next(e for e in events if e["id"] == "pnacedyn5sjgetb3joktuydeet")
    for a in first["attendees"]:
        if a.get("self"):
            a["responseStatus"] = "declined"
    first["status"] = "tentative"
    fake = FakeCalendar([first], tz="Europe/Madrid")
    (item,) = by_id(run(gcal(fake), None)[0]).values()
    assert isinstance(item, CalendarItem) and item.status == "TENTATIVE"
    assert [a.partstat for a in item.attendees if a.email == OWNER] == ["DECLINED"]
    assert item.organizer is not None and item.organizer.name == "Ana Ruiz"


# ------------------------------------------------------------------------------------- incremental
def test_gcal_incremental_replaces_a_changed_series_and_removes_a_deleted_event() -> None:
    fake = FakeCalendar(demo_events())
    _, cursor = run(gcal(fake), None)
    fake.log.clear()
    # one more instance of the weekly series cancelled; the intro call deleted; a new single meeting
    fake.put(
        {
            "kind": "calendar#event",
            "id": f"{SERIES}_20261119T083000Z",
            "status": "cancelled",
            "recurringEventId": SERIES,
            "originalStartTime": {"dateTime": "2026-11-19T09:30:00+01:00", "timeZone": "Europe/Madrid"},
        }
    )
    fake.delete("5xc7gu4e2gx6iqf4cpesa7agpc")
    fake.put(
        {
            "kind": "calendar#event",
            "id": "newmeeting1",
            "status": "confirmed",
            "summary": "Bluefern - pricing",
            "iCalUID": "newmeeting1@google.com",
            "start": {"dateTime": "2026-11-25T10:00:00+01:00", "timeZone": "Europe/Madrid"},
            "end": {"dateTime": "2026-11-25T10:30:00+01:00", "timeZone": "Europe/Madrid"},
            "organizer": {"email": OWNER, "self": True},
            "attendees": [{"email": "oliver.pennington@bluefern.co.uk", "responseStatus": "accepted"}],
        }
    )
    batches, new_cursor = run(gcal(fake), cursor)
    assert len(batches) == 1 and not batches[0].snapshot
    batch = batches[0]
    assert set(batch.complete_for) == {
        f"{SERIES}@google.com|",
        "5xc7gu4e2gx6iqf4cpesa7agpc@google.com|",
        "newmeeting1@google.com|",
    }
    ids = set(by_id(batches))
    assert "newmeeting1@google.com|" in ids
    assert f"{SERIES}@google.com|2026-11-19T08:30:00+00:00" not in ids
    assert f"{SERIES}@google.com|2026-11-26T08:30:00+00:00" in ids
    assert not any(i.startswith("5xc7gu4e2gx6iqf4cpesa7agpc") for i in ids)
    assert new_cursor is not None and new_cursor["sync_token"] == f"tok-{fake.version}"
    assert "5xc7gu4e2gx6iqf4cpesa7agpc" not in new_cursor["ids"]
    assert any("syncToken=tok-" in line for line in fake.log)
    assert run(gcal(fake), new_cursor)[0] == []  # nothing changed: no batch


def test_gcal_410_raises_cursor_expired() -> None:
    fake = FakeCalendar(demo_events())
    _, cursor = run(gcal(fake), None)
    fake.expired_before = 10**9
    with pytest.raises(CursorExpired):
        run(gcal(fake), cursor)


def test_gcal_a_new_window_day_lists_the_calendar_again() -> None:
    fake = FakeCalendar(demo_events())
    _, cursor = run(gcal(fake), None)
    batches, _ = run(gcal(fake), cursor, now=DEMO_NOW + timedelta(days=1))
    assert len(batches) == 1 and batches[0].snapshot


def test_gcal_malformed_event_is_quarantined_and_the_rest_goes_on() -> None:
    events = demo_events()
    events.append(
        {
            "kind": "calendar#event",
            "id": "broken1",
            "iCalUID": "broken1@google.com",
            "status": "confirmed",
            "start": {"dateTime": "not a time"},
            "end": {},
        }
    )
    items = by_id(run(gcal(FakeCalendar(events)), None)[0])
    assert isinstance(items["broken1@google.com|"], Quarantined)
    assert sum(isinstance(i, CalendarItem) for i in items.values()) > 5


# ----------------------------------------------------------------------------------------- errors
def test_gcal_errors_are_translated() -> None:
    with pytest.raises(AuthExpired, match=RECONNECT):
        run(gcal(HttpMockSequence([({"status": "401"}, fixture("error_401.json"))])), None)
    limited = HttpMockSequence([({"status": "429", "retry-after": "7"}, fixture("error_429.json"))] * 3)
    with pytest.raises(RateLimited) as err:
        run(gcal(limited), None)
    assert err.value.retry_after == 7.0
    rate403 = HttpMockSequence([({"status": "403"}, fixture("error_403_rate.json"))] * 3)
    with pytest.raises(RateLimited):
        run(gcal(rate403), None)
    with pytest.raises(Unreachable):
        run(gcal(HttpMockSequence([({"status": "503"}, fixture("error_500.json"))] * 3)), None)
    with pytest.raises(Unreachable):
        run(gcal(TimeoutHttp()), None)


# ----------------------------------------------------------------------------- through the engine
def setup(sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, fake: FakeCalendar) -> int:
    from agent.crm import import_and_reattribute
    from store.queries import set_setting

    monkeypatch.setitem(providers.base.REGISTRY, "gcal", "providers.gcal:GoogleCalendarSource")
    monkeypatch.setattr(GoogleCalendarSource, "_default_service", lambda self: service_for(fake))
    with sessions.begin() as s:
        set_setting(s, "internal_domains", ["northwind.io", "northwindlabs.com"])
    c = DEMO / "crm"
    import_and_reattribute(sessions, DEMO_NOW, c / "companies.csv", c / "contacts.csv", c / "deals.csv")
    return add_source(sessions, "gcal", "gcal:" + OWNER, {"token_ref": "google:ana"})


def test_gcal_410_triggers_resync_without_duplicates(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeCalendar(demo_events())
    setup(sessions, monkeypatch, fake)
    first = SyncEngine(sessions, DEMO_NOW, workers=1).run()[0]
    assert first.error is None and first.stats.logged > 3
    n = activities(sessions)
    with sessions() as s:
        before = list(activity_rows(s))
    fake.expired_before = 10**9
    again = SyncEngine(sessions, DEMO_NOW, workers=1).run()[0]
    assert again.error is None and again.stats.logged == 0
    assert activities(sessions) == n
    with sessions() as s:
        assert list(activity_rows(s)) == before


def test_same_meetings_via_gcal_and_ics_are_one_activity_each(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gcal_id = setup(sessions, monkeypatch, FakeCalendar(demo_events()))
    ics = tmp_path / "calendar.ics"
    shutil.copy(DEMO / "calendar.ics", ics)
    ics_id = add_source(sessions, "ics", str(ics), {})
    assert SyncEngine(sessions, DEMO_NOW, workers=1).run([ics_id])[0].error is None
    n = activities(sessions)
    with sessions() as s:
        keys = sorted((r["ical_uid"], r["recurrence_id"]) for r in activity_rows(s))
    assert n > 3
    rep = SyncEngine(sessions, DEMO_NOW, workers=1).run([gcal_id])[0]
    assert rep.error is None
    assert activities(sessions) == n
    with sessions() as s:
        assert sorted((r["ical_uid"], r["recurrence_id"]) for r in activity_rows(s)) == keys


def test_gcal_fetch_reads_one_occurrence_again_by_its_locator() -> None:
    fake = FakeCalendar(demo_events())
    locator = f"{SERIES}@google.com|2026-11-12T08:30:00+00:00"
    item = gcal(fake).fetch(locator, SyncContext(DEMO_NOW))
    assert isinstance(item, CalendarItem) and item.start.isoformat() == "2026-11-13T10:00:00+00:00"
    assert gcal(fake).fetch("nosuch@google.com|", SyncContext(DEMO_NOW)) is None


def test_gcal_default_service_shares_the_gmail_grant_and_api_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from cryptography.fernet import Fernet

    from providers.secrets import save_secret

    monkeypatch.setenv("INKLESS_SECRET_BACKEND", "file")
    monkeypatch.setenv("INKLESS_SECRET_FILE", str(tmp_path / "s.bin"))
    monkeypatch.setenv("INKLESS_SECRET_KEY", Fernet.generate_key().decode())
    with pytest.raises(AuthExpired, match=RECONNECT):
        GoogleCalendarSource("gcal", OWNER, {"token_ref": "google:ana"}).check()
    save_secret("google:ana", fixture("authorized_user.json"))
    for endpoint in ("http://127.0.0.1:9/", "http://127.0.0.1:9/calendar/v3/"):
        src = GoogleCalendarSource("gcal", OWNER, {"token_ref": "google:ana", "api_endpoint": endpoint})
        assert src.service._baseUrl == "http://127.0.0.1:9/calendar/v3/"
