"""The Microsoft Graph sources with the real msgraph-sdk (kiota middleware, retry handler, error mapping)
over ``httpx.MockTransport``: a small fake of Graph's delta semantics (nextLink/deltaLink, @removed, 410)
serving record-shaped JSON from tests/data/graph, through the source API and through the sync engine."""

from __future__ import annotations

import asyncio
import json
import mailbox
import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import providers.base
from agent.crm import import_and_reattribute
from agent.sync import SyncEngine
from providers import graph as graph_module
from providers.base import SyncContext
from providers.errors import AuthExpired, CursorExpired, RateLimited, Unreachable
from providers.graph import GraphCalendarSource, GraphMailSource, MsalTokens, graph_client, ical_uid_from_graph
from providers.ics import expand, sync_window
from providers.mailparse import parse_message
from providers.records import Batch, CalendarItem, MailItem, Quarantined
from store.export import activity_rows, entity_rows
from store.models import Activity
from store.models import Source as SourceRow
from store.queries import set_setting
from tests.conftest import ROOT

DATA = Path(__file__).parent / "data" / "graph"
DEMO = ROOT / "agent" / "demo_data"
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
OWNER = "ana@northwind.io"
BASE = "http://graph.test/v1.0"
RECONNECT = f"inkless connect microsoft --owner {OWNER}"


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def error(status: int, name: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=load(name), headers=headers)


def demo_messages() -> list[bytes]:
    box = mailbox.mbox(DEMO / "mail.mbox", create=False)
    try:
        return [m.as_bytes() for m in box]
    finally:
        box.close()


def message(n: int, frm: str = "jane@acme.com", to: str = OWNER) -> bytes:
    return (
        f"From: Jane <{frm}>\r\nTo: {to}\r\nSubject: message {n}\r\nDate: Thu, 01 Oct 2026 09:{n % 60:02d}:00 +0000\r\n"
        f"Message-ID: <m{n}@acme.com>\r\n\r\nhello {n}\r\n"
    ).encode()


