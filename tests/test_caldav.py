"""The CalDAV source (providers/caldav.py) against a real Radicale server: backfill with recurring series
and moved occurrences, changes by sync token, deletions through the engine, an expired token, errors, and
the same export as the .ics source for the same events."""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import socket
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from caldav.davclient import DAVClient
from caldav.response import DAVResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from agent.crm import import_and_reattribute
from agent.sync import SyncEngine
from agent.views import source_status_view
from providers.base import SyncContext
from providers.caldav import CaldavSource
from providers.errors import AuthExpired, ProviderError, Unreachable
from providers.ics import expand, sync_window
from providers.records import Batch, CalendarItem, Quarantined
from store.db import open_db
from store.export import activity_rows
from store.models import Activity, Quarantine, Source, SyncState
from store.queries import set_setting
from tests.conftest import fresh_pg_database

if TYPE_CHECKING:
    from tests.radicale_server import RadicaleServer

pytest_plugins = ["tests.radicale_server"]  # the `radicale` fixture

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "agent" / "demo_data"
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)  # the demo's clock; window [2026-05-24 12:00, 2026-12-20 12:00]
OWNER = "ana@northwind.io"
PASSWORD_VAR = "INKLESS_TEST_CALDAV_PASSWORD"
BLUEFERN = "coiuducln4rftjxnnuaoc2iekz@google.com"  # the demo's weekly series with an EXDATE and a moved instance


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def vcalendar(*events: str) -> str:
    """A VCALENDAR around VEVENT bodies (each given without BEGIN/END lines)."""
    blocks = "".join(f"BEGIN:VEVENT\n{e.strip()}\nEND:VEVENT\n" for e in events)
    return f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//inkless tests//EN\n{blocks}END:VCALENDAR\n".replace("\n", "\r\n")


def event(uid: str, start: str, summary: str, *extra: str, minutes: int = 30) -> str:
    begin = datetime.strptime(start, "%Y%m%dT%H%M%SZ")
    end = (begin + timedelta(minutes=minutes)).strftime("%Y%m%dT%H%M%SZ")
    lines = [
        f"UID:{uid}",
        "DTSTAMP:20261101T000000Z",
        f"DTSTART:{start}",
        f"DTEND:{end}",
        f"SUMMARY:{summary}",
        "ORGANIZER;CN=Ana Ruiz:mailto:ana@northwind.io",
        "ATTENDEE;CN=Jane Doe;PARTSTAT=ACCEPTED:mailto:jane@acme.com",
        *extra,
    ]
    return "\n".join(lines)


SINGLE = event("single-1@acme.com", "20261103T100000Z", "Acme intro")
OTHER = event("single-2@acme.com", "20261105T140000Z", "Acme pricing")
WEEKLY = event("weekly-1@acme.com", "20261102T090000Z", "Acme weekly", "RRULE:FREQ=WEEKLY;COUNT=4")
WEEKLY_MOVED = event(
    "weekly-1@acme.com", "20261110T150000Z", "Acme weekly (moved)", "RECURRENCE-ID:20261109T090000Z", "SEQUENCE:1"
)


