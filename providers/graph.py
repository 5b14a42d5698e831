"""Microsoft 365 mail and calendar through Microsoft Graph (msgraph-sdk), read-only.

``GraphMailSource`` (kind ``graph_mail``) reads the Inbox and Sent Items with one message delta query
per folder (``/me/mailFolders/{inbox,sentitems}/messages/delta``). Every page of the delta becomes one
:class:`~providers.records.Batch` whose cursor is the page's ``@odata.nextLink`` (``@odata.deltaLink`` after
the last page), so a crash mid-backfill resumes at the page it stopped on. Each new message is fetched as
MIME (``/messages/{id}/$value``) and parsed by :func:`~providers.mailparse.parse_message`, the parser
every mail source shares: the same email seen through Graph and through an mbox file has the same
Message-ID, participants, headers and body and is one activity. Provider id and locator are the
immutable message id (``Prefer: IdType="ImmutableId"``); ``@removed`` entries are ignored (mail deleted
in the mailbox stays logged in the CRM, as with IMAP). Cursor::

    {"folders": {"inbox": {"link": url, "complete": bool}, "sentitems": {...}}}

``GraphCalendarSource`` (kind ``graph_calendar``) reads ``/me/calendarView/delta`` over the ICS window
``[now - 180 days, now + 30 days]`` (fixed inside the delta token; a new window is started, after the old
token's last changes were read, once the saved one is ``rewindow_days`` behind). Times come in UTC
(``Prefer: outlook.timezone="UTC"``). Each occurrence, exception or single meeting becomes a
:class:`~providers.records.CalendarItem` whose ``ical_uid`` and ``recurrence_id`` are what the ICS source
yields for the same meeting: Graph's ``iCalUId`` is an Outlook Global Object ID; the original iCalendar
UID embedded in it ("vCal-Uid") is used when present, else the id with its instance date cleared (what
Outlook writes as UID in .ics files); ``recurrence_id`` is ``originalStart`` in UTC. Provider id and
locator are the Graph event id, because a ``@removed`` entry carries nothing but that id: removed ids go
to :attr:`Batch.deleted`. Cursor: ``{"link": url, "complete": bool, "window": [start, end]}``.

Errors are translated once, here: 410 (``SyncStateNotFound``/``resyncRequired``) ->
:class:`CursorExpired`; 401/403 and an msal ``invalid_grant`` -> :class:`AuthExpired` naming
``inkless connect microsoft --owner OWNER``; 429/503 with Retry-After after kiota's own retries ->
:class:`RateLimited`; other 5xx, timeouts and connection failures -> :class:`Unreachable`.

The SDK is async; each source runs it on a private event loop inside its synchronous ``batches()``.
``client`` (a :class:`msgraph.GraphServiceClient`) is injected by tests; by default it is built from the
msal token cache stored under ``settings["token_ref"]`` (see :func:`build_client`).
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
from kiota_abstractions.authentication import AccessTokenProvider, AllowedHostsValidator

from .base import Source, SyncContext
from .errors import AuthExpired, CursorExpired, ProviderError, RateLimited, Unreachable
from .ics import sync_window
from .mailparse import parse_message
from .records import Batch, CalendarItem, Item, Participant, Quarantined, printable

log = logging.getLogger("inkless.graph")
T = TypeVar("T")

SCOPES = ["Mail.Read", "Calendars.Read"]
MAIL_FOLDERS = ("inbox", "sentitems")
#: Outlook allows 4 concurrent requests per mailbox
CONCURRENCY = 4
DEFAULT_PAGE = 100
DESCRIPTION_MAX = 2000
RESYNC_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid", "invalidsyncstate"})
IMMUTABLE = 'IdType="ImmutableId"'


@dataclass(frozen=True)
class Cloud:
    login: str
    graph: str


#: national clouds: learn.microsoft.com/graph/deployments (Entra ID and Graph service root endpoints)
CLOUDS: dict[str, Cloud] = {
    "global": Cloud("https://login.microsoftonline.com", "https://graph.microsoft.com"),
    "usgov": Cloud("https://login.microsoftonline.us", "https://graph.microsoft.us"),  # L4: GCC High
    "usgov-dod": Cloud("https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),  # L5: DoD
    "china": Cloud("https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"),  # 21Vianet
}


def reconnect_command(owner: str) -> str:
    return f"inkless connect microsoft --owner {owner}"


# ------------------------------------------------------------------------------------------- auth
def cloud_endpoints(settings: dict[str, Any]) -> tuple[str, str]:
    """(authority, Graph service root) from ``cloud`` (global|usgov|usgov-dod|china), ``tenant`` and the
    explicit ``authority`` / ``graph_endpoint`` overrides."""
    name = str(settings.get("cloud") or "global").lower()
    if name not in CLOUDS:
        raise ProviderError(f"unknown Microsoft cloud {name!r}; known: {', '.join(CLOUDS)}")
    cloud = CLOUDS[name]
    tenant = str(settings.get("tenant") or "common")
    authority = str(settings.get("authority") or f"{cloud.login}/{tenant}").rstrip("/")
    graph = str(settings.get("graph_endpoint") or cloud.graph).rstrip("/")
    return authority, graph


class MsalTokens(AccessTokenProvider):
    """An access-token provider for kiota that asks msal silently (msal refreshes with the cached
    refresh token) and writes the cache back when msal changed it."""

    def __init__(self, settings: dict[str, Any], owner: str, app: Any = None, http_client: Any = None) -> None:
        import msal

        from .secrets import load_secret

        self.owner = owner
        self.ref = str(settings.get("token_ref") or "")
        if not self.ref:
            raise AuthExpired(f"Microsoft source {owner} was never connected: run `{reconnect_command(owner)}`")
        authority, graph = cloud_endpoints(settings)
        self.host = urlsplit(graph).hostname or ""
        self.cache = msal.SerializableTokenCache()
        self.cache.deserialize(load_secret(self.ref, reconnect_command(owner)))
        client_id = str(settings.get("client_id") or os.environ.get("INKLESS_MS_CLIENT_ID") or "")
        if app is None:
            if not client_id:
                raise AuthExpired(f"Microsoft source {owner} has no client_id: run `{reconnect_command(owner)}`")
            # as `inkless connect microsoft` does: instance discovery only for the public cloud's own authority
            public = urlsplit(CLOUDS["global"].login).hostname
            try:
                app = msal.PublicClientApplication(
                    client_id,
                    authority=authority,
                    token_cache=self.cache,
                    instance_discovery=urlsplit(authority).hostname == public,
                    http_client=http_client,
                )
            except ValueError as exc:  # msal's own words for an unknown tenant or authority
                raise ProviderError(f"Microsoft sign-in authority {authority} is not usable: {exc}") from None
            except Exception as exc:  # requests' connection errors: msal reads the authority's metadata here
                raise Unreachable(
                    f"cannot reach the Microsoft sign-in service {authority} ({type(exc).__name__})"
                ) from None
        self.app = app
        self.account = str(settings.get("account") or owner)
        scopes = settings.get("scopes")
        #: national clouds need scopes on their own Graph host (what connect stored), the public one short names
        self.scopes = [str(x) for x in scopes] if isinstance(scopes, list) and scopes else list(SCOPES)

    def token(self) -> str:
        hint = reconnect_command(self.owner)
        accounts = self.app.get_accounts(username=self.account) or self.app.get_accounts()
        if not accounts:
            raise AuthExpired(f"the stored Microsoft sign-in for {self.owner} has no account: run `{hint}`")
        try:
            result = self.app.acquire_token_silent_with_error(self.scopes, account=accounts[0])
        except (OSError, httpx.HTTPError) as exc:
            raise Unreachable(f"cannot reach the Microsoft sign-in service: {type(exc).__name__}") from None
        except Exception as exc:  # requests' ConnectionError and friends
            raise Unreachable(f"cannot reach the Microsoft sign-in service: {type(exc).__name__}") from None
        if not result or "access_token" not in result:
            error = (result or {}).get("error") or "no token"
            raise AuthExpired(f"Microsoft sign-in for {self.owner} is no longer valid ({error}): run `{hint}`")
        if self.cache.has_state_changed:
            from .secrets import save_secret

            save_secret(self.ref, self.cache.serialize())
            self.cache.has_state_changed = False
        return str(result["access_token"])

    async def get_authorization_token(self, uri: str, additional_authentication_context: Any = None) -> str:
        if urlsplit(uri).hostname != self.host:
            return ""  # never send the token to another host (a nextLink pointing elsewhere)
        return await asyncio.get_running_loop().run_in_executor(None, self.token)

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return AllowedHostsValidator([self.host])


def graph_client(http: httpx.AsyncClient, base_url: str, auth: Any = None) -> Any:
    """A GraphServiceClient over ``http`` whose requests go to ``base_url`` (e.g. ``https://graph.microsoft.us/v1.0``),
    with Graph's default middleware (retry, redirect, the /me rewrite)."""
    from kiota_abstractions.authentication import AnonymousAuthenticationProvider
    from msgraph.graph_request_adapter import GraphRequestAdapter
    from msgraph.graph_request_adapter import options as graph_options
    from msgraph.graph_service_client import GraphServiceClient
    from msgraph_core import GraphClientFactory

    http = GraphClientFactory.create_with_default_middleware(client=http, options=graph_options)
    adapter = GraphRequestAdapter(auth or AnonymousAuthenticationProvider(), client=http)
    adapter.base_url = base_url.rstrip("/")  # httpx adds a trailing "/" to base_url: set it explicitly
    return GraphServiceClient(request_adapter=adapter)


def build_client(settings: dict[str, Any], owner: str) -> Any:
    """The production client: msal token cache from the secret store, national cloud endpoints."""
    from kiota_abstractions.authentication import BaseBearerTokenAuthenticationProvider

    _, graph = cloud_endpoints(settings)
    tokens = MsalTokens(settings, owner)
    base = f"{graph}/v1.0"
    http = httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(float(settings.get("timeout", 60)), connect=15.0))
    return graph_client(http, base, BaseBearerTokenAuthenticationProvider(tokens))