# ------------------------------------------------------------------------------------------- fake Graph
class FakeGraph:
    """Graph's delta semantics over an append-only change log per collection: the first round lists the
    live items, later rounds the changes since the round's deltaLink; tokens carry an epoch so that
    ``expire()`` makes every saved token answer 410 SyncStateNotFound."""

    def __init__(self) -> None:
        self.log: dict[str, list[dict[str, Any]]] = {"inbox": [], "sentitems": [], "calendar": []}
        self.mime: dict[str, bytes] = {}
        self.requests: list[httpx.Request] = []
        #: checked first, in order; a hook returning a response answers the request
        self.hooks: list[Callable[[httpx.Request], httpx.Response | None]] = []
        self.epoch = 1
        self.seq = 0
        #: series masters served by GET /me/events/{id} (calendarView lists only their instances)
        self.masters: dict[str, dict[str, Any]] = {}

    # -- content
    def add_mail(self, folder: str, raw: bytes, draft: bool = False) -> str:
        self.seq += 1
        mid = f"AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0AIiIsqMbYjsT5e-T7KzowPTAAAYbvHy{self.seq:04d}="
        self.mime[mid] = raw
        parsed = parse_message(raw, mid, mid)
        entry = dict(load("message_template.json"))
        entry.update(id=mid, isDraft=draft)
        if isinstance(parsed, MailItem):
            stamp = parsed.occurred_at.strftime("%Y-%m-%dT%H:%M:%SZ")
            entry.update(
                subject=parsed.subject,
                internetMessageId=parsed.message_id,
                receivedDateTime=stamp,
                sentDateTime=stamp,
                createdDateTime=stamp,
                lastModifiedDateTime=stamp,
            )
        self.log[folder].append(entry)
        return mid

    def remove(self, folder: str, item_id: str) -> None:
        odata = "#microsoft.graph.event" if folder == "calendar" else "#microsoft.graph.message"
        self.log[folder].append({"@odata.type": odata, "id": item_id, "@removed": {"reason": "deleted"}})

    def add_event(self, event: dict[str, Any]) -> None:
        self.log["calendar"].append(event)

    def expire(self) -> None:
        self.epoch += 1

    # -- serving
    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for hook in list(self.hooks):
            answer = hook(request)
            if answer is not None:
                return answer
        path = request.url.path
        if m := re.fullmatch(r"/v1\.0/me/mailFolders/(\w+)/messages/delta\(?\)?", path):
            return self.delta(m[1], request, "messages")
        if re.fullmatch(r"/v1\.0/me/calendarView/delta\(?\)?", path):
            return self.delta("calendar", request, "events")
        if m := re.fullmatch(r"/v1\.0/me/messages/([^/]+)/\$value", path):
            raw = self.mime.get(m[1])
            if raw is None:
                return error(404, "error_404_erroritemnotfound.json")
            return httpx.Response(200, content=raw, headers={"Content-Type": "text/plain"})
        if m := re.fullmatch(r"/v1\.0/me/events/([^/]+)", path):
            found = self.masters.get(m[1])
            return httpx.Response(200, json=found) if found else error(404, "error_404_erroritemnotfound.json")
        if m := re.fullmatch(r"/v1\.0/me/mailFolders/(\w+)", path):
            return httpx.Response(200, json={"id": m[1], "totalItemCount": len(self.log.get(m[1], []))})
        return error(404, "error_404_erroritemnotfound.json")

    def delta(self, coll: str, request: httpx.Request, kind: str) -> httpx.Response:
        q = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
        log = self.log[coll]
        if "$skiptoken" in q:
            epoch, start, end, offset = (int(x) for x in q["$skiptoken"].split("."))
        elif "$deltatoken" in q:
            epoch, start = (int(x) for x in q["$deltatoken"].split("."))
            end, offset = len(log), 0
        else:
            epoch, start, end, offset = self.epoch, 0, len(log), 0
            if coll == "calendar":
                assert "startDateTime" in q and "endDateTime" in q
        if epoch != self.epoch:
            return error(410, "error_410_syncstatenotfound.json")
        latest: dict[str, dict[str, Any]] = {}
        for entry in log[start:end]:
            key = entry.get("id") or json.dumps(entry, sort_keys=True)
            latest.pop(key, None)
            latest[key] = entry
        items = list(latest.values())
        if start == 0:
            items = [e for e in items if "@removed" not in e]
        prefer = ", ".join(request.headers.get_list("prefer"))
        size = int(m[1]) if (m := re.search(r"odata\.maxpagesize=(\d+)", prefer)) else 10
        page = items[offset : offset + size]
        here = f"{BASE}{request.url.path[len('/v1.0') :]}"
        body: dict[str, Any] = {"@odata.context": f"{BASE}/$metadata#Collection({kind[:-1]})", "value": page}
        if offset + size < len(items):
            body["@odata.nextLink"] = f"{here}?$skiptoken={self.epoch}.{start}.{end}.{offset + size}"
        else:
            body["@odata.deltaLink"] = f"{here}?$deltatoken={self.epoch}.{end}"
        return httpx.Response(200, json=body)

    # -- inspection
    def delta_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/delta") or r.url.path.endswith("/delta()")]

    def downloads(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/$value")]

    def client(self) -> Any:
        http = httpx.AsyncClient(transport=httpx.MockTransport(self.handler), base_url=BASE)
        return graph_client(http, BASE)


class Ctx:
    """A SyncContext whose sync state is an in-memory set of provider ids."""

    def __init__(self, batch_size: int = 3, now: datetime = NOW) -> None:
        self.known: set[str] = set()
        self.batch_size = batch_size
        self.now = now

    def ctx(self) -> SyncContext:
        return SyncContext(self.now, self.batch_size, map, lambda ids: {i for i in ids if i in self.known})

    def run(self, src: Any, cursor: dict[str, Any] | None) -> tuple[list[Batch], dict[str, Any] | None]:
        try:
            batches = list(src.batches(cursor, self.ctx()))
        finally:
            src.close()
        for b in batches:
            self.known.update(i.provider_id for i in b.items)
            cursor = b.cursor
        return batches, cursor


def mail_ids(batches: list[Batch]) -> list[str]:
    return [i.message_id for b in batches for i in b.items if isinstance(i, MailItem)]


def mail_source(fake: FakeGraph, **settings: Any) -> GraphMailSource:
    return GraphMailSource("microsoft:" + OWNER, OWNER, settings, client=fake.client())


def cal_source(fake: FakeGraph, **settings: Any) -> GraphCalendarSource:
    return GraphCalendarSource("microsoft:" + OWNER, OWNER, settings, client=fake.client())


@pytest.fixture
def fake() -> FakeGraph:
    return FakeGraph()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """kiota's RetryHandler waits with asyncio.sleep: record the delays instead of waiting."""
    delays: list[float] = []
    real = asyncio.sleep

    async def fake_sleep(delay: float, *args: Any, **kwargs: Any) -> Any:
        delays.append(delay)
        return await real(0)

    import kiota_http.middleware.retry_handler as rh

    monkeypatch.setattr(rh.asyncio, "sleep", fake_sleep)
    return delays


# ------------------------------------------------------------------------------------------- mail
def test_mail_backfill_follows_next_links_with_prefer_headers_on_every_page(fake: FakeGraph) -> None:
    inbox = [fake.add_mail("inbox", message(i)) for i in range(7)]
    fake.add_mail("sentitems", message(10, frm=OWNER, to="jane@acme.com"))
    fake.add_mail("sentitems", message(11, frm=OWNER, to="jane@acme.com"))
    batches, cursor = Ctx(batch_size=3).run(mail_source(fake), None)
    assert sorted(mail_ids(batches)) == sorted(f"<m{i}@acme.com>" for i in (*range(7), 10, 11))
    assert [len(b.items) for b in batches] == [3, 3, 1, 2]  # one batch per delta page
    deltas = fake.delta_requests()
    assert len(deltas) == 4 and sum("$skiptoken" in str(r.url) for r in deltas) == 2
    for r in deltas:  # with_url drops the request configuration: both headers must be sent again
        prefer = r.headers.get_list("prefer")
        assert any('IdType="ImmutableId"' in p for p in prefer), r.url
        assert any("odata.maxpagesize=3" in p for p in prefer), r.url
    assert all(any("ImmutableId" in p for p in r.headers.get_list("prefer")) for r in fake.downloads())
    first = batches[0].items[0]
    assert isinstance(first, MailItem) and first.provider_id == first.locator == inbox[0]
    assert first.sender is not None and first.sender.email == "jane@acme.com" and first.body_text == "hello 0"
    assert cursor is not None and set(cursor["folders"]) == {"inbox", "sentitems"}
    assert all(f["complete"] and "$deltatoken" in f["link"] for f in cursor["folders"].values())
    assert "$skiptoken" in batches[0].cursor["folders"]["inbox"]["link"]  # a crash resumes at the page
    json.dumps(cursor)


def test_mail_resume_from_every_cursor_loses_and_duplicates_nothing(fake: FakeGraph) -> None:
    for i in range(8):
        fake.add_mail("inbox" if i % 3 else "sentitems", message(i))
    first, _ = Ctx(batch_size=2).run(mail_source(fake), None)
    for k, b in enumerate(first):
        rest, _ = Ctx(batch_size=2).run(mail_source(fake), b.cursor)
        assert sorted(mail_ids(first[: k + 1]) + mail_ids(rest)) == sorted(f"<m{i}@acme.com>" for i in range(8))


def test_mail_incremental_sync_yields_only_changes_and_ignores_removed(fake: FakeGraph) -> None:
    ids = [fake.add_mail("inbox", message(i)) for i in range(4)]
    ctx = Ctx()
    _, cursor = ctx.run(mail_source(fake), None)
    fake.requests.clear()
    fake.remove("inbox", ids[1])
    fake.add_mail("inbox", message(99))
    fake.add_mail("inbox", message(100), draft=True)
    batches, cursor2 = ctx.run(mail_source(fake), cursor)
    assert mail_ids(batches) == ["<m99@acme.com>"]
    assert all(not b.deleted and not b.complete_for for b in batches)  # deleted mail stays logged
    assert len(fake.downloads()) == 1
    assert all("$deltatoken" in str(r.url) for r in fake.delta_requests())
    fake.requests.clear()
    again, _ = ctx.run(mail_source(fake), cursor2)
    assert mail_ids(again) == [] and fake.downloads() == []


def test_mail_already_stored_messages_are_not_downloaded_again(fake: FakeGraph) -> None:
    for i in range(5):
        fake.add_mail("inbox", message(i))
    ctx = Ctx()
    ctx.run(mail_source(fake), None)
    fake.requests.clear()
    batches, _ = ctx.run(mail_source(fake), None)  # a full resync: every id is known
    assert mail_ids(batches) == [] and fake.downloads() == []


def test_mail_delta_410_raises_cursor_expired(fake: FakeGraph) -> None:
    fake.add_mail("inbox", message(1))
    _, cursor = Ctx().run(mail_source(fake), None)
    fake.expire()
    src = mail_source(fake)
    with pytest.raises(CursorExpired, match="SyncStateNotFound"):
        list(src.batches(cursor, Ctx().ctx()))
    src.close()


def test_graph_401_raises_auth_expired_with_the_reconnect_command(fake: FakeGraph) -> None:
    fake.hooks.append(lambda r: error(401, "error_401_invalidauthenticationtoken.json"))
    src = mail_source(fake)
    with pytest.raises(AuthExpired) as info:
        list(src.batches(None, Ctx().ctx()))
    src.close()
    assert f"run `{RECONNECT}`" in str(info.value) and "InvalidAuthenticationToken" in str(info.value)
    with pytest.raises(AuthExpired, match=re.escape(RECONNECT)):
        mail_source(fake).check()


class FakeMsalApp:
    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result
        self.calls = 0

    def get_accounts(self, username: str | None = None) -> list[dict[str, Any]]:
        return [{"username": OWNER, "home_account_id": "uid.utid"}]

    def acquire_token_silent_with_error(self, scopes: list[str], account: Any) -> dict[str, Any]:
        self.calls += 1
        return self.result


def test_msal_invalid_grant_raises_auth_expired_and_a_valid_token_reaches_graph(
    fake: FakeGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kiota_abstractions.authentication import BaseBearerTokenAuthenticationProvider

    monkeypatch.setattr("providers.secrets.load_secret", lambda ref, hint="": "{}")
    settings = {"token_ref": "microsoft:" + OWNER, "graph_endpoint": "http://graph.test"}
    denied = {"error": "invalid_grant", "error_description": "AADSTS700082: The refresh token has expired"}
    tokens = MsalTokens(settings, OWNER, app=FakeMsalApp(denied))
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake.handler), base_url=BASE)
    client = graph_client(http, BASE, BaseBearerTokenAuthenticationProvider(tokens))  # type: ignore[arg-type]
    src = GraphMailSource("m", OWNER, settings, client=client)
    with pytest.raises(AuthExpired) as info:
        list(src.batches(None, Ctx().ctx()))
    src.close()
    assert "invalid_grant" in str(info.value) and f"run `{RECONNECT}`" in str(info.value)
    assert fake.requests == []  # nothing went out without a token

    fake.add_mail("inbox", message(1))
    tokens.app = FakeMsalApp({"access_token": "at-123", "token_type": "Bearer", "expires_in": 3600})
    batches, _ = Ctx().run(GraphMailSource("m", OWNER, settings, client=client), None)
    assert mail_ids(batches) == ["<m1@acme.com>"]
    assert {r.headers.get("authorization") for r in fake.requests} == {"Bearer at-123"}


