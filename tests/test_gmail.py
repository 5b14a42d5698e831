"""The Gmail source with the real google-api-python-client against recorded-shape answers: backfill with
paging and batches, incremental history, an expired history id through the engine, auth and rate-limit
errors, timeouts, malformed payloads and the same email seen through Gmail and an mbox."""

from __future__ import annotations

import base64
import json
import shutil
import socket
from email.parser import BytesParser, Parser
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httplib2
import pytest
from googleapiclient.discovery import build
from googleapiclient.http import HttpMock, HttpMockSequence
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import providers.base
from agent.crm import import_and_reattribute
from agent.sync import SyncEngine
from providers.errors import AuthExpired, CursorExpired, RateLimited, Unreachable
from providers.gmail import GmailSource
from providers.records import MailItem, Quarantined
from store.export import activity_rows
from store.models import Activity
from store.models import Source as SourceRow
from store.queries import set_setting
from tests.conftest import ROOT
from tests.dovecot import mbox_messages
from tests.test_mailfiles import Spy, message

DATA = Path(__file__).parent / "data" / "google"
DEMO = ROOT / "agent" / "demo_data"
OWNER = "ana@northwind.io"
RECONNECT = f"inkless connect gmail --owner {OWNER}"


def fixture(name: str) -> str:
    return (DATA / name).read_text()


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The SDK and the source back off with time.sleep: record the waits instead of waiting."""
    waits: list[float] = []
    monkeypatch.setattr("time.sleep", lambda s: waits.append(s))
    return waits


# ------------------------------------------------------------------------------------ a fake mailbox
class FakeGmail:
    """An httplib2.Http stand-in answering the Gmail v1 calls the source makes, shaped like the API
    reference: users.getProfile, messages.list (paged, ``q=after:``), messages.get (metadata/raw),
    history.list (paged) and the multipart/mixed batch endpoint. ``fail`` holds errors to answer first:
    (path substring, status, body, extra headers), each used once."""

    def __init__(self, page_size: int | None = None) -> None:
        self.messages: dict[str, dict[str, Any]] = {}
        self.history: list[dict[str, Any]] = []
        self.history_id = 1000
        self.counter = 0
        self.expired_before = 0  # history ids below this answer 404
        self.fail: list[tuple[str, int, str, dict[str, str]]] = []
        self.log: list[str] = []
        self.page_size = page_size
        self.corrupt: dict[str, str] = {}  # id -> raw value to answer instead

    def add(self, raw: bytes, labels: tuple[str, ...] = ("INBOX",), record: bool = True) -> str:
        self.counter += 1
        mid = f"{self.counter + 0x18C0000000:x}"
        msg = BytesParser().parsebytes(raw, headersonly=True)
        when = parsedate_to_datetime(str(msg["date"]))
        self.history_id += 1
        self.messages[mid] = {
            "id": mid,
            "threadId": mid,
            "labelIds": list(labels),
            "raw": raw,
            "internalDate": str(int(when.timestamp() * 1000)),
            "historyId": str(self.history_id),
        }
        if record:
            self.history.append(
                {
                    "id": str(self.history_id),
                    "messages": [{"id": mid, "threadId": mid}],
                    "messagesAdded": [{"message": {"id": mid, "threadId": mid, "labelIds": list(labels)}}],
                }
            )
        return mid

    def delete(self, mid: str) -> None:
        self.messages.pop(mid)
        self.history_id += 1
        self.history.append(
            {
                "id": str(self.history_id),
                "messages": [{"id": mid, "threadId": mid}],
                "messagesDeleted": [{"message": {"id": mid, "threadId": mid, "labelIds": ["INBOX"]}}],
            }
        )

    # -- httplib2 interface ------------------------------------------------------------------------
    def request(self, uri: str, method: str = "GET", body: Any = None, headers: Any = None, **_: Any) -> Any:
        parts = urlsplit(uri)
        if parts.path.endswith("/batch/gmail/v1"):
            self.log.append("batch")
            return self._batch(body, (headers or {}).get("content-type", ""))
        status, payload, extra = self.answer(method, parts.path + ("?" + parts.query if parts.query else ""))
        return httplib2.Response({"status": str(status), "content-type": "application/json", **extra}), payload

    def answer(self, method: str, target: str, in_batch: bool = False) -> tuple[int, bytes, dict[str, str]]:
        parts = urlsplit(target)
        path, query = unquote(parts.path), parse_qs(parts.query)
        self.log.append(f"{'batched ' if in_batch else ''}{method} {path} {parts.query}")
        for i, (needle, status, fbody, extra) in enumerate(self.fail):
            if needle in target:
                del self.fail[i]
                return status, fbody.encode(), extra
        prefix = "/gmail/v1/users/me/"
        name = path.split(prefix, 1)[1] if prefix in path else ""
        if name == "profile":
            profile = {"emailAddress": OWNER, "messagesTotal": len(self.messages), "historyId": str(self.history_id)}
            return self._json(profile)
        if name == "messages":
            return self._list(query)
        if name.startswith("messages/"):
            return self._get(name.split("/", 1)[1], query)
        if name == "history":
            return self._history(query)
        return 404, fixture("error_404_history.json").encode(), {}

    @staticmethod
    def _json(data: Any) -> tuple[int, bytes, dict[str, str]]:
        return 200, json.dumps(data).encode(), {}

    def _list(self, query: dict[str, list[str]]) -> tuple[int, bytes, dict[str, str]]:
        after = int(query["q"][0].split("after:")[1]) if "q" in query else 0
        ids = [m for m, v in self.messages.items() if int(v["internalDate"]) // 1000 > after]
        ids.sort(key=lambda m: -int(self.messages[m]["internalDate"]))  # newest first, as Gmail lists
        size = min(int(query.get("maxResults", ["100"])[0]), self.page_size or 500)
        start = int(query.get("pageToken", ["0"])[0])
        page: dict[str, Any] = {"resultSizeEstimate": len(ids)}
        if ids[start : start + size]:
            page["messages"] = [{"id": m, "threadId": self.messages[m]["threadId"]} for m in ids[start : start + size]]
        if start + size < len(ids):
            page["nextPageToken"] = str(start + size)
        return self._json(page)

    def _get(self, mid: str, query: dict[str, list[str]]) -> tuple[int, bytes, dict[str, str]]:
        msg = self.messages.get(mid)
        if msg is None:
            return 404, fixture("error_404_history.json").encode(), {}
        fmt = query.get("format", ["full"])[0]
        base = {k: msg[k] for k in ("id", "threadId", "labelIds", "historyId", "internalDate")}
        base["snippet"] = ""
        base["sizeEstimate"] = len(msg["raw"])
        if fmt == "raw":
            return self._json({**base, "raw": self.corrupt.get(mid, b64url(msg["raw"]))})
        wanted = {h.lower() for h in query.get("metadataHeaders", [])}
        parsed = Parser().parsestr(msg["raw"].decode("utf-8", "replace"), headersonly=True)
        headers = [{"name": k, "value": str(v)} for k, v in parsed.items() if k.lower() in wanted]
        payload = {"partId": "", "mimeType": parsed.get_content_type(), "filename": "", "headers": headers}
        if mid in self.corrupt and self.corrupt[mid] == "no-payload":
            return self._json(base)
        return self._json({**base, "payload": payload})

    def _history(self, query: dict[str, list[str]]) -> tuple[int, bytes, dict[str, str]]:
        start = int(query["startHistoryId"][0])
        if start < self.expired_before:
            return 404, fixture("error_404_history.json").encode(), {}
        records = [r for r in self.history if int(r["id"]) > start]
        size = int(query.get("maxResults", ["100"])[0])
        size = min(size, self.page_size or size)
        offset = int(query.get("pageToken", ["0"])[0])
        page: dict[str, Any] = {"historyId": str(self.history_id)}
        if records[offset : offset + size]:
            page["history"] = records[offset : offset + size]
        if offset + size < len(records):
            page["nextPageToken"] = str(offset + size)
        return self._json(page)

    def _batch(self, body: str, content_type: str) -> Any:
        outer = Parser().parsestr(f"Content-Type: {content_type}\r\n\r\n{body}")
        assert outer.is_multipart()
        parts = outer.get_payload()
        assert len(parts) <= 50, "a batch must hold at most 50 calls"
        boundary = "batch_fake_boundary"
        out = []
        for part in parts:
            inner = str(part.get_payload())
            method, target, _ = inner.split("\r\n", 1)[0].split(" ", 2)
            status, payload, _extra = self.answer(method, target, in_batch=True)
            cid = part["Content-ID"]
            out.append(
                f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <response-{cid[1:]}\r\n\r\n"
                f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\nContent-Type: application/json; "
                f"charset=UTF-8\r\n\r\n{payload.decode()}\r\n"
            )
        content = "".join(out) + f"--{boundary}--\r\n"
        resp = httplib2.Response({"status": "200", "content-type": f"multipart/mixed; boundary={boundary}"})
        return resp, content.encode()


def service_for(http: Any) -> Any:
    return build("gmail", "v1", http=http, static_discovery=True)


def gmail(http: Any, **settings: Any) -> GmailSource:
    return GmailSource("gmail:" + OWNER, OWNER, {"retries": 2, **settings}, service=service_for(http))


def demo_mailbox() -> FakeGmail:
    fake = FakeGmail()
    for raw in mbox_messages(DEMO / "mail.mbox"):
        fake.add(raw, record=False)
    return fake


# ---------------------------------------------------------------------------------------- backfill
def test_gmail_backfill_pages_batches_and_parses_with_the_shared_parser() -> None:
    fake = FakeGmail(page_size=4)
    raws = [message(i) for i in range(10)]
    for raw in raws:
        fake.add(raw)
    fake.add(message(50), labels=("DRAFT",))
    spy = Spy(batch_size=4)
    batches, cursor = spy.run(gmail(fake), None)
    items = [i for b in batches for i in b.items]
    assert sorted(i.message_id for i in items if isinstance(i, MailItem)) == sorted(
        f"<m{i}@acme.com>" for i in range(10)
    )
    # one page per batch, the cursor of each pointing at the next page
    # 11 ids on pages of 4; the draft (newest, on the first page) is not an item
    assert [len(b.items) for b in batches] == [3, 4, 3]
    assert batches[0].cursor["backfill"] == {"page_token": "4"}
    assert cursor is not None and cursor["backfill"] is None
    assert cursor["history_id"] == "1011"  # taken from getProfile before the listing
    # headers first, the whole message only where needed; no per-message GETs outside batches
    gets = [line for line in fake.log if "/users/me/messages/" in line]
    assert len(gets) == 21 and all(line.startswith("batched GET") for line in gets)  # 11 metadata, 10 raw (no draft)
    assert fake.log.count("batch") == 6  # per page: one metadata batch, one raw batch
    from providers.mailparse import parse_message

    first = next(i for i in items if isinstance(i, MailItem) and i.message_id == "<m0@acme.com>")
    expected = parse_message(raws[0], first.provider_id, first.provider_id)
    assert first == expected
    json.dumps(cursor)


def test_gmail_backfill_resumes_from_any_cursor_without_loss_or_duplicates() -> None:
    fake = FakeGmail(page_size=3)
    for i in range(8):
        fake.add(message(i))
    first, _ = Spy(batch_size=3).run(gmail(fake), None)
    everything = sorted(f"<m{i}@acme.com>" for i in range(8))
    for k, batch in enumerate(first):
        before = [i.message_id for b in first[: k + 1] for i in b.items if isinstance(i, MailItem)]
        rest, _ = Spy(batch_size=3).run(gmail(fake), batch.cursor)
        after = [i.message_id for b in rest for i in b.items if isinstance(i, MailItem)]
        assert sorted(before + after) == everything


def test_gmail_header_signals_avoid_downloading_bulk_mail() -> None:
    fake = FakeGmail()
    news = (
        b"From: News <news@vendor.example>\r\nTo: ana@northwind.io\r\nSubject: Weekly digest\r\n"
        b"Date: Thu, 01 Oct 2026 09:00:00 +0000\r\nMessage-ID: <n1@vendor.example>\r\n"
        b"List-Unsubscribe: <mailto:u@vendor.example>\r\n\r\nbig body\r\n"
    )
    nid = fake.add(news)
    pid = fake.add(message(1))
    batches, _ = Spy().run(gmail(fake), None)
    items = {i.provider_id: i for b in batches for i in b.items}
    assert isinstance(items[nid], MailItem) and items[nid].header("list-unsubscribe") is not None
    raw_gets = [line for line in fake.log if "format=raw" in line]
    assert len(raw_gets) == 1 and pid in raw_gets[0]


# ------------------------------------------------------------------------------------- incremental
def test_gmail_incremental_reads_history_and_ignores_deletions() -> None:
    fake = FakeGmail()
    ids = [fake.add(message(i)) for i in range(3)]
    spy = Spy()
    _, cursor = spy.run(gmail(fake), None)
    fake.add(message(7))
    fake.delete(ids[0])
    fake.add(message(8), labels=("SPAM",))
    spy.parsed = 0
    batches, new_cursor = spy.run(gmail(fake), cursor)
    assert [i.message_id for b in batches for i in b.items] == ["<m7@acme.com>"]
    assert all(not b.deleted for b in batches)
    assert new_cursor is not None and new_cursor["history_id"] == str(fake.history_id)
    again, _ = spy.run(gmail(fake), new_cursor)
    assert [i for b in again for i in b.items] == []
    assert any("/history" in line and "historyTypes=messageAdded" in line for line in fake.log)


def test_gmail_history_404_raises_cursor_expired() -> None:
    fake = FakeGmail()
    fake.add(message(1))
    _, cursor = Spy().run(gmail(fake), None)
    fake.expired_before = 10**9
    with pytest.raises(CursorExpired):
        list(gmail(fake).batches(cursor, Spy().ctx()))


# ----------------------------------------------------------------------------------------- errors
def test_gmail_401_is_auth_expired_with_the_reconnect_command() -> None:
    http = HttpMockSequence([({"status": "401"}, fixture("error_401.json"))])
    with pytest.raises(AuthExpired, match=RECONNECT):
        list(gmail(http).batches(None, Spy().ctx()))


def test_gmail_invalid_grant_is_auth_expired_with_the_reconnect_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from google.oauth2.credentials import Credentials
    from google_auth_httplib2 import AuthorizedHttp

    creds = Credentials.from_authorized_user_info(json.loads(fixture("authorized_user.json")))
    http = AuthorizedHttp(creds, http=HttpMockSequence([({"status": "400"}, fixture("token_invalid_grant.json"))]))
    with pytest.raises(AuthExpired, match=RECONNECT) as err:
        list(gmail(http).batches(None, Spy().ctx()))
    assert "invalid_grant" in str(err.value) and "1//test-refresh" not in str(err.value)


def test_gmail_default_service_loads_the_stored_grant(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    from providers.secrets import save_secret

    monkeypatch.setenv("INKLESS_SECRET_BACKEND", "file")
    monkeypatch.setenv("INKLESS_SECRET_FILE", str(tmp_path / "s.bin"))
    monkeypatch.setenv("INKLESS_SECRET_KEY", Fernet.generate_key().decode())
    with pytest.raises(AuthExpired, match=RECONNECT):
        GmailSource("gmail", OWNER, {"token_ref": "google:ana"}).check()
    save_secret("google:ana", fixture("authorized_user.json"))
    src = GmailSource("gmail", OWNER, {"token_ref": "google:ana", "api_endpoint": "http://127.0.0.1:9/"})
    assert src.service._baseUrl == "http://127.0.0.1:9/"
    assert src._batch_uri() == "http://127.0.0.1:9/batch/gmail/v1"


@pytest.mark.parametrize(
    ("status", "body"), [("403", "error_403_rate.json"), ("429", "error_429.json")], ids=["403-rate", "429"]
)
def test_gmail_rate_limits_are_retried_then_rate_limited_with_retry_after(
    status: str, body: str, no_sleep: list[float]
) -> None:
    ok = json.loads(fixture("profile.json"))
    retried = HttpMockSequence(
        [({"status": status}, fixture(body)), ({"status": "200"}, json.dumps(ok)), ({"status": "200"}, "{}")]
    )
    src = gmail(retried)
    src.check()  # the SDK retried by itself
    assert len(no_sleep) == 1
    limited = HttpMockSequence([({"status": status, "retry-after": "42"}, fixture(body))] * 3)
    with pytest.raises(RateLimited) as err:
        gmail(limited).check()
    assert err.value.retry_after == 42.0


def test_gmail_5xx_after_retries_is_unreachable() -> None:
    http = HttpMockSequence([({"status": "500"}, fixture("error_500.json"))] * 3)
    with pytest.raises(Unreachable, match="500"):
        list(gmail(http).batches(None, Spy().ctx()))


def test_gmail_batch_parts_rate_limited_are_retried() -> None:
    fake = FakeGmail()
    for i in range(3):
        fake.add(message(i))
    fake.fail.append(("format=raw", 429, fixture("error_429.json"), {}))
    batches, _ = Spy().run(gmail(fake), None)
    assert sorted(i.message_id for b in batches for i in b.items) == [f"<m{i}@acme.com>" for i in range(3)]
    fake2 = FakeGmail()
    fake2.add(message(1))
    fake2.fail += [("format=raw", 429, fixture("error_429.json"), {})] * 5
    with pytest.raises(RateLimited):
        list(gmail(fake2).batches(None, Spy().ctx()))


class TimeoutHttp(HttpMock):
    def request(self, *args: Any, **kwargs: Any) -> Any:
        raise TimeoutError("timed out")  # socket.timeout is TimeoutError


def test_gmail_timeout_is_unreachable() -> None:
    assert socket.timeout is TimeoutError
    with pytest.raises(Unreachable, match="in time"):
        list(gmail(TimeoutHttp()).batches(None, Spy().ctx()))


def test_gmail_malformed_payloads_are_quarantined_and_the_rest_goes_on() -> None:
    fake = FakeGmail()
    good = fake.add(message(1))
    bad_b64 = fake.add(message(2))
    no_payload = fake.add(message(3))
    fake.corrupt[bad_b64] = "!!!not base64!!!"
    fake.corrupt[no_payload] = "no-payload"
    batches, _ = Spy().run(gmail(fake), None)
    items = {i.provider_id: i for b in batches for i in b.items}
    assert isinstance(items[good], MailItem)
    assert isinstance(items[bad_b64], Quarantined) and "base64" in items[bad_b64].reason
    assert isinstance(items[no_payload], Quarantined) and "payload" in items[no_payload].reason


# ----------------------------------------------------------------------------- through the engine
def setup_demo(sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, fake: FakeGmail) -> int:
    monkeypatch.setitem(providers.base.REGISTRY, "gmail", "providers.gmail:GmailSource")
    monkeypatch.setattr(GmailSource, "_default_service", lambda self: service_for(fake))
    from tests.test_imap import DEMO_NOW

    with sessions.begin() as s:
        set_setting(s, "internal_domains", ["northwind.io", "northwindlabs.com"])
    c = DEMO / "crm"
    import_and_reattribute(sessions, DEMO_NOW, c / "companies.csv", c / "contacts.csv", c / "deals.csv")
    return add_source(sessions, "gmail", "gmail:" + OWNER, {"token_ref": "google:ana"})


def add_source(sessions: sessionmaker[Session], kind: str, location: str, settings: dict[str, Any]) -> int:
    from tests.test_imap import DEMO_NOW

    with sessions.begin() as s:
        row = SourceRow(kind=kind, location=location, owner=OWNER, settings=settings, created_at=DEMO_NOW)
        s.add(row)
        s.flush()
        return row.id


def activities(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return int(s.execute(select(func.count()).select_from(Activity)).scalar_one())


def test_gmail_history_404_triggers_resync_without_duplicates(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_imap import DEMO_NOW

    fake = demo_mailbox()
    setup_demo(sessions, monkeypatch, fake)
    first = SyncEngine(sessions, DEMO_NOW, workers=1).run()[0]
    assert first.error is None and first.stats.seen == 41 and first.stats.logged > 20
    n = activities(sessions)
    with sessions() as s:
        before = list(activity_rows(s))
    new = fake.add(message(99, frm="someone@freemail-example.com"))
    fake.expired_before = fake.history_id  # the saved history id is now too old
    fake.log.clear()
    again = SyncEngine(sessions, DEMO_NOW, workers=1).run()[0]
    assert again.error is None and again.stats.seen == 1 and again.stats.logged == 0
    assert activities(sessions) == n
    with sessions() as s:
        assert list(activity_rows(s)) == before
    # the resync listed the mailbox again but fetched only the message it did not have
    fetched = [line for line in fake.log if "format=" in line]
    assert fetched and all(new in line for line in fetched)


def test_same_email_via_gmail_and_mbox_is_one_activity(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.test_imap import DEMO_NOW

    fake = demo_mailbox()
    gmail_id = setup_demo(sessions, monkeypatch, fake)
    mbox = tmp_path / "mail.mbox"
    shutil.copy(DEMO / "mail.mbox", mbox)
    mbox_id = add_source(sessions, "mbox", str(mbox), {})
    only_mbox = SyncEngine(sessions, DEMO_NOW, workers=1).run([mbox_id])[0]
    assert only_mbox.error is None
    n = activities(sessions)
    assert n > 20
    with sessions() as s:
        ids_before = sorted(tuple(r["message_ids"]) for r in activity_rows(s))
    rep = SyncEngine(sessions, DEMO_NOW, workers=1).run([gmail_id])[0]
    assert rep.error is None and rep.stats.seen == 41
    assert activities(sessions) == n
    with sessions() as s:
        assert sorted(tuple(r["message_ids"]) for r in activity_rows(s)) == ids_before


def test_gmail_fetch_reads_one_message_again_by_its_locator() -> None:
    fake = FakeGmail()
    mid = fake.add(message(4))
    item = gmail(fake).fetch(mid, Spy().ctx())
    assert isinstance(item, MailItem) and item.message_id == "<m4@acme.com>" and item.locator == mid
    assert gmail(fake).fetch("nosuchid", Spy().ctx()) is None