# ------------------------------------------------------------------------------------------- errors
def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    try:
        value = headers.get(name)
    except AttributeError:
        value = None
    if value is None and isinstance(headers, dict):
        value = next((v for k, v in headers.items() if str(k).lower() == name.lower()), None)
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return str(value) if value is not None else None


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def translate(exc: BaseException, what: str, owner: str) -> ProviderError:
    """One SDK/transport exception -> one inkless error (the only place this happens)."""
    from kiota_abstractions.api_error import APIError

    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, APIError):
        status = exc.response_status_code or 0
        error = getattr(exc, "error", None)
        code = str(getattr(error, "code", "") or "")
        message = printable(str(getattr(error, "message", "") or ""))[:200]
        detail = f"{code}: {message}" if code and message else code or message or f"HTTP {status}"
        if status == 410 or code.lower() in RESYNC_CODES:
            return CursorExpired(f"Microsoft Graph no longer accepts the saved sync state while {what} ({detail})")
        if status in (401, 403):
            return AuthExpired(
                f"Microsoft Graph refused access for {owner} while {what} ({detail}): run `{reconnect_command(owner)}`"
            )
        retry = _retry_after(_header(exc.response_headers, "Retry-After"))
        if status == 429 or (status == 503 and retry is not None):
            wait = f"; retry after {retry:g} s" if retry is not None else ""
            return RateLimited(f"Microsoft Graph is throttling {owner} while {what} (HTTP {status}{wait})", retry)
        if status >= 500:
            return Unreachable(f"Microsoft Graph failed while {what} (HTTP {status}, {detail})")
        return ProviderError(f"Microsoft Graph refused {what} (HTTP {status}, {detail})")
    if isinstance(exc, httpx.TimeoutException):
        return Unreachable(f"Microsoft Graph did not answer in time while {what}")
    if isinstance(exc, httpx.TransportError | OSError):
        return Unreachable(f"cannot reach Microsoft Graph while {what} ({type(exc).__name__})")
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return Unreachable(f"Microsoft Graph sent an unreadable answer while {what}")
    raise exc