class StubResponse:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status_code = status
        self.text = json.dumps(body)
        self.headers = {"Content-Type": "application/json"}

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}")


class StubLogin:
    """msal's HTTP client pointed at a stub of a tenant's OpenID discovery and token endpoints
    (msal accepts only an https authority, so this replaces the transport instead of a server)."""

    AUTHORITY = "https://login.test/tenant-1"

    def __init__(self) -> None:
        self.token_answers: list[tuple[int, dict[str, Any]]] = []
        self.posts: list[dict[str, Any]] = []

    def get(self, url: str, params: Any = None, headers: Any = None, **kwargs: Any) -> StubResponse:
        assert url.startswith(self.AUTHORITY) and "openid-configuration" in url, url
        return StubResponse(
            200,
            {
                "authorization_endpoint": f"{self.AUTHORITY}/oauth2/v2.0/authorize",
                "token_endpoint": f"{self.AUTHORITY}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{self.AUTHORITY}/oauth2/v2.0/devicecode",
                "issuer": f"{self.AUTHORITY}/v2.0",
            },
        )

    def post(self, url: str, params: Any = None, data: Any = None, headers: Any = None, **kwargs: Any) -> StubResponse:
        assert url == f"{self.AUTHORITY}/oauth2/v2.0/token", url
        self.posts.append(dict(data or {}))
        status, body = self.token_answers.pop(0)
        return StubResponse(status, body)

    def close(self) -> None:
        pass


