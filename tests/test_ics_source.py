"""The iCalendar source (providers/ics.py): expansion of recurring meetings, time zones, the sync window,
change detection by cursor (file stat/hash, HTTP ETag), quarantine of bad input, and real-world corpora."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from providers.base import REGISTRY, SyncContext, make_source
from providers.errors import AuthExpired, Unreachable
from providers.ics import IcsSource, sync_window
from providers.records import Batch, CalendarItem, Participant, Quarantined
from tests.conftest import corpus

NOW = datetime(2026, 11, 24, 13, tzinfo=UTC)  # window: [2026-05-28 13:00, 2026-12-24 13:00] UTC


def ctx(now: datetime = NOW) -> SyncContext:
    return SyncContext(now=now)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def calendar(*events: str, head: str = "") -> str:
    """A VCALENDAR around VEVENT bodies (each given without BEGIN/END lines)."""
    blocks = "".join(f"BEGIN:VEVENT\n{e.strip()}\nEND:VEVENT\n" for e in events)
    text = f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//inkless tests//EN\n{head.strip()}\n{blocks}END:VCALENDAR\n"
    return text.replace("\n\n", "\n").replace("\n", "\r\n")


def write(tmp_path: Path, text: str, name: str = "cal.ics") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def sync(path: Path | str, cursor: dict[str, Any] | None = None, now: datetime = NOW) -> list[Batch]:
    return list(IcsSource(str(path), "ana@northwind.io").batches(cursor, ctx(now)))


def items_of(path: Path, now: datetime = NOW) -> list[CalendarItem]:
    (batch,) = sync(path, now=now)
    assert batch.snapshot
    return [i for i in batch.items if isinstance(i, CalendarItem)]


WEEKLY = """
UID:weekly-1@example.com
SUMMARY:Weekly sync
DTSTART;TZID=Europe/Berlin:20261005T100000
DTEND;TZID=Europe/Berlin:20261005T103000
RRULE:FREQ=WEEKLY;COUNT=8
EXDATE;TZID=Europe/Berlin:20261019T100000
RDATE;TZID=Europe/Berlin:20261021T100000
ORGANIZER;CN=Ana Ruiz:mailto:ana@northwind.io
ATTENDEE;CN="Jane Doe";PARTSTAT=ACCEPTED:mailto:jane@acme.com
ATTENDEE;CN=Ana Ruiz;PARTSTAT=ACCEPTED:mailto:ana@northwind.io
"""
WEEKLY_MOVED = """
UID:weekly-1@example.com
SUMMARY:Weekly sync (moved)
RECURRENCE-ID;TZID=Europe/Berlin:20261102T100000
DTSTART;TZID=Europe/Berlin:20261103T150000
DTEND;TZID=Europe/Berlin:20261103T153000
SEQUENCE:1
"""


def test_registered_kind_builds_an_ics_source(tmp_path: Path) -> None:
    assert REGISTRY["ics"] == "providers.ics:IcsSource"
    source = make_source("ics", str(write(tmp_path, calendar())), "Ana@Northwind.io")
    assert isinstance(source, IcsSource) and source.kind == "ics" and source.owner == "ana@northwind.io"


def test_weekly_series_with_exdate_rdate_and_moved_override_gives_exact_occurrences(tmp_path: Path) -> None:
    items = items_of(write(tmp_path, calendar(WEEKLY, WEEKLY_MOVED)))
    # Berlin is UTC+2 until 25 Oct 2026, UTC+1 after; 19 Oct is excluded, 21 Oct added, 2 Nov moved to 3 Nov
    assert [(i.start, i.recurrence_id) for i in items] == [
        (utc(2026, 10, 5, 8), utc(2026, 10, 5, 8)),
        (utc(2026, 10, 12, 8), utc(2026, 10, 12, 8)),
        (utc(2026, 10, 21, 8), utc(2026, 10, 21, 8)),
        (utc(2026, 10, 26, 9), utc(2026, 10, 26, 9)),
        (utc(2026, 11, 3, 14), utc(2026, 11, 2, 9)),
        (utc(2026, 11, 9, 9), utc(2026, 11, 9, 9)),
        (utc(2026, 11, 16, 9), utc(2026, 11, 16, 9)),
        (utc(2026, 11, 23, 9), utc(2026, 11, 23, 9)),
    ]
    moved = items[4]
    assert moved.summary == "Weekly sync (moved)" and moved.end == utc(2026, 11, 3, 14, 30)
    assert moved.provider_id == moved.locator == "weekly-1@example.com|2026-11-02T09:00:00+00:00"
    assert {i.summary for i in items if i is not moved} == {"Weekly sync"}
    assert all(i.ical_uid == "weekly-1@example.com" and i.status == "CONFIRMED" for i in items)
    assert all(i.start.tzinfo is not None and i.start.utcoffset() == timedelta(0) for i in items)


def test_berlin_series_across_march_and_october_dst_changes_has_correct_utc(tmp_path: Path) -> None:
    march = calendar(
        "UID:spring\nSUMMARY:spring\nDTSTART;TZID=Europe/Berlin:20260323T093000\nRRULE:FREQ=WEEKLY;COUNT=3",
        "UID:autumn\nSUMMARY:autumn\nDTSTART;TZID=Europe/Berlin:20261019T093000\nRRULE:FREQ=WEEKLY;COUNT=3",
    )
    path = write(tmp_path, march)
    spring = [i.start for i in items_of(path, now=utc(2026, 4, 10)) if i.ical_uid == "spring"]
    autumn = [i.start for i in items_of(path, now=NOW) if i.ical_uid == "autumn"]
    assert spring == [utc(2026, 3, 23, 8, 30), utc(2026, 3, 30, 7, 30), utc(2026, 4, 6, 7, 30)]  # CET -> CEST
    assert autumn == [utc(2026, 10, 19, 7, 30), utc(2026, 10, 26, 8, 30), utc(2026, 11, 2, 8, 30)]  # back


def test_only_occurrences_starting_inside_the_window_are_listed(tmp_path: Path) -> None:
    start, end = sync_window(NOW)
    assert (start, end) == (NOW - timedelta(days=180), NOW + timedelta(days=30))
    text = calendar(
        "UID:daily\nSUMMARY:daily\nDTSTART:20260101T120000Z\nDTEND:20260101T123000Z\n"
        "RRULE:FREQ=DAILY;UNTIL=20270301T000000Z",
        f"UID:too-old\nSUMMARY:x\nDTSTART:{start - timedelta(minutes=1):%Y%m%dT%H%M%SZ}",
        f"UID:first-minute\nSUMMARY:x\nDTSTART:{start:%Y%m%dT%H%M%SZ}",
        f"UID:last-minute\nSUMMARY:x\nDTSTART:{end:%Y%m%dT%H%M%SZ}",
        f"UID:too-late\nSUMMARY:x\nDTSTART:{end + timedelta(minutes=1):%Y%m%dT%H%M%SZ}",
    )
    (batch,) = sync(write(tmp_path, text))
    assert batch.window == (start, end)
    daily = [i.start for i in batch.items if isinstance(i, CalendarItem) and i.ical_uid == "daily"]
    assert daily[0] == utc(2026, 5, 29, 12) and daily[-1] == utc(2026, 12, 24, 12) and len(daily) == 210
    singles = {i.ical_uid for i in batch.items if isinstance(i, CalendarItem)} - {"daily"}
    assert singles == {"first-minute", "last-minute"}


def test_cancelled_override_occurrence_is_cancelled_and_method_cancel_cancels_all(tmp_path: Path) -> None:
    cancelled = WEEKLY_MOVED.replace("SEQUENCE:1", "SEQUENCE:1\nSTATUS:CANCELLED")
    items = items_of(write(tmp_path, calendar(WEEKLY, cancelled)))
    assert [i.start for i in items if i.status == "CANCELLED"] == [utc(2026, 11, 3, 14)]
    assert sum(i.status == "CONFIRMED" for i in items) == 7
    tentative = items_of(write(tmp_path, calendar("UID:t\nSUMMARY:t\nSTATUS:tentative\nDTSTART:20261110T100000Z")))
    assert [i.status for i in tentative] == ["TENTATIVE"]
    method_cancel = calendar("UID:c\nSUMMARY:c\nSTATUS:CONFIRMED\nDTSTART:20261110T100000Z", head="METHOD:CANCEL")
    assert [i.status for i in items_of(write(tmp_path, method_cancel))] == ["CANCELLED"]


def test_single_attendee_is_a_tuple_and_addresses_are_normalised(tmp_path: Path) -> None:
    text = calendar(
        'UID:one\nSUMMARY:Intro\nDTSTART:20261110T100000Z\nORGANIZER;CN="Ana Ruiz":MAILTO:Ana@Northwind.IO\n'
        'ATTENDEE;CN="Doe, Jane";PARTSTAT=accepted:mailto:Jane.Doe@ACME.com\n'
        "DESCRIPTION:" + "x" * 2500
    )
    (item,) = items_of(write(tmp_path, text))
    assert item.recurrence_id is None and item.provider_id == "one|" and item.end == item.start
    assert item.organizer == Participant("ana@northwind.io", "Ana Ruiz", "organizer", None)
    assert item.attendees == (Participant("jane.doe@acme.com", "Doe, Jane", "attendee", "ACCEPTED"),)
    assert len(item.description) == 2000
    (series_item, *_) = items_of(write(tmp_path, calendar(WEEKLY)))
    assert [a.email for a in series_item.attendees] == ["jane@acme.com", "ana@northwind.io"]


def test_unchanged_file_yields_nothing_and_is_not_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, calendar(WEEKLY))
    source = IcsSource(str(path), "ana@northwind.io")
    (first,) = source.batches(None, ctx())
    st = path.stat()
    assert first.snapshot and len(first.items) == 8
    assert first.cursor == {
        "mtime_ns": st.st_mtime_ns,
        "size": st.st_size,
        "sha256": first.cursor["sha256"],
        "window": "2026-05-28",
    }
    assert json.loads(json.dumps(first.cursor)) == first.cursor

    def no_read() -> bytes:
        raise AssertionError("an unchanged file must not be read")

    with monkeypatch.context() as patched:
        patched.setattr(source, "_read_bytes", no_read)
        assert list(source.batches(first.cursor, ctx())) == []

    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched, same bytes
    (touched,) = source.batches(first.cursor, ctx())
    assert touched.items == () and not touched.snapshot  # only the cursor moves on
    assert touched.cursor["mtime_ns"] == st.st_mtime_ns + 5_000_000_000
    with monkeypatch.context() as patched:
        patched.setattr(source, "_read_bytes", no_read)
        assert list(source.batches(touched.cursor, ctx())) == []

    (next_day,) = source.batches(first.cursor, ctx(NOW + timedelta(days=1)))  # the window moved
    assert next_day.snapshot and next_day.cursor["window"] == "2026-05-29"

    path.write_bytes(calendar(WEEKLY.replace("Weekly sync", "Weekly review")).encode())
    (changed,) = source.batches(first.cursor, ctx())
    assert {i.summary for i in changed.items if isinstance(i, CalendarItem)} == {"Weekly review"}
    assert changed.cursor["sha256"] != first.cursor["sha256"]


def test_all_day_event_starts_at_midnight_in_x_wr_timezone_or_utc(tmp_path: Path) -> None:
    event = "UID:offsite\nSUMMARY:Offsite\nDTSTART;VALUE=DATE:20261110\nDTEND;VALUE=DATE:20261112"
    (ny,) = items_of(write(tmp_path, calendar(event, head="X-WR-TIMEZONE:America/New_York")))
    assert ny.all_day and ny.start == utc(2026, 11, 10, 5) and ny.end == utc(2026, 11, 12, 5)
    (plain,) = items_of(write(tmp_path, calendar(event)))
    assert plain.all_day and plain.start == utc(2026, 11, 10) and plain.recurrence_id is None
    weekly = event + "\nRRULE:FREQ=WEEKLY;COUNT=2"
    assert [i.recurrence_id for i in items_of(write(tmp_path, calendar(weekly)))] == [
        utc(2026, 11, 10),
        utc(2026, 11, 17),
    ]


def test_floating_times_use_x_wr_timezone_and_utc_rules_keep_local_time(tmp_path: Path) -> None:
    floating = "UID:f\nSUMMARY:f\nDTSTART:20261110T090000"
    (item,) = items_of(write(tmp_path, calendar(floating, head="X-WR-TIMEZONE:Europe/Madrid")))
    assert item.start == utc(2026, 11, 10, 8)
    (no_zone,) = items_of(write(tmp_path, calendar(floating)))
    assert no_zone.start == utc(2026, 11, 10, 9)
    # Google writes UTC times and means the calendar's zone: a 09:00 Madrid meeting stays at 09:00 local
    google = "UID:g\nSUMMARY:g\nDTSTART:20261019T070000Z\nRRULE:FREQ=WEEKLY;COUNT=2"
    starts = [i.start for i in items_of(write(tmp_path, calendar(google, head="X-WR-TIMEZONE:Europe/Madrid")))]
    assert starts == [utc(2026, 10, 19, 7), utc(2026, 10, 26, 8)]


def test_custom_vtimezone_is_taken_from_each_file_not_a_process_wide_cache(tmp_path: Path) -> None:
    def outlook(offset: str) -> str:
        zone = (
            "BEGIN:VTIMEZONE\nTZID:Customized Time Zone\nBEGIN:STANDARD\nDTSTART:16010101T000000\n"
            f"TZOFFSETFROM:{offset}\nTZOFFSETTO:{offset}\nEND:STANDARD\nEND:VTIMEZONE"
        )
        return calendar("UID:o\nSUMMARY:o\nDTSTART;TZID=Customized Time Zone:20261110T100000", head=zone)

    (east,) = items_of(write(tmp_path, outlook("+0500"), "east.ics"))
    (west,) = items_of(write(tmp_path, outlook("-0300"), "west.ics"))
    assert east.start == utc(2026, 11, 10, 5) and west.start == utc(2026, 11, 10, 13)


def test_this_and_future_override_moves_later_occurrences_but_keeps_their_recurrence_ids(
    tmp_path: Path,
) -> None:
    master = "UID:r\nSUMMARY:r\nDTSTART:20261102T100000Z\nDTEND:20261102T110000Z\nRRULE:FREQ=WEEKLY;COUNT=6"
    moved = "UID:r\nSUMMARY:r2\nRECURRENCE-ID;RANGE=THISANDFUTURE:20261116T100000Z\nDTSTART:20261116T120000Z\n"
    moved += "DTEND:20261116T130000Z\nSEQUENCE:1"
    items = items_of(write(tmp_path, calendar(master, moved)))
    rids = [i.recurrence_id or NOW for i in items]
    assert [(i.start.day, i.start.hour, r.day, r.hour) for i, r in zip(items, rids, strict=True)] == [
        (2, 10, 2, 10),
        (9, 10, 9, 10),
        (16, 12, 16, 10),
        (23, 12, 23, 10),
        (30, 12, 30, 10),
        (7, 12, 7, 10),
    ]


def test_broken_vevents_are_quarantined_while_the_rest_passes(tmp_path: Path) -> None:
    text = calendar(
        "UID:good\nSUMMARY:good\nDTSTART:20261110T100000Z",
        "UID:bad-date\nSUMMARY:bad\nDTSTART:20261340T100000Z",
        "UID:bad-rule\nSUMMARY:bad\nDTSTART:20261110T100000Z\nRRULE:FREQ=SOMETIMES",
        "UID:no-start\nSUMMARY:bad",
        "UID:flood\nSUMMARY:bad\nDTSTART:20261110T100000Z\nRRULE:FREQ=SECONDLY",
        "UID:bad-sequence\nSUMMARY:kept\nDTSTART:20261111T100000Z\nSEQUENCE:one",
    )
    started = time.perf_counter()
    (batch,) = sync(write(tmp_path, text))
    assert time.perf_counter() - started < 5
    assert batch.snapshot
    assert [i.ical_uid for i in batch.items if isinstance(i, CalendarItem)] == ["good", "bad-sequence"]
    bad = {q.provider_id: q.reason for q in batch.items if isinstance(q, Quarantined)}
    assert set(bad) == {"bad-date|", "bad-rule|", "no-start|", "flood|"}
    assert all("\n" not in r and r.startswith("VEVENT ") for r in bad.values())
    assert "DTSTART" in bad["bad-date|"] and "RRULE" in bad["bad-rule|"] and "repeats more" in bad["flood|"]


def test_broken_vtimezone_or_alarm_does_not_lose_the_calendar(tmp_path: Path) -> None:
    zone = (
        "BEGIN:VTIMEZONE\nTZID:Broken\nBEGIN:STANDARD\nDTSTART:19700101T000000\nTZOFFSETFROM:+5744\n"
        "TZOFFSETTO:+0100\nEND:STANDARD\nEND:VTIMEZONE"
    )
    alarm = "BEGIN:VALARM\nACTION:DISPLAY\nTRIGGER;RELATED=START:PT-2H\nEND:VALARM"
    text = calendar(
        "UID:a\nSUMMARY:a\nDTSTART;TZID=Europe/Berlin:20261110T100000\n" + alarm,
        "UID:b\nSUMMARY:b\nDTSTART:20261111T100000Z",
        head=zone,
    )
    items = items_of(write(tmp_path, text))
    assert [(i.ical_uid, i.start) for i in items] == [
        ("a", utc(2026, 11, 10, 9)),
        ("b", utc(2026, 11, 11, 10)),
    ]


def test_unparseable_file_is_one_quarantined_entry_not_a_snapshot_and_not_retried(tmp_path: Path) -> None:
    for text in ("<html><body>Please log in</body></html>", "", calendar("UID:x\nSUMMARY:x")[:-20]):
        path = write(tmp_path, text)
        (batch,) = sync(path)
        (entry,) = batch.items
        assert isinstance(entry, Quarantined) and not batch.snapshot and batch.window is None
        assert entry.provider_id == entry.locator == str(path) and "\n" not in entry.reason
        assert sync(path, batch.cursor) == []


def test_missing_file_raises_unreachable(tmp_path: Path) -> None:
    source = IcsSource(str(tmp_path / "gone.ics"), "ana@northwind.io")
    with pytest.raises(Unreachable, match="gone.ics"):
        source.check()
    with pytest.raises(Unreachable):
        list(source.batches(None, ctx()))
    IcsSource(str(write(tmp_path, calendar())), "ana@northwind.io").check()


def test_missing_uid_gets_a_stable_synthetic_uid(tmp_path: Path) -> None:
    text = calendar("SUMMARY:No uid\nDTSTART:20261110T100000Z")
    (a,) = items_of(write(tmp_path, text, "a.ics"))
    (b,) = items_of(write(tmp_path, text, "b.ics"))
    assert a.ical_uid == b.ical_uid and a.ical_uid.endswith("@inkless.invalid")


def test_items_are_sorted_and_content_hash_tracks_content(tmp_path: Path) -> None:
    text = calendar(
        "UID:b\nSUMMARY:b\nDTSTART:20261110T100000Z",
        "UID:a\nSUMMARY:a\nDTSTART:20261110T100000Z",
        "UID:c\nSUMMARY:c\nDTSTART:20261109T100000Z",
    )
    first = items_of(write(tmp_path, text))
    assert [i.ical_uid for i in first] == ["c", "a", "b"]
    assert [i.content_hash for i in first] == [i.content_hash for i in items_of(write(tmp_path, text))]
    renamed = items_of(write(tmp_path, text.replace("SUMMARY:a", "SUMMARY:a2")))
    assert [x.content_hash == y.content_hash for x, y in zip(first, renamed, strict=True)] == [
        True,
        False,
        True,
    ]


def test_fetch_returns_the_occurrence_by_locator(tmp_path: Path) -> None:
    source = IcsSource(str(write(tmp_path, calendar(WEEKLY, WEEKLY_MOVED, "UID:one\nDTSTART:20200101T100000Z"))), "a")
    moved = source.fetch("weekly-1@example.com|2026-11-02T09:00:00+00:00", ctx())
    assert isinstance(moved, CalendarItem) and moved.start == utc(2026, 11, 3, 14)
    old_single = source.fetch("one|", ctx())  # outside the sync window, still found
    assert isinstance(old_single, CalendarItem) and old_single.start == utc(2020, 1, 1, 10)
    assert source.fetch("weekly-1@example.com|2026-11-04T09:00:00+00:00", ctx()) is None
    assert source.fetch("nope|", ctx()) is None


def test_five_megabyte_calendar_parses_quickly(tmp_path: Path) -> None:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN"]
    base, n = datetime(2022, 1, 3, 9), 0
    while sum(map(len, lines)) < 5_000_000:
        n += 1
        start = base + timedelta(days=(n * 7) % 1800, hours=n % 8)
        lines += [
            "BEGIN:VEVENT",
            f"UID:{n:08d}-040000008200E00074C5B7101A82E008",
            f"SUMMARY:Meeting {n}",
            f"DTSTART;TZID=Europe/Berlin:{start:%Y%m%dT%H%M%S}",
            f"DTEND;TZID=Europe/Berlin:{start + timedelta(hours=1):%Y%m%dT%H%M%S}",
            *(["RRULE:FREQ=WEEKLY;COUNT=30"] if n % 10 == 0 else []),
            "DESCRIPTION:" + "agenda " * 40,
            "X-ALT-DESC;FMTTYPE=text/html:" + "<p>agenda</p>" * 150,
            "ORGANIZER;CN=Org:mailto:org@example.com",
            *(f"ATTENDEE;CN=P{k};PARTSTAT=ACCEPTED:mailto:p{k}@example.com" for k in range(4)),
            "BEGIN:VALARM",
            "TRIGGER:-PT15M",
            "ACTION:DISPLAY",
            "END:VALARM",
            "END:VEVENT",
        ]
    path = write(tmp_path, "\r\n".join([*lines, "END:VCALENDAR", ""]))
    started = time.perf_counter()
    (batch,) = sync(path)
    elapsed = time.perf_counter() - started
    print(f"5 MB calendar, {n} VEVENTs, {len(batch.items)} occurrences in the window: {elapsed:.2f}s")
    assert len(batch.items) > 100 and not any(isinstance(i, Quarantined) for i in batch.items)
    assert elapsed < 4  # about 0.3 s on an idle machine


# -- HTTP feeds --------------------------------------------------------------------------------------------


class Feed(BaseHTTPRequestHandler):
    """Serves ``server.body`` with ``server.etag``; answers a matching If-None-Match with 304."""

    server: FeedServer

    def do_GET(self) -> None:
        self.server.seen.append(dict(self.headers))
        if self.headers.get("If-None-Match") == self.server.etag:
            self.send_response(304)
            self.send_header("ETag", self.server.etag)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/calendar; charset=utf-8")
        self.send_header("ETag", self.server.etag)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FeedServer(HTTPServer):
    body = b""
    etag = '"v1"'
    seen: list[dict[str, str]]


@pytest.fixture
def feed() -> Iterator[FeedServer]:
    server = FeedServer(("127.0.0.1", 0), Feed)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_http_feed_uses_etag_304_means_no_batch_and_a_changed_body_gives_one(feed: FeedServer) -> None:
    url = f"http://127.0.0.1:{feed.server_address[1]}/ana.ics"
    feed.body = calendar(WEEKLY, WEEKLY_MOVED).encode()
    with httpx.Client(timeout=5) as client:
        source = IcsSource(url, "ana@northwind.io", client=client)
        source.check()
        (first,) = source.batches(None, ctx())
        assert first.snapshot and len(first.items) == 8 and first.cursor["etag"] == '"v1"'
        assert "If-None-Match" not in feed.seen[-1]

        assert list(source.batches(first.cursor, ctx())) == []
        assert feed.seen[-1]["If-None-Match"] == '"v1"'

        feed.body, feed.etag = calendar(WEEKLY, WEEKLY_MOVED.replace("(moved)", "(later)")).encode(), '"v2"'
        (changed,) = source.batches(first.cursor, ctx())
        assert "Weekly sync (later)" in {i.summary for i in changed.items if isinstance(i, CalendarItem)}
        assert changed.cursor["etag"] == '"v2"'

        feed.etag = '"v3"'  # a server that changes its ETag but not the body: the body hash decides
        (same,) = source.batches(changed.cursor, ctx())
        assert same.items == () and not same.snapshot and same.cursor["etag"] == '"v3"'
    (default_client,) = IcsSource(url, "ana@northwind.io").batches(None, ctx())
    assert len(default_client.items) == 8


def test_http_errors_map_to_provider_errors_without_credentials() -> None:
    statuses = iter([401, 403, 404])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(statuses))

    secret_url = "https://ana:hunter2@cal.example.com/feeds/private-9f8e7d6c5b4a/basic.ics?token=s3cr3t"
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        source = IcsSource(secret_url, "ana@northwind.io", client=client)
        for expected in (AuthExpired, AuthExpired, Unreachable):
            with pytest.raises(expected) as raised:
                list(source.batches(None, ctx()))
            assert not re.search("hunter2|s3cr3t|9f8e7d6c5b4a", str(raised.value)), str(raised.value)
            assert "cal.example.com" in str(raised.value)


def test_unreachable_host_raises_unreachable_without_credentials() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        source = IcsSource("https://u:pw@cal.example.com/x.ics?key=abc", "a", client=client)
        with pytest.raises(Unreachable) as raised:
            source.check()
    assert "pw@" not in str(raised.value) and "abc" not in str(raised.value) and "\n" not in str(raised.value)


def test_webcal_url_is_fetched_over_https() -> None:
    requested: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requested.append(str(request.url))
        return httpx.Response(200, content=calendar("UID:w\nSUMMARY:w\nDTSTART:20261110T100000Z").encode())

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        (batch,) = IcsSource("webcal://cal.example.com/team.ics", "a", client=client).batches(None, ctx())
    assert requested == ["https://cal.example.com/team.ics"] and len(batch.items) == 1


# -- real data ---------------------------------------------------------------------------------------------


def test_synthetic_rep_calendars_yield_every_true_meeting_occurrence() -> None:
    root = corpus("synthetic-dev", "small")
    found: set[tuple[str, str | None]] = set()
    uids: set[str] = set()
    for path in sorted((root / "calendar").glob("*.ics")):
        (batch,) = sync(path)
        assert not any(isinstance(i, Quarantined) for i in batch.items)
        for item in batch.items:
            assert isinstance(item, CalendarItem)
            rid = item.recurrence_id.strftime("%Y-%m-%dT%H:%M") if item.recurrence_id else None
            found.add((item.ical_uid, rid))
        unfolded = re.sub(r"\r?\n[ \t]", "", path.read_text())
        uids |= set(re.findall(r"(?m)^UID:(.*?)\r?$", unfolded))
    truth = [json.loads(line) for line in (root / "truth" / "activities.jsonl").read_text().splitlines()]
    meetings = [t for t in truth if t["kind"] == "meeting" and t["ical_uid"] in uids]
    missing = [t for t in meetings if (t["ical_uid"], (t["recurrence_id"] or "")[:16] or None) not in found]
    print(f"synthetic calendars: {len(meetings) - len(missing)}/{len(meetings)} true meeting occurrences found")
    assert meetings and not missing, missing[:3]


@pytest.mark.slow
def test_every_real_world_ics_file_yields_one_batch_and_never_raises() -> None:
    root = corpus("ics")
    files = sorted(root.rglob("*.ics"))
    counts: Counter[str] = Counter()
    empty_near_first_event: list[str] = []
    for path in files:
        data = path.read_bytes()
        first = re.search(rb"(?is)BEGIN:VEVENT.*?\nDTSTART[^:\r\n]*:(\d{8})", data)
        nows = [("now", NOW)]
        if first and re.fullmatch(rb"\d{4}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])", first.group(1)):
            nows.append(("near", datetime.strptime(first.group(1).decode(), "%Y%m%d").replace(tzinfo=UTC)))
        for label, now in nows:
            batches = sync(path, now=now + timedelta(days=10))
            assert len(batches) == 1, path
            (batch,) = batches
            meetings = sum(isinstance(i, CalendarItem) for i in batch.items)
            quarantined = sum(isinstance(i, Quarantined) for i in batch.items)
            assert meetings + quarantined == len(batch.items)
            assert batch.snapshot or (meetings, quarantined) == (0, 1)
            counts[f"{label}: files"] += 1
            counts[f"{label}: files with items"] += meetings > 0
            counts[f"{label}: files with quarantined VEVENTs"] += batch.snapshot and quarantined > 0
            counts[f"{label}: files quarantined whole"] += not batch.snapshot
            counts[f"{label}: occurrences"] += meetings
            if label == "near" and not batch.items:
                empty_near_first_event.append(str(path.relative_to(root)))
    print(f"{len(files)} .ics files:", dict(sorted(counts.items())))
    print("no occurrence near the first DTSTART (EXDATE'd or UNTIL before start):", empty_near_first_event)
    assert counts["near: files with items"] > 450
    assert len(empty_near_first_event) <= 15