# ------------------------------------------------------------------------------------------- base
class _GraphSource(Source):
    #: builds the default client from settings and owner; tests replace it
    client_factory: ClassVar[Callable[[dict[str, Any], str], Any]] = staticmethod(build_client)

    def __init__(self, location: str, owner: str, settings: dict[str, Any] | None = None, client: Any = None) -> None:
        super().__init__(location, owner, settings)
        self._given = client
        self._client: Any = client
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = type(self).client_factory(self.settings, self.owner)
        _warm_up(self._client)
        return self._client

    def _run(self, coro_fn: Callable[[], Coroutine[Any, Any, T]], what: str) -> T:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        try:
            return self._loop.run_until_complete(coro_fn())
        except Exception as exc:
            raise translate(exc, what, self.owner) from None

    def close(self) -> None:
        loop, self._loop = self._loop, None
        client = self._client
        if client is not None and self._given is None:
            self._client = None  # a factory-built client belongs to this loop: build a new one next time
            http = getattr(getattr(client, "request_adapter", None), "_http_client", None)
            if loop is not None and not loop.is_closed() and http is not None:
                try:
                    loop.run_until_complete(http.aclose())
                except Exception:  # noqa: BLE001 - closing must not fail a sync
                    log.debug("closing the Graph HTTP client failed", exc_info=True)
        if loop is not None and not loop.is_closed():
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _page_size(self, ctx: SyncContext) -> int:
        return max(1, int(self.settings.get("page_size") or min(ctx.batch_size, DEFAULT_PAGE)))

    async def _get_json(self, builder: Any, link: str | None, params: Any, headers: list[str]) -> dict[str, Any]:
        """One delta page as JSON. ``with_url`` drops the request configuration: the Prefer headers are
        given again on every page. Raw JSON (not SDK models) so one malformed item cannot spoil a page."""
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError

        cfg: RequestConfiguration[Any] = RequestConfiguration()
        if link:
            builder = builder.with_url(link)
        elif params is not None:
            cfg.query_parameters = params
        for h in headers:
            cfg.headers.add("Prefer", h)
        info = builder.to_get_request_information(cfg)
        raw = await builder.request_adapter.send_primitive_async(info, "bytes", {"XXX": ODataError})
        page = json.loads(raw or b"{}")
        if not isinstance(page, dict):
            raise json.JSONDecodeError("not an object", str(page)[:40], 0)
        return page