def _b64(obj: dict[str, Any]) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def token_response(access: str, expires_in: int = 3600) -> dict[str, Any]:
    claims = {"iss": f"{StubLogin.AUTHORITY}/v2.0", "sub": "s1", "aud": "client-1", "oid": "oid-1", "tid": "tenant-1"}
    return {
        "token_type": "Bearer",
        "scope": "Mail.Read Calendars.Read openid profile offline_access",
        "expires_in": expires_in,
        "access_token": access,
        "refresh_token": "rt-" + access,
        "id_token": f"{_b64({'alg': 'none'})}.{_b64({**claims, 'preferred_username': OWNER})}.",
        "client_info": _b64({"uid": "oid-1", "utid": "tenant-1"}),
    }


def test_msal_silent_refresh_from_a_prepared_cache_and_invalid_grant(monkeypatch: pytest.MonkeyPatch) -> None:
    import msal

    login = StubLogin()
    # prepare the cache the way `inkless connect microsoft` leaves it: a signed-in account with a refresh token
    cache = msal.SerializableTokenCache()
    app = msal.PublicClientApplication(
        "client-1", authority=StubLogin.AUTHORITY, token_cache=cache, instance_discovery=False, http_client=login
    )
    login.token_answers.append((200, token_response("at-0", expires_in=0)))  # already expired: forces a refresh
    assert "access_token" in app.acquire_token_by_refresh_token("rt-initial", scopes=["Mail.Read"])
    stored = {"microsoft:" + OWNER: cache.serialize()}
    monkeypatch.setattr("providers.secrets.load_secret", lambda ref, hint="": stored[ref])
    monkeypatch.setattr("providers.secrets.save_secret", lambda ref, value: stored.__setitem__(ref, value))
    settings = {"token_ref": "microsoft:" + OWNER, "client_id": "client-1", "authority": StubLogin.AUTHORITY}

    login.token_answers.append((200, token_response("at-1")))
    tokens = MsalTokens(settings, OWNER, http_client=login)
    assert tokens.token() == "at-1"
    assert login.posts[-1]["grant_type"] == "refresh_token"
    assert "at-1" in stored["microsoft:" + OWNER]  # the refreshed cache was written back

    login.token_answers.append(
        (400, {"error": "invalid_grant", "error_description": "AADSTS50173: The provided grant has expired"})
    )
    state = json.loads(stored["microsoft:" + OWNER])
    state["AccessToken"] = {}  # the access token ran out: msal must use the refresh token, which is revoked
    stored["microsoft:" + OWNER] = json.dumps(state)
    expired = MsalTokens(settings, OWNER, http_client=login)
    with pytest.raises(AuthExpired) as info:
        expired.token()
    assert "invalid_grant" in str(info.value) and f"run `{RECONNECT}`" in str(info.value)