@pytest.fixture
def password(radicale: RadicaleServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Sources read the password from an environment variable, as `source add --password-env` sets up."""
    monkeypatch.setenv(PASSWORD_VAR, radicale.password)
    return PASSWORD_VAR


def settings(radicale: RadicaleServer, **more: Any) -> dict[str, Any]:
    return {"user": radicale.user, "password_env": PASSWORD_VAR, **more}


def source(radicale: RadicaleServer, location: str | None = None, **more: Any) -> CaldavSource:
    return CaldavSource(location or radicale.url, OWNER, settings(radicale, **more))


def sync(src: CaldavSource, cursor: dict[str, Any] | None = None, now: datetime = NOW) -> list[Batch]:
    return list(src.batches(cursor, SyncContext(now)))


def meetings(batch: Batch) -> dict[str, CalendarItem]:
    return {i.provider_id: i for i in batch.items if isinstance(i, CalendarItem)}


def work_calendar(radicale: RadicaleServer, *objects: str) -> str:
    url = radicale.make_calendar("work", "Work")
    for ics in objects:
        radicale.put("work", ics)
    return url


# -- backfill and incremental sync --------------------------------------------------------------------


def test_backfill_lists_single_events_and_the_series_with_its_moved_occurrence(
    radicale: RadicaleServer, password: str
) -> None:
    url = work_calendar(radicale, vcalendar(SINGLE), vcalendar(WEEKLY, WEEKLY_MOVED))
    src = source(radicale)
    (batch,) = sync(src)
    assert batch.complete_for == ("work|",) and batch.window == sync_window(NOW) and not batch.snapshot
    items = meetings(batch)
    assert sorted(items) == [
        "work|single-1@acme.com|",
        "work|weekly-1@acme.com|2026-11-02T09:00:00+00:00",
        "work|weekly-1@acme.com|2026-11-09T09:00:00+00:00",
        "work|weekly-1@acme.com|2026-11-16T09:00:00+00:00",
        "work|weekly-1@acme.com|2026-11-23T09:00:00+00:00",
    ]
    moved = items["work|weekly-1@acme.com|2026-11-09T09:00:00+00:00"]
    assert (moved.recurrence_id, moved.start, moved.summary) == (
        utc(2026, 11, 9, 9),
        utc(2026, 11, 10, 15),
        "Acme weekly (moved)",
    )
    single = items["work|single-1@acme.com|"]
    assert (
        single.recurrence_id is None and single.start == utc(2026, 11, 3, 10) and single.ical_uid == "single-1@acme.com"
    )
    assert single.locator == radicale.href("work", "single-1@acme.com.ics").replace("@", "%40") + "#single-1@acme.com|"
    assert {src.folder_of(pid) for pid in items} == {"work"}
    # exactly what the .ics source makes of the same objects, but for the calendar in front of the ids
    expected = [
        *expand(vcalendar(SINGLE).encode(), sync_window(NOW)),
        *expand(vcalendar(WEEKLY, WEEKLY_MOVED).encode(), sync_window(NOW)),
    ]
    assert sorted(items.values(), key=lambda i: i.provider_id) == sorted(
        (
            replace(i, provider_id=f"work|{i.provider_id}", locator=items[f"work|{i.provider_id}"].locator)
            for i in expected
        ),
        key=lambda i: i.provider_id,
    )
    state = batch.cursor["folders"]["work"]  # type: ignore[index]
    assert state["hrefs"] == {
        "single-1@acme.com.ics": "single-1@acme.com",
        "weekly-1@acme.com.ics": "weekly-1@acme.com",
    }
    assert state["token"] and state["window"] == "2026-05-24"
    # the calendar's own URL as location gives the same
    assert [meetings(b) for b in sync(source(radicale, url))] == [items]


def test_added_moved_and_deleted_events_arrive_on_the_next_sync(radicale: RadicaleServer, password: str) -> None:
    work_calendar(radicale, vcalendar(SINGLE), vcalendar(OTHER), vcalendar(WEEKLY, WEEKLY_MOVED))
    src = source(radicale)
    (first,) = sync(src)
    assert sync(src, first.cursor) == []  # nothing changed: nothing yielded, nothing read
    radicale.put("work", vcalendar(event("new-1@acme.com", "20261201T080000Z", "Acme kickoff")))
    radicale.put("work", vcalendar(event("single-1@acme.com", "20261104T113000Z", "Acme intro")))  # moved
    radicale.delete("work", "single-2@acme.com.ics")
    (second,) = sync(src, first.cursor, now=NOW + timedelta(hours=1))
    assert set(second.complete_for) == {"work|new-1@acme.com|", "work|single-1@acme.com|", "work|single-2@acme.com|"}
    assert second.window == sync_window(NOW + timedelta(hours=1))
    items = meetings(second)
    assert sorted(items) == ["work|new-1@acme.com|", "work|single-1@acme.com|"]  # the series was not touched
    assert items["work|single-1@acme.com|"].start == utc(2026, 11, 4, 11, 30)
    hrefs = second.cursor["folders"]["work"]["hrefs"]  # type: ignore[index]
    assert sorted(hrefs.values()) == ["new-1@acme.com", "single-1@acme.com", "weekly-1@acme.com"]
    # only a full listing proves the calendar complete
    assert second.cursor["folders"]["work"]["verified_through"] == NOW.isoformat()  # type: ignore[index]
    assert sync(src, second.cursor) == []


def test_a_new_window_day_lists_the_calendar_again_so_later_occurrences_enter(
    radicale: RadicaleServer, password: str
) -> None:
    work_calendar(radicale, vcalendar(event("daily@acme.com", "20261101T090000Z", "Acme daily", "RRULE:FREQ=DAILY")))
    src = source(radicale)
    (first,) = sync(src)
    assert max(i.start for i in meetings(first).values()) == utc(2026, 12, 20, 9)
    (later,) = sync(src, first.cursor, now=NOW + timedelta(days=3))
    assert later.complete_for == ("work|",) and later.window == sync_window(NOW + timedelta(days=3))
    assert max(i.start for i in meetings(later).values()) == utc(2026, 12, 23, 9)


def test_every_event_calendar_of_the_principal_is_read_unless_one_is_named(
    radicale: RadicaleServer, password: str
) -> None:
    radicale.make_calendar("work", "Work")
    radicale.make_calendar("private", "Private", timezone="Europe/Madrid")
    radicale.make_calendar("tasks", "Tasks", components=["VTODO"])
    radicale.put("work", vcalendar(SINGLE))
    all_day = "UID:offsite@acme.com\nDTSTAMP:20261101T000000Z\nDTSTART;VALUE=DATE:20261124\nSUMMARY:Offsite"
    radicale.put("private", vcalendar(all_day))
    batches = sync(source(radicale))
    assert sorted(pid for b in batches for pid in meetings(b)) == [
        "private|offsite@acme.com|",
        "work|single-1@acme.com|",
    ]
    assert sorted(b.complete_for for b in batches) == [("private|",), ("work|",)]
    assert sorted(batches[-1].cursor["folders"]) == ["private", "work"]  # type: ignore[call-overload]
    offsite = next(i for b in batches for i in b.items if isinstance(i, CalendarItem) and i.all_day)
    assert offsite.start == utc(2026, 11, 23, 23)  # midnight in the calendar's own zone (calendar-timezone)
    (named,) = sync(source(radicale, calendar="Private"))
    assert list(meetings(named)) == ["private|offsite@acme.com|"]
    (by_id,) = sync(source(radicale, calendar="work"))
    assert list(meetings(by_id)) == ["work|single-1@acme.com|"]


class CuttingClient(DAVClient):
    """A caldav client that receives one object cut short (as from a broken proxy or a half-written file):
    the server itself only stores objects it can parse, so the cut happens on the way."""

    def __init__(self, *args: Any, cut: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cut = cut

    def request(
        self,
        url: str,
        method: str = "GET",
        body: str = "",
        headers: Mapping[str, str] | None = None,
        rate_limit_time_slept: Any = 0,
    ) -> DAVResponse:
        response = super().request(url, method, body, headers, rate_limit_time_slept)  # type: ignore[arg-type]
        if method == "GET" and str(url).endswith(self.cut):
            response._raw = response._raw_body = response._raw_body.split(b"END:VEVENT")[0]
        return response


def test_an_object_that_cannot_be_parsed_is_quarantined_and_the_rest_goes_on(
    radicale: RadicaleServer, password: str
) -> None:
    work_calendar(radicale, vcalendar(SINGLE), vcalendar(OTHER))
    client = CuttingClient(
        url=radicale.url, username=radicale.user, password=radicale.password, cut="single-2%40acme.com.ics"
    )
    try:
        src = CaldavSource(radicale.url, OWNER, settings(radicale), client=client)
        (batch,) = sync(src)
    finally:
        client.close()
    assert list(meetings(batch)) == ["work|single-1@acme.com|"]
    (bad,) = [i for i in batch.items if isinstance(i, Quarantined)]
    assert bad.provider_id == "work|single-2@acme.com|" and bad.locator.endswith(
        "single-2%40acme.com.ics#single-2@acme.com|"
    )
    assert bad.reason.startswith("Work/single-2@acme.com.ics: cannot parse") and "END:VCALENDAR missing" in bad.reason
    assert "\n" not in bad.reason
    # its stored occurrences stay: no "work|" prefix, only the readable object's own
    assert batch.complete_for == ("work|single-1@acme.com|",)


def test_fetch_returns_the_occurrence_its_locator_names(radicale: RadicaleServer, password: str) -> None:
    work_calendar(radicale, vcalendar(SINGLE), vcalendar(WEEKLY, WEEKLY_MOVED))
    src = source(radicale)
    items = meetings(sync(src)[0])
    ctx = SyncContext(NOW)
    for pid in ("work|weekly-1@acme.com|2026-11-09T09:00:00+00:00", "work|single-1@acme.com|"):
        assert src.fetch(items[pid].locator, ctx) == items[pid]
    locator = items["work|single-1@acme.com|"].locator
    radicale.delete("work", "single-1@acme.com.ics")
    assert src.fetch(locator, ctx) is None
    assert src.fetch("not a locator", ctx) is None


# -- through the engine -------------------------------------------------------------------------------


def demo_objects() -> dict[str, str]:
    """The demo calendar.ics as CalDAV objects: one per UID, each with the calendar's header and zones."""
    text = (DEMO / "calendar.ics").read_text()
    head, _, _ = text.partition("BEGIN:VEVENT")
    head = re.sub(r"(?m)^METHOD:.*\r?\n", "", head)  # RFC 4791: calendar object resources carry no METHOD
    objects: dict[str, list[str]] = {}
    for block in re.findall(r"(?ms)^BEGIN:VEVENT\r?$.*?^END:VEVENT\r?\n", text):
        uid = re.search(r"(?m)^UID:(.*(?:\r?\n[ \t].*)*)", block)
        assert uid is not None
        objects.setdefault(re.sub(r"\r?\n[ \t]", "", uid.group(1)).strip(), []).append(block)
    return {uid: head + "".join(blocks) + "END:VCALENDAR\r\n" for uid, blocks in objects.items()}


def object_name(uid: str) -> str:
    return re.sub(r"[^A-Za-z0-9@._-]", "_", uid) + ".ics"


def setup_demo_db(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        set_setting(s, "internal_domains", ["northwind.io", "northwindlabs.com"])
    c = DEMO / "crm"
    import_and_reattribute(sessions, NOW, c / "companies.csv", c / "contacts.csv", c / "deals.csv")


def add_source(sessions: sessionmaker[Session], kind: str, location: str, conf: dict[str, Any]) -> int:
    with sessions.begin() as s:
        src = Source(kind=kind, location=location, owner=OWNER, settings=conf, created_at=NOW)
        s.add(src)
        s.flush()
        return src.id


def caldav_demo(radicale: RadicaleServer, sessions: sessionmaker[Session]) -> tuple[int, dict[str, str]]:
    url = radicale.make_calendar("work", "Work")
    objects = demo_objects()
    for uid, ics in objects.items():
        radicale.put("work", ics, name=object_name(uid))
    setup_demo_db(sessions)
    return add_source(sessions, "caldav", url, settings(radicale)), objects


def export(sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    with sessions() as s:
        return list(activity_rows(s))


def run(sessions: sessionmaker[Session], source_id: int, now: datetime = NOW) -> Any:
    (report,) = SyncEngine(sessions, now, workers=1).run([source_id])
    assert report.error is None, report.error
    return report


def test_an_exdate_added_to_the_series_removes_that_occurrence_through_the_engine(
    radicale: RadicaleServer, password: str, sessions: sessionmaker[Session]
) -> None:
    source_id, objects = caldav_demo(radicale, sessions)
    run(sessions, source_id)
    rows = export(sessions)
    bluefern = {r["recurrence_id"] for r in rows if r["ical_uid"] == BLUEFERN}
    assert bluefern == {
        "2026-10-08T07:30:00Z",
        "2026-10-15T07:30:00Z",
        "2026-10-22T07:30:00Z",
        "2026-11-05T08:30:00Z",
        "2026-11-12T08:30:00Z",  # moved to Friday 13th
        "2026-11-19T08:30:00Z",
        "2026-11-26T08:30:00Z",
        "2026-12-03T08:30:00Z",
        "2026-12-10T08:30:00Z",
        "2026-12-17T08:30:00Z",
    }
    series = objects[BLUEFERN].replace(
        "EXDATE;TZID=Europe/Madrid:20261029T093000", "EXDATE;TZID=Europe/Madrid:20261029T093000,20261119T093000"
    )
    radicale.put("work", series, name=object_name(BLUEFERN))
    report = run(sessions, source_id)
    assert report.stats.removed == 1
    after = export(sessions)
    assert {r["recurrence_id"] for r in after if r["ical_uid"] == BLUEFERN} == bluefern - {"2026-11-19T08:30:00Z"}
    assert [r for r in after if r["ical_uid"] != BLUEFERN] == [r for r in rows if r["ical_uid"] != BLUEFERN]
    assert run(sessions, source_id).stats.seen == 0  # and nothing more on the next run
    with sessions() as s:
        (status,) = source_status_view(s)
    assert [(f["folder"], f["verified_through"]) for f in status["folders"]] == [("work", NOW.isoformat())]
    assert status["folders"][0]["logged"] == len(after)


def test_an_invalid_sync_token_triggers_an_explicit_full_resync_without_duplicates(
    radicale: RadicaleServer, password: str, sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    source_id, _ = caldav_demo(radicale, sessions)
    run(sessions, source_id)
    rows = export(sessions)
    with sessions() as s:
        states = s.execute(select(func.count()).where(SyncState.source_id == source_id)).scalar_one()
    gone = next(r for r in rows if r["recurrence_id"] is None)  # a logged single meeting, deleted meanwhile
    radicale.delete("work", object_name(gone["ical_uid"]))
    with sessions.begin() as s:
        src = s.get(Source, source_id)
        assert src is not None and src.cursor is not None
        folders = dict(src.cursor["folders"])
        folders["work"] = {**folders["work"], "token": "http://radicale.org/ns/sync/forgotten"}
        src.cursor = {"folders": folders}
    with caplog.at_level(logging.INFO, logger="inkless.caldav"):
        report = run(sessions, source_id)
    assert any("no longer accepts the saved sync token" in m and "full resync" in m for m in caplog.messages)
    assert report.stats.removed == 1 and report.stats.logged == 0
    assert export(sessions) == [r for r in rows if r is not gone]
    with sessions() as s:
        assert s.execute(select(func.count()).where(SyncState.source_id == source_id)).scalar_one() == states - 1
        assert s.execute(select(func.count()).select_from(Activity)).scalar_one() == len(rows) - 1
        row = s.get(Source, source_id)
        assert row is not None and row.cursor is not None
        token = row.cursor["folders"]["work"]["token"]
        assert token.startswith("http://radicale.org/ns/sync/") and "forgotten" not in token


def test_an_unreadable_series_is_quarantined_and_keeps_its_logged_meetings(
    radicale: RadicaleServer, password: str, sessions: sessionmaker[Session]
) -> None:
    source_id, objects = caldav_demo(radicale, sessions)
    run(sessions, source_id)
    rows = export(sessions)
    # valid iCalendar for the server, but far too dense a series for a meeting calendar
    dense = objects[BLUEFERN].replace(
        "RRULE:FREQ=WEEKLY;UNTIL=20261217T083000Z;BYDAY=TH", "RRULE:FREQ=MINUTELY;COUNT=5000"
    )
    radicale.put("work", dense, name=object_name(BLUEFERN))
    for now in (NOW, NOW + timedelta(days=1)):  # by sync token, then by a full listing on a new window day
        report = run(sessions, source_id, now)
        assert report.stats.quarantined == 1 and report.stats.removed == 0
        assert export(sessions) == rows
    with sessions() as s:
        (reason,) = s.execute(select(Quarantine.reason).where(Quarantine.source_id == source_id)).scalars()
    assert "repeats more than" in reason and BLUEFERN in reason


@contextlib.contextmanager
def second_database(db_url: str, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """Another empty database on the same backend as ``db_url``."""
    with contextlib.ExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path / 'second.db'}"
            if db_url.startswith("sqlite")
            else stack.enter_context(fresh_pg_database())
        )
        engine, maker = open_db(url)
        stack.callback(engine.dispose)
        yield maker


def test_the_same_events_via_caldav_and_via_the_ics_file_give_the_same_export(
    radicale: RadicaleServer, password: str, sessions: sessionmaker[Session], db_url: str, tmp_path: Path
) -> None:
    source_id, _ = caldav_demo(radicale, sessions)
    run(sessions, source_id)
    via_caldav = export(sessions)
    ics = tmp_path / "calendar.ics"
    shutil.copy(DEMO / "calendar.ics", ics)
    with second_database(db_url, tmp_path) as other:
        setup_demo_db(other)
        run(other, add_source(other, "ics", str(ics), {}))
        via_ics = export(other)
    assert via_caldav == via_ics
    assert len({(r["ical_uid"], r["recurrence_id"]) for r in via_caldav}) == len(via_caldav) >= 15


# -- errors -------------------------------------------------------------------------------------------


def test_a_wrong_password_raises_auth_expired_without_the_password(
    radicale: RadicaleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    radicale.make_calendar("work", "Work")
    wrong = "s3cret-but-wrong"
    monkeypatch.setenv(PASSWORD_VAR, wrong)
    src = source(radicale)
    for attempt in (src.check, lambda: sync(src)):
        with pytest.raises(AuthExpired) as caught:
            attempt()
        message = str(caught.value)
        assert "401" in message and radicale.user in message
        assert wrong not in message and radicale.password not in message and "\n" not in message


def test_a_missing_password_variable_is_reported_before_connecting(
    radicale: RadicaleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_VAR, raising=False)
    with pytest.raises(AuthExpired, match=PASSWORD_VAR):
        source(radicale).check()


def test_a_named_calendar_that_does_not_exist_is_reported_by_name(radicale: RadicaleServer, password: str) -> None:
    radicale.make_calendar("work", "Work")
    with pytest.raises(ProviderError, match="no calendar named 'Sales'.*'Work'"):
        source(radicale, calendar="Sales").check()


def test_a_url_the_server_does_not_have_is_unreachable(radicale: RadicaleServer, password: str) -> None:
    with pytest.raises(Unreachable, match=r"/ana/nope/: this URL was not found \(HTTP 404\)"):
        source(radicale, radicale.calendar_url("nope")).check()


def test_a_refused_connection_is_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    src = CaldavSource(f"http://127.0.0.1:{port}/dav/", OWNER, {"user": "ana"})
    with pytest.raises(Unreachable, match="cannot reach the server"):
        src.check()
    with pytest.raises(Unreachable):
        sync(src)


def test_a_calendar_that_suddenly_lists_nothing_wipes_nothing_until_confirmed(
    radicale: RadicaleServer, password: str
) -> None:
    work_calendar(radicale, vcalendar(SINGLE), vcalendar(OTHER))
    (first,) = sync(source(radicale))
    radicale.delete("work", "single-1@acme.com.ics")
    radicale.delete("work", "single-2@acme.com.ics")
    tomorrow = NOW + timedelta(days=1)  # a full listing (new window day) that finds nothing
    with pytest.raises(ProviderError, match="nothing was removed"):
        sync(source(radicale), first.cursor, now=tomorrow)
    (confirmed,) = sync(source(radicale, confirm_empty=True), first.cursor, now=tomorrow)
    assert confirmed.items == () and confirmed.complete_for == ("work|",)
    # deletions seen through the sync token are ordinary changes, not a suddenly empty listing
    (incremental,) = sync(source(radicale), first.cursor)
    assert set(incremental.complete_for) == {"work|single-1@acme.com|", "work|single-2@acme.com|"}