_WARM: list[bool] = []


def _warm_up(client: Any) -> None:
    """Import the SDK modules this file navigates once, with the SDK's own import-time
    DeprecationWarnings (kiota's GetQueryParameters, generated *RequestConfiguration classes) silenced:
    they are not ours to fix and must not break a run with warnings as errors."""
    if _WARM:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import kiota_abstractions.base_request_configuration  # noqa: F401
        import msgraph.generated.models.o_data_errors.o_data_error  # noqa: F401

        me = client.me
        folder = me.mail_folders.by_mail_folder_id("inbox")
        _ = folder.messages.delta, me.messages.by_message_id("x").content
        _ = me.calendar_view.delta, me.events.by_event_id("x"), me.calendar
    _WARM.append(True)


def _links(page: dict[str, Any]) -> tuple[str | None, str | None]:
    nxt, delta = page.get("@odata.nextLink"), page.get("@odata.deltaLink")
    return (nxt if isinstance(nxt, str) else None), (delta if isinstance(delta, str) else None)


def _bad_id(entry: Any) -> str:
    return "graph:" + hashlib.sha1(json.dumps(entry, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _parse_job(job: tuple[bytes, str]) -> Item:
    raw, pid = job
    return parse_message(raw, pid, pid)


# ------------------------------------------------------------------------------------------- mail
class GraphMailSource(_GraphSource):
    """Inbox and Sent Items of a Microsoft 365 mailbox. Settings: ``token_ref`` (the msal token cache in
    the secret store), ``client_id``, ``tenant``, ``cloud`` (global|usgov|usgov-dod|china), ``authority``,
    ``graph_endpoint``, ``folders`` (default inbox, sentitems), ``page_size``, ``timeout``."""

    kind = "graph_mail"

    def _folders(self) -> list[str]:
        configured = self.settings.get("folders")
        if isinstance(configured, str):
            configured = [f.strip() for f in configured.split(",") if f.strip()]
        return list(dict.fromkeys(str(f) for f in configured)) if configured else list(MAIL_FOLDERS)

    def check(self) -> None:
        try:
            for folder in self._folders():
                self._run(lambda f=folder: self._folder_info(f), f"opening mail folder {folder}")  # type: ignore[misc]
        finally:
            self.close()

    async def _folder_info(self, folder: str) -> Any:
        from kiota_abstractions.base_request_configuration import RequestConfiguration

        b = self.client.me.mail_folders.by_mail_folder_id(folder)
        cfg: RequestConfiguration[Any] = RequestConfiguration(
            query_parameters=b.MailFolderItemRequestBuilderGetQueryParameters(select=["id", "totalItemCount"])
        )
        return await b.get(request_configuration=cfg)

    def batches(self, cursor: dict[str, Any] | None, ctx: SyncContext) -> Iterator[Batch]:
        previous = (cursor or {}).get("folders")
        state: dict[str, dict[str, Any]] = {}
        if isinstance(previous, dict):
            state = {k: dict(v) for k, v in previous.items() if isinstance(v, dict) and isinstance(v.get("link"), str)}
        for folder in self._folders():
            if ctx.stopping():
                return
            yield from self._sync_folder(folder, state, ctx)

    def _sync_folder(self, folder: str, state: dict[str, dict[str, Any]], ctx: SyncContext) -> Iterator[Batch]:
        b = self.client.me.mail_folders.by_mail_folder_id(folder).messages.delta
        params = b.DeltaRequestBuilderGetQueryParameters(
            select=["id", "internetMessageId", "isDraft", "receivedDateTime", "subject"]
        )
        prefer = [IMMUTABLE, f"odata.maxpagesize={self._page_size(ctx)}"]
        link = state.get(folder, {}).get("link")
        while True:
            if ctx.stopping():
                return
            page = self._run(
                lambda link=link: self._get_json(b, link, params, prefer),  # type: ignore[misc]
                f"reading the {folder} mail folder",
            )
            nxt, delta = _links(page)
            items = self._items(page.get("value"), ctx)
            if nxt is None and delta is None:
                raise Unreachable(f"Microsoft Graph sent a {folder} delta page without a next or delta link")
            state[folder] = {"link": nxt or delta, "complete": nxt is None}
            yield Batch(items=items, cursor={"folders": {k: dict(v) for k, v in state.items()}})
            if nxt is None:
                return
            link = nxt

    def _items(self, entries: Any, ctx: SyncContext) -> tuple[Item, ...]:
        if not isinstance(entries, list):
            return ()
        wanted: list[str] = []
        bad: list[Quarantined] = []
        for entry in entries:
            if isinstance(entry, dict) and "@removed" in entry:
                continue  # deleted or moved out: the logged activity stays, as with IMAP expunges
            mid = entry.get("id") if isinstance(entry, dict) else None
            if not isinstance(mid, str) or not mid:
                pid = _bad_id(entry)
                bad.append(Quarantined(pid, pid, "Graph delta entry without a message id"))
                continue
            if entry.get("isDraft") is True:
                continue  # a draft is not correspondence (yet); it comes back from Sent Items once sent
            wanted.append(mid)
        wanted = list(dict.fromkeys(wanted))
        known = ctx.is_known(wanted) if wanted else set()
        todo = [m for m in wanted if m not in known]
        raws = self._run(lambda: self._mime_many(todo), "downloading messages") if todo else {}
        jobs: list[tuple[bytes, str]] = []
        out: list[Item] = list(bad)
        for mid in todo:
            raw = raws.get(mid)
            if isinstance(raw, Quarantined):
                out.append(raw)
            elif raw is not None:
                jobs.append((raw, mid))
        out.extend(ctx.pmap(_parse_job, jobs) if jobs else [])
        return tuple(out)

    async def _mime_many(self, ids: list[str]) -> dict[str, bytes | Quarantined | None]:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(mid: str) -> tuple[str, bytes | Quarantined | None]:
            async with gate:
                return mid, await self._mime(mid)

        return dict(await asyncio.gather(*(one(m) for m in ids)))

    async def _mime(self, mid: str) -> bytes | Quarantined | None:
        """The message as MIME; None when it is gone; Quarantined when Graph refuses this one message."""
        from kiota_abstractions.api_error import APIError
        from kiota_abstractions.base_request_configuration import RequestConfiguration

        cfg: RequestConfiguration[Any] = RequestConfiguration()
        cfg.headers.add("Prefer", IMMUTABLE)
        try:
            raw = await self.client.me.messages.by_message_id(mid).content.get(request_configuration=cfg)
        except APIError as exc:
            status = exc.response_status_code or 0
            if status == 404:
                return None  # deleted between the delta page and the download
            if status in (400, 422):
                return Quarantined(mid, mid, f"Microsoft Graph cannot export this message as MIME (HTTP {status})")
            raise
        return raw if isinstance(raw, bytes) else None

    def fetch(self, locator: str, ctx: SyncContext) -> Item | None:
        try:
            raw = self._run(lambda: self._mime(locator), "downloading a message")
        finally:
            self.close()
        if raw is None or isinstance(raw, Quarantined):
            return raw
        return parse_message(raw, locator, locator)


# ------------------------------------------------------------------------------------------- calendar
#: Outlook Global Object ID (MS-OXOCAL 2.2.1.27): class id, instance date, creation time, reserved, size, data
_GOID_CLASS = bytes.fromhex("040000008200E00074C5B7101A82E008")
_VCAL = b"vCal-Uid\x01\x00\x00\x00"

PARTSTAT = {
    "accepted": "ACCEPTED",
    "organizer": "ACCEPTED",
    "tentativelyaccepted": "TENTATIVE",
    "declined": "DECLINED",
    "none": "NEEDS-ACTION",
    "notresponded": "NEEDS-ACTION",
}


def ical_uid_from_graph(value: str) -> str | None:
    """The iCalendar UID an .ics export of this meeting carries, from Graph's ``iCalUId``: the UID embedded
    by a meeting that came from another system ("vCal-Uid"), else the Global Object ID with its instance
    date cleared (the series' id, upper-case hex). None when ``value`` is no Global Object ID."""
    try:
        raw = binascii.unhexlify(value.strip())
    except (binascii.Error, ValueError):
        return None
    if len(raw) < 40 or raw[:16] != _GOID_CLASS:
        return None
    size = int.from_bytes(raw[36:40], "little")
    data = raw[40 : 40 + size]
    if data.startswith(_VCAL):
        uid = data[len(_VCAL) :].split(b"\x00", 1)[0].decode("utf-8", "replace").strip()
        if uid:
            return printable(uid)
    return (raw[:16] + b"\x00\x00\x00\x00" + raw[20:]).hex().upper()


def _graph_time(value: Any, all_day: bool = False) -> datetime:
    """A Graph dateTimeTimeZone (or an ISO string) as aware UTC. Graph writes 7 fractional digits."""
    if isinstance(value, dict):
        text, zone = value.get("dateTime"), value.get("timeZone") or "UTC"
    else:
        text, zone = value, "UTC"
    if not isinstance(text, str) or not text:
        raise ValueError("no date-time")
    text = text.strip().replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        tail = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{tail}"
    d = datetime.fromisoformat(text)
    if d.tzinfo is None:
        z = str(zone)
        tz: tzinfo | None = (
            UTC if z.upper() in ("UTC", "GMT", "COORDINATED UNIVERSAL TIME", "TZONE://MICROSOFT/UTC") else None
        )
        if tz is None:
            try:
                tz = ZoneInfo(z)
            except (KeyError, ValueError, OSError):
                raise ValueError(f"unknown time zone {z!r}") from None
        d = d.replace(tzinfo=tz)
    return d.astimezone(UTC)


def _person(value: Any, role: str, partstat: str | None = None) -> Participant | None:
    if not isinstance(value, dict):
        return None
    addr = value.get("emailAddress")
    if not isinstance(addr, dict):
        return None
    email = str(addr.get("address") or "").strip().lower()
    if "@" not in email or " " in email:
        return None
    name = printable(str(addr.get("name") or "")).strip() or None
    return Participant(email=email, name=name if name and name.lower() != email else name, role=role, partstat=partstat)


class GraphCalendarSource(_GraphSource):
    """The primary calendar of a Microsoft 365 mailbox. Settings as :class:`GraphMailSource`, plus
    ``rewindow_days`` (default 7): how far the delta token's window may fall behind the sync window
    before a new one is started."""

    kind = "graph_calendar"

    def check(self) -> None:
        try:
            self._run(lambda: self.client.me.calendar.get(), "opening the calendar")
        finally:
            self.close()

    def batches(self, cursor: dict[str, Any] | None, ctx: SyncContext) -> Iterator[Batch]:
        cur = dict(cursor or {})
        link = cur.get("link") if isinstance(cur.get("link"), str) else None
        window = _window(cur.get("window")) if link else None
        target = sync_window(ctx.now)
        rewindow = timedelta(days=float(self.settings.get("rewindow_days", 7)))
        if link and window is not None and cur.get("complete") and target[0] - window[0] >= rewindow:
            # read the old token's last changes (removals included) before starting the new window
            for batch in self._rounds(link, window, ctx, cur, last=False):
                yield batch
                if ctx.stopping():
                    return
            link, window = None, None
        if ctx.stopping():
            return
        yield from self._rounds(link, window or target, ctx, cur, last=True)

    def _rounds(
        self, link: str | None, window: tuple[datetime, datetime], ctx: SyncContext, cur: dict[str, Any], last: bool
    ) -> Iterator[Batch]:
        b = self.client.me.calendar_view.delta
        params = b.DeltaRequestBuilderGetQueryParameters(start_date_time=_iso(window[0]), end_date_time=_iso(window[1]))
        prefer = [IMMUTABLE, 'outlook.timezone="UTC"', f"odata.maxpagesize={self._page_size(ctx)}"]
        masters: dict[str, str | None] = {}
        while True:
            page = self._run(
                lambda link=link: self._get_json(b, link, params, prefer),  # type: ignore[misc]
                "reading the calendar",
            )
            nxt, delta = _links(page)
            if nxt is None and delta is None:
                raise Unreachable("Microsoft Graph sent a calendar delta page without a next or delta link")
            items, deleted = self._events(page.get("value"), masters)
            done = nxt is None
            state: dict[str, object] = {
                "link": nxt or delta,
                "complete": done,
                "window": [_iso(window[0]), _iso(window[1])],
            }
            if done and not last:
                # the old window's last changes; the next batch starts a new window, so keep this one
                state = {**state, "link": None, "complete": False}
            yield Batch(items=items, cursor=state, deleted=deleted)
            if done or ctx.stopping():
                return
            link = nxt

    def _events(self, entries: Any, masters: dict[str, str | None]) -> tuple[tuple[Item, ...], tuple[str, ...]]:
        if not isinstance(entries, list):
            return (), ()
        items: list[Item] = []
        deleted: list[str] = []
        for entry in entries:
            eid = entry.get("id") if isinstance(entry, dict) else None
            if not isinstance(eid, str) or not eid:
                pid = _bad_id(entry)
                items.append(Quarantined(pid, pid, "Graph calendar delta entry without an event id"))
                continue
            if "@removed" in entry:
                deleted.append(eid)
                continue
            if entry.get("type") == "seriesMaster":
                masters[eid] = ical_uid_from_graph(str(entry.get("iCalUId") or "")) or entry.get("iCalUId") or None
                continue  # the master is no occurrence; calendarView lists its instances
            try:
                items.append(self._event(entry, eid, masters))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                items.append(Quarantined(eid, eid, f"unusable Graph event ({printable(str(exc))[:120]})"))
        return tuple(items), tuple(deleted)

    def _master_uid(self, master_id: str, masters: dict[str, str | None]) -> str | None:
        if master_id not in masters:

            async def get() -> Any:
                from kiota_abstractions.api_error import APIError
                from kiota_abstractions.base_request_configuration import RequestConfiguration

                eb = self.client.me.events.by_event_id(master_id)
                cfg: RequestConfiguration[Any] = RequestConfiguration(
                    query_parameters=eb.EventItemRequestBuilderGetQueryParameters(select=["iCalUId"])
                )
                cfg.headers.add("Prefer", IMMUTABLE)
                try:
                    return await eb.get(request_configuration=cfg)
                except APIError as exc:
                    if exc.response_status_code == 404:
                        return None  # the series is gone: the occurrence keeps its own iCalUId
                    raise

            master = self._run(get, "reading a series master")
            raw = str(getattr(master, "i_cal_u_id", "") or "")
            masters[master_id] = ical_uid_from_graph(raw) or raw or None
        return masters[master_id]

    def _event(self, e: dict[str, Any], eid: str, masters: dict[str, str | None]) -> CalendarItem:
        kind = str(e.get("type") or "singleInstance")
        all_day = e.get("isAllDay") is True
        start = _graph_time(e.get("start"))
        end = _graph_time(e["end"]) if e.get("end") else None
        raw_uid = str(e.get("iCalUId") or "")
        uid = ical_uid_from_graph(raw_uid) if raw_uid else None
        recurrence_id: datetime | None = None
        if kind in ("occurrence", "exception"):
            original = e.get("originalStart")
            recurrence_id = _graph_time(original) if original else start
            master_id = e.get("seriesMasterId")
            if uid is None and isinstance(master_id, str) and master_id:
                uid = self._master_uid(master_id, masters)
        uid = uid or raw_uid
        if not uid:
            raise ValueError("no iCalUId")
        owner_response = str((e.get("responseStatus") or {}).get("response") or "").lower()
        attendees: list[Participant] = []
        for a in e.get("attendees") or []:
            status = str(((a or {}).get("status") or {}).get("response") or "").lower()
            p = _person(a, "attendee", PARTSTAT.get(status))
            if p is not None:
                attendees.append(p)
        if owner_response == "declined":
            # the owner's own answer lives in responseStatus, not always in the attendee list
            mine = [p for p in attendees if p.email == self.owner]
            name = mine[0].name if mine else None
            attendees = [p for p in attendees if p.email != self.owner]
            attendees.append(Participant(self.owner, name, "attendee", "DECLINED"))
        organizer = _person(e.get("organizer"), "organizer")
        status = "CANCELLED" if e.get("isCancelled") is True else "CONFIRMED"
        summary = printable(str(e.get("subject") or "")).strip()
        description = printable(str(e.get("bodyPreview") or ""))[:DESCRIPTION_MAX]
        fields = [
            uid,
            recurrence_id.isoformat() if recurrence_id else "",
            start.isoformat(),
            end.isoformat() if end else "",
            all_day,
            summary,
            description,
            status,
            [organizer.email, organizer.name] if organizer else None,
            [[p.email, p.name, p.partstat] for p in attendees],
        ]
        return CalendarItem(
            provider_id=eid,
            locator=eid,
            ical_uid=uid,
            recurrence_id=recurrence_id,
            start=start,
            end=end,
            summary=summary,
            description=description,
            organizer=organizer,
            attendees=tuple(attendees),
            status=status,
            all_day=all_day,
            content_hash=hashlib.sha1(json.dumps(fields).encode()).hexdigest(),
        )


def _iso(d: datetime) -> str:
    return d.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _window(value: Any) -> tuple[datetime, datetime] | None:
    if not isinstance(value, list) or len(value) != 2:
        return None
    try:
        return _graph_time(value[0]), _graph_time(value[1])
    except ValueError:
        return None


__all__ = [
    "CLOUDS",
    "GraphCalendarSource",
    "GraphMailSource",
    "MsalTokens",
    "build_client",
    "cloud_endpoints",
    "graph_client",
    "ical_uid_from_graph",
    "translate",
]