def test_msal_without_a_stored_token_names_the_reconnect_command() -> None:
    with pytest.raises(AuthExpired, match=re.escape(RECONNECT)):
        MsalTokens({}, OWNER)


def test_cloud_settings_map_to_national_endpoints() -> None:
    from providers.graph import cloud_endpoints

    assert cloud_endpoints({}) == ("https://login.microsoftonline.com/common", "https://graph.microsoft.com")
    assert cloud_endpoints({"cloud": "usgov", "tenant": "t1"}) == (
        "https://login.microsoftonline.us/t1",
        "https://graph.microsoft.us",
    )
    assert cloud_endpoints({"cloud": "china"}) == (
        "https://login.chinacloudapi.cn/common",
        "https://microsoftgraph.chinacloudapi.cn",
    )
    assert cloud_endpoints({"authority": "https://login.test/x/", "graph_endpoint": "http://g.test/"}) == (
        "https://login.test/x",
        "http://g.test",
    )


def test_429_with_retry_after_is_retried_by_kiota_then_succeeds(fake: FakeGraph, sleeps: list[float]) -> None:
    fake.add_mail("inbox", message(1))
    left = [2]

    def throttle(r: httpx.Request) -> httpx.Response | None:
        if "delta" in r.url.path and left[0]:
            left[0] -= 1
            return error(429, "error_429_toomanyrequests.json", {"Retry-After": "2"})
        return None

    fake.hooks.append(throttle)
    batches, _ = Ctx().run(mail_source(fake, folders=["inbox"]), None)
    assert mail_ids(batches) == ["<m1@acme.com>"]
    assert sleeps == [2.0, 2.0]


def test_429_after_kiota_retries_raises_rate_limited_with_retry_after(fake: FakeGraph, sleeps: list[float]) -> None:
    fake.hooks.append(lambda r: error(429, "error_429_toomanyrequests.json", {"Retry-After": "7"}))
    src = mail_source(fake)
    with pytest.raises(RateLimited) as info:
        list(src.batches(None, Ctx().ctx()))
    src.close()
    assert info.value.retry_after == 7.0
    assert len(fake.requests) == 4 and sleeps == [7.0, 7.0, 7.0]  # first try + kiota's 3 retries


def test_503_with_retry_after_beyond_kiotas_limit_is_rate_limited_at_once(fake: FakeGraph, sleeps: list[float]) -> None:
    fake.hooks.append(lambda r: httpx.Response(503, headers={"Retry-After": "600"}))
    src = mail_source(fake)
    with pytest.raises(RateLimited) as info:
        list(src.batches(None, Ctx().ctx()))
    src.close()
    assert info.value.retry_after == 600.0 and len(fake.requests) == 1 and sleeps == []


def test_5xx_raises_unreachable(fake: FakeGraph, sleeps: list[float]) -> None:
    fake.hooks.append(lambda r: error(500, "error_500_internalservererror.json"))
    src = mail_source(fake)
    with pytest.raises(Unreachable, match="HTTP 500"):
        list(src.batches(None, Ctx().ctx()))
    src.close()


def test_timeout_raises_unreachable(fake: FakeGraph) -> None:
    def slow(r: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=r)

    fake.hooks.append(slow)
    src = mail_source(fake)
    with pytest.raises(Unreachable, match="did not answer in time"):
        list(src.batches(None, Ctx().ctx()))
    src.close()


def test_malformed_entries_are_quarantined_and_the_rest_goes_on(fake: FakeGraph) -> None:
    fake.add_mail("inbox", message(1))
    fake.log["inbox"].append({"@odata.type": "#microsoft.graph.message", "subject": "no id"})
    bad = fake.add_mail("inbox", b"this is not an email at all\r\n")
    fake.add_mail("inbox", message(2))
    batches, cursor = Ctx(batch_size=10).run(mail_source(fake, folders=["inbox"]), None)
    items = [i for b in batches for i in b.items]
    assert mail_ids(batches) == ["<m1@acme.com>", "<m2@acme.com>"]
    quarantined = [i for i in items if isinstance(i, Quarantined)]
    assert len(quarantined) == 2
    assert any(q.provider_id == bad and "no From" in q.reason for q in quarantined)
    assert any("without a message id" in q.reason for q in quarantined)
    assert cursor is not None and cursor["folders"]["inbox"]["complete"]


def test_fetch_reads_one_message_again_by_its_locator(fake: FakeGraph) -> None:
    mid = fake.add_mail("inbox", message(5))
    item = mail_source(fake).fetch(mid, Ctx().ctx())
    assert isinstance(item, MailItem) and item.message_id == "<m5@acme.com>"
    assert mail_source(fake).fetch("gone", Ctx().ctx()) is None


# ------------------------------------------------------------------------------------------- calendar
def events() -> list[dict[str, Any]]:
    return list(load("events.json"))


def test_ical_uid_is_decoded_from_the_global_object_id() -> None:
    ev = events()
    assert ical_uid_from_graph(ev[0]["iCalUId"]) == "weekly-sync-7f3a@halvorsenmarine.no"
    outlook = ical_uid_from_graph(ev[3]["iCalUId"])
    assert outlook == ev[3]["iCalUId"]  # an Outlook meeting: its id is the UID
    occurrence_of_outlook = ev[3]["iCalUId"][:32] + "07EA0B0C" + ev[3]["iCalUId"][40:]
    assert ical_uid_from_graph(occurrence_of_outlook) == outlook  # the instance date is cleared
    assert ical_uid_from_graph("not-hex@example.com") is None


def test_calendar_items_have_the_uid_and_recurrence_id_the_ics_source_gives(fake: FakeGraph) -> None:
    for e in events():
        fake.add_event(e)
    batches, cursor = Ctx(batch_size=4).run(cal_source(fake), None)
    items = [i for b in batches for i in b.items if isinstance(i, CalendarItem)]
    window = sync_window(NOW)
    ics = [i for i in expand((DATA / "meetings.ics").read_bytes(), window) if isinstance(i, CalendarItem)]
    graph_keys = {(i.ical_uid, i.recurrence_id, i.start) for i in items}
    ics_keys = {(i.ical_uid, i.recurrence_id, i.start) for i in ics}
    assert ics_keys and ics_keys <= graph_keys
    by_uid = {(i.ical_uid, i.recurrence_id): i for i in items}
    for i in ics:
        g = by_uid[(i.ical_uid, i.recurrence_id)]
        assert (g.end, g.summary, g.organizer) == (i.end, i.summary, i.organizer)
        assert {(p.email, p.partstat) for p in g.attendees} == {(p.email, p.partstat) for p in i.attendees}
    exception = next(i for i in items if i.summary.endswith("(moved)"))
    assert exception.recurrence_id == datetime(2026, 11, 17, 9, tzinfo=UTC)
    assert exception.start == datetime(2026, 11, 18, 10, tzinfo=UTC)
    cancelled = next(i for i in items if "Pricing" in i.summary)
    assert cancelled.status == "CANCELLED" and cancelled.ical_uid == "pricing-review-19@bluefern.co.uk"
    declined = next(i for i in items if i.summary == "Vendor demo")
    assert [(p.email, p.partstat) for p in declined.attendees] == [(OWNER, "DECLINED")]
    assert all(i.provider_id == i.locator for i in items)
    # the request: window fixed in the token, UTC times, immutable ids, page size on every page
    first = fake.delta_requests()[0]
    q = parse_qs(urlsplit(str(first.url)).query)
    assert q["startDateTime"] == [window[0].strftime("%Y-%m-%dT%H:%M:%SZ")]
    assert q["endDateTime"] == [window[1].strftime("%Y-%m-%dT%H:%M:%SZ")]
    for r in fake.delta_requests():
        prefer = ", ".join(r.headers.get_list("prefer"))
        assert 'outlook.timezone="UTC"' in prefer and "ImmutableId" in prefer and "odata.maxpagesize=4" in prefer
    assert cursor is not None and cursor["complete"] and "$deltatoken" in cursor["link"]


def test_occurrence_without_a_decodable_uid_takes_its_series_masters_uid(fake: FakeGraph) -> None:
    ev = events()
    master_id = ev[0]["seriesMasterId"]
    fake.masters[master_id] = {
        "id": master_id,
        "type": "seriesMaster",
        "iCalUId": ev[0]["iCalUId"][:32] + "0" * 8 + ev[0]["iCalUId"][40:],
    }
    fake.add_event(dict(ev[0], iCalUId="opaque-occurrence-id"))
    fake.add_event(dict(ev[2], iCalUId="opaque-occurrence-id-2"))
    fake.add_event(dict(ev[3], id="orphan", type="occurrence", seriesMasterId="gone", iCalUId="orphan-uid"))
    batches, _ = Ctx().run(cal_source(fake), None)
    uids = [i.ical_uid for b in batches for i in b.items if isinstance(i, CalendarItem)]
    assert uids == ["weekly-sync-7f3a@halvorsenmarine.no", "weekly-sync-7f3a@halvorsenmarine.no", "orphan-uid"]
    gets = [r for r in fake.requests if "/me/events/" in r.url.path]
    assert len(gets) == 2  # the master is read once per sync; the missing one once
    assert all("ImmutableId" in ", ".join(r.headers.get_list("prefer")) for r in gets)


def test_calendar_removed_events_are_reported_as_deleted_provider_ids(fake: FakeGraph) -> None:
    ev = events()
    for e in ev:
        fake.add_event(e)
    ctx = Ctx(batch_size=10)
    _, cursor = ctx.run(cal_source(fake), None)
    fake.remove("calendar", ev[2]["id"])
    changed = dict(ev[3], subject="Crew portal scoping (agenda)")
    fake.add_event(changed)
    batches, _ = ctx.run(cal_source(fake), cursor)
    assert [i.summary for b in batches for i in b.items if isinstance(i, CalendarItem)] == [changed["subject"]]
    assert [d for b in batches for d in b.deleted] == [ev[2]["id"]]


def test_calendar_malformed_event_is_quarantined(fake: FakeGraph) -> None:
    ev = events()
    broken = dict(ev[0], id="AAMk-broken", start={"dateTime": "yesterday-ish", "timeZone": "UTC"})
    fake.add_event(broken)
    fake.add_event(ev[3])
    batches, _ = Ctx().run(cal_source(fake), None)
    items = [i for b in batches for i in b.items]
    assert [type(i).__name__ for i in items] == ["Quarantined", "CalendarItem"]
    assert items[0].provider_id == "AAMk-broken"


def test_calendar_410_raises_cursor_expired(fake: FakeGraph) -> None:
    fake.add_event(events()[0])
    _, cursor = Ctx().run(cal_source(fake), None)
    fake.expire()
    src = cal_source(fake)
    with pytest.raises(CursorExpired):
        list(src.batches(cursor, Ctx().ctx()))
    src.close()


def test_calendar_starts_a_new_window_after_reading_the_old_tokens_last_changes(fake: FakeGraph) -> None:
    ev = events()
    fake.add_event(ev[3])
    ctx = Ctx()
    _, cursor = ctx.run(cal_source(fake), None)
    fake.remove("calendar", ev[3]["id"])
    later = Ctx(now=NOW + timedelta(days=8))
    later.known = ctx.known
    fake.requests.clear()
    batches, cursor2 = later.run(cal_source(fake), cursor)
    assert [d for b in batches for d in b.deleted] == [ev[3]["id"]]
    starts = [parse_qs(r.url.query.decode()).get("startDateTime") for r in fake.delta_requests()]
    assert starts == [None, [sync_window(NOW + timedelta(days=8))[0].strftime("%Y-%m-%dT%H:%M:%SZ")]]
    assert cursor2 is not None and cursor2["window"][0].startswith("2026-06-01")


# ------------------------------------------------------------------------------------------- through the engine
def setup_crm(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        set_setting(s, "internal_domains", ["northwind.io", "northwindlabs.com"])
    c = DEMO / "crm"
    import_and_reattribute(sessions, NOW, c / "companies.csv", c / "contacts.csv", c / "deals.csv")


def add_source(sessions: sessionmaker[Session], kind: str, location: str, settings: dict[str, Any]) -> int:
    with sessions.begin() as s:
        row = SourceRow(kind=kind, location=location, owner=OWNER, settings=settings, created_at=NOW)
        s.add(row)
        s.flush()
        return row.id


def count(sessions: sessionmaker[Session], model: Any) -> int:
    with sessions() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def export_rows(sessions: sessionmaker[Session]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with sessions() as s:
        return list(activity_rows(s)), list(entity_rows(s))


@pytest.fixture
def wired(fake: FakeGraph, monkeypatch: pytest.MonkeyPatch) -> FakeGraph:
    """The registry knows the Graph kinds and their default client talks to the fake."""
    monkeypatch.setitem(providers.base.REGISTRY, "graph_mail", "providers.graph:GraphMailSource")
    monkeypatch.setitem(providers.base.REGISTRY, "graph_calendar", "providers.graph:GraphCalendarSource")
    monkeypatch.setattr(
        graph_module._GraphSource, "client_factory", staticmethod(lambda settings, owner: fake.client())
    )
    return fake


def load_demo_mail(fake: FakeGraph) -> int:
    msgs = demo_messages()
    for raw in msgs:
        item = parse_message(raw, "x", "x")
        mine = isinstance(item, MailItem) and item.sender is not None and item.sender.email == OWNER
        fake.add_mail("sentitems" if mine else "inbox", raw)
    return len(msgs)


GRAPH_SETTINGS = {"token_ref": "microsoft:" + OWNER, "page_size": 7}


def test_engine_backfill_then_410_resync_creates_no_duplicates(
    sessions: sessionmaker[Session], wired: FakeGraph
) -> None:
    n = load_demo_mail(wired)
    setup_crm(sessions)
    add_source(sessions, "graph_mail", "microsoft:" + OWNER, GRAPH_SETTINGS)
    rep = SyncEngine(sessions, NOW, workers=1).run()[0]
    assert rep.error is None and rep.stats.seen == n and rep.stats.logged > 20
    assert rep.batches >= n // 7
    before, acts = export_rows(sessions), count(sessions, Activity)
    wired.expire()
    wired.add_mail("inbox", message(1, frm="ingrid@halvorsenmarine.no"))
    again = SyncEngine(sessions, NOW, workers=1).run()[0]
    assert again.error is None
    assert count(sessions, Activity) == acts + 1
    after = export_rows(sessions)[0]
    assert [r for r in after if r["message_ids"] != ["<m1@acme.com>"]] == before[0]
    third = SyncEngine(sessions, NOW, workers=1).run()[0]
    assert third.error is None and third.stats.seen == 0


def test_crash_after_the_first_page_loses_and_duplicates_nothing_on_rerun(
    sessions: sessionmaker[Session], wired: FakeGraph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_demo_mail(wired)
    setup_crm(sessions)
    add_source(sessions, "graph_mail", "microsoft:" + OWNER, GRAPH_SETTINGS)

    def crash(r: httpx.Request) -> httpx.Response | None:
        if "$skiptoken" in str(r.url):
            raise RuntimeError("power cut")
        return None

    wired.hooks.append(crash)
    rep = SyncEngine(sessions, NOW, workers=1).run()[0]
    assert rep.error is not None and rep.batches == 1 and rep.stats.seen == 7
    wired.hooks.clear()
    with sessions() as s:  # the first page was committed with its nextLink: the rerun resumes there
        assert "$skiptoken" in json.dumps(s.execute(select(SourceRow.cursor)).scalar_one())
    wired.requests.clear()
    rerun = SyncEngine(sessions, NOW, workers=1).run()[0]
    assert rerun.error is None and rerun.stats.seen == len(wired.mime) - 7
    assert "$skiptoken" in str(wired.delta_requests()[0].url)
    crashed = export_rows(sessions)

    clean = FakeGraph()
    load_demo_mail(clean)
    from store.db import open_db

    engine, other = open_db(f"sqlite:///{tmp_path / 'clean.db'}")  # an uninterrupted run to compare with
    try:
        setup_crm(other)
        add_source(other, "graph_mail", "microsoft:" + OWNER, GRAPH_SETTINGS)
        monkeypatch.setattr(
            graph_module._GraphSource, "client_factory", staticmethod(lambda settings, owner: clean.client())
        )
        assert SyncEngine(other, NOW, workers=1).run()[0].error is None
        assert export_rows(other) == crashed
        assert count(other, Activity) == count(sessions, Activity)
    finally:
        engine.dispose()


def test_the_same_email_via_graph_and_via_an_mbox_file_is_one_activity(
    sessions: sessionmaker[Session], wired: FakeGraph, tmp_path: Path
) -> None:
    load_demo_mail(wired)
    setup_crm(sessions)
    mbox = tmp_path / "mail.mbox"
    shutil.copy(DEMO / "mail.mbox", mbox)
    add_source(sessions, "mbox", str(mbox), {})
    only_mbox = SyncEngine(sessions, NOW, workers=1).run()[0]
    assert only_mbox.error is None and only_mbox.stats.logged > 20
    acts, rows = count(sessions, Activity), export_rows(sessions)[0]
    add_source(sessions, "graph_mail", "microsoft:" + OWNER, GRAPH_SETTINGS)
    reports = SyncEngine(sessions, NOW, workers=1).run()
    assert all(r.error is None for r in reports)
    assert reports[1].stats.seen == only_mbox.stats.seen and reports[1].stats.logged == 0
    assert count(sessions, Activity) == acts
    assert [r["message_ids"] for r in export_rows(sessions)[0]] == [r["message_ids"] for r in rows]


def test_engine_calendar_sync_and_removed_event(sessions: sessionmaker[Session], wired: FakeGraph) -> None:
    ev = events()
    for e in ev:
        wired.add_event(e)
    setup_crm(sessions)
    add_source(sessions, "graph_calendar", "microsoft:" + OWNER, GRAPH_SETTINGS)
    rep = SyncEngine(sessions, NOW, workers=1).run()[0]
    assert rep.error is None and rep.stats.seen == len(ev)
    weekly = "weekly-sync-7f3a@halvorsenmarine.no"
    expected = {
        (ev[3]["iCalUId"], None),
        (weekly, "2026-11-10T09:00:00Z"),
        (weekly, "2026-11-17T09:00:00Z"),
        (weekly, "2026-11-24T09:00:00Z"),
    }  # the cancelled and the declined meeting are not logged
    assert meetings(sessions) == expected
    wired.remove("calendar", ev[0]["id"])
    again = SyncEngine(sessions, NOW, workers=1).run()[0]
    assert again.error is None and again.stats.removed == 1
    assert meetings(sessions) == expected - {(weekly, "2026-11-10T09:00:00Z")}


def meetings(sessions: sessionmaker[Session]) -> set[tuple[str, str | None]]:
    return {(r["ical_uid"], r["recurrence_id"]) for r in export_rows(sessions)[0] if r["kind"] == "meeting"}


def test_the_same_meetings_via_graph_and_via_an_ics_file_are_one_activity_each(
    sessions: sessionmaker[Session], wired: FakeGraph, tmp_path: Path
) -> None:
    for e in events():
        wired.add_event(e)
    setup_crm(sessions)
    ics = tmp_path / "meetings.ics"
    shutil.copy(DATA / "meetings.ics", ics)
    add_source(sessions, "ics", str(ics), {})
    first = SyncEngine(sessions, NOW, workers=1).run()[0]
    assert first.error is None and first.stats.logged == 4
    before, acts = meetings(sessions), count(sessions, Activity)
    add_source(sessions, "graph_calendar", "microsoft:" + OWNER, GRAPH_SETTINGS)
    reports = SyncEngine(sessions, NOW, workers=1).run()
    assert all(r.error is None for r in reports) and reports[1].stats.seen == len(events())
    assert count(sessions, Activity) == acts and meetings(sessions) == before
