"""A Gmail mailbox (the Gmail REST API through google-api-python-client) as a mail source.

Provider id and locator of a message are its Gmail message id (immutable, unique in the mailbox).

Sync follows Google's sync guide:

* **backfill** (no cursor): ``users.getProfile`` gives the ``historyId`` *before* anything is listed, so
  mail that arrives during the backfill is picked up by the incremental step afterwards. Then
  ``users.messages.list(q="after:EPOCH")`` pages through the ids of the window (``window_days``,
  default 180; ``maxResults`` at most 500) and every page becomes one batch. The cursor of a batch
  points at the next page, so a crash mid-backfill resumes there; ids the engine already stored
  (``ctx.is_known``) are never fetched again, which also makes a resync after an expired cursor cheap.
* **incremental**: ``users.history.list(startHistoryId)`` (``messageAdded`` and ``messageDeleted``
  records, paged) gives the new ids, fetched as below; the response's ``historyId`` becomes the cursor.
  Deleted mail is ignored on purpose: a rep deleting mail must not erase the CRM history (as with
  IMAP expunges). A 404 means the history id is too old: :class:`CursorExpired`, the engine resyncs.

Messages are fetched in HTTP batches of at most 50 calls (Google's advice; each call counts against
quota). First ``format=metadata`` with the headers classification needs; a message whose headers
already rule it out (List-Unsubscribe, List-Id, Auto-Submitted, Precedence bulk, a calendar or report
Content-Type, ...) is parsed from those headers alone and never downloaded whole. The rest is fetched
with ``format=raw`` and parsed by :func:`providers.mailparse.parse_message`, the parser every mail
source shares, so the same email read from Gmail and from an mbox gives the same record.

Cursor: ``{"history_id": str, "window_start": ISO instant, "backfill": {"page_token": str | None} | None}``.

Errors are translated here, once (see :class:`GoogleApi`): 401 or a refused refresh (``invalid_grant``)
-> :class:`AuthExpired` naming ``inkless connect gmail --owner OWNER``; 429 and 403 rate limits are first
retried by the SDK (``execute(num_retries=...)``) and then become :class:`RateLimited` with the server's
``Retry-After``; 5xx after the retries, timeouts and connection failures -> :class:`Unreachable`.
A message that cannot be read (missing fields, bad base64, unparseable MIME) becomes Quarantined and
the sync goes on.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import random
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from .base import Source, SyncContext
from .errors import AuthExpired, CursorExpired, ProviderError, RateLimited, Unreachable
from .mailparse import parse_message
from .records import Batch, Item, Quarantined
from .secrets import load_secret

log = logging.getLogger("inkless.gmail")

SCOPES = (
    "https://www.googleapis.com/auth/gmail.readonly",
    "https://www.googleapis.com/auth/calendar.readonly",
)
#: calls per HTTP batch (Google allows 100 and advises 50)
BATCH_CALLS = 50
#: ids per messages.list / history.list page (the API's maximum)
PAGE_MAX = 500
#: retries the SDK makes itself (429, 5xx, 403 rate limits) before we give up
DEFAULT_RETRIES = 5
#: the wait suggested when a rate limit carries no Retry-After
DEFAULT_RETRY_AFTER = 60.0
METADATA_HEADERS = (
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "References",
    "In-Reply-To",
    "List-Unsubscribe",
    "List-Id",
    "Precedence",
    "Auto-Submitted",
    "Content-Type",
    "X-Autoreply",
    "X-Autorespond",
    "X-Auto-Response-Suppress",
    "Feedback-ID",
    "X-Campaign",
)
_SKIP_LABELS = frozenset({"DRAFT", "SPAM", "TRASH"})


def reconnect_command(owner: str) -> str:
    """What a person runs to grant access again (one Google grant covers Gmail and Calendar)."""
    return f"inkless connect gmail --owner {owner}"


def _parse_job(job: tuple[bytes, str]) -> Item:
    """Top-level (picklable) worker for the engine's parallel map."""
    raw, pid = job
    return parse_message(raw, pid, pid)


def _status(exc: Any) -> int:
    try:
        return int(exc.resp.status)
    except (AttributeError, TypeError, ValueError):
        return 0


def error_reason(exc: Any) -> str:
    """The first ``errors[].reason`` (or ``status``) of a Google JSON error body, '' if none."""
    try:
        data = json.loads(exc.content.decode("utf-8", "replace"))
        err = data["error"]
        errors = err.get("errors") or []
        if errors and isinstance(errors[0], dict) and errors[0].get("reason"):
            return str(errors[0]["reason"])
        details = err.get("details") or []
        for d in details:
            if isinstance(d, dict) and d.get("reason"):
                return str(d["reason"])
        return str(err.get("status") or "")
    except Exception:  # noqa: BLE001 - any body shape: no reason
        return ""


def error_message(exc: Any) -> str:
    try:
        data = json.loads(exc.content.decode("utf-8", "replace"))
        return str(data["error"].get("message") or "")[:200]
    except Exception:  # noqa: BLE001
        return ""


def _retry_after(exc: Any) -> float | None:
    try:
        value = exc.resp.get("retry-after")
    except AttributeError:
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(str(value))
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def _rate_limited(status: int, reason: str) -> bool:
    return status == 429 or (status == 403 and reason in ("rateLimitExceeded", "userRateLimitExceeded"))


class GoogleApi:
    """Runs Google API requests and translates every SDK, auth and transport failure, once.

    ``what`` names the service in messages ("Gmail", "Google Calendar"); ``owner`` is used for the
    reconnect command. ``retries`` is passed to ``execute(num_retries=...)``; HTTP batches, which the
    SDK does not retry, are retried here for the same statuses with the same randomized backoff.
    """

    def __init__(self, what: str, owner: str, retries: int = DEFAULT_RETRIES) -> None:
        self.what = what
        self.owner = owner
        self.retries = retries

    def auth_expired(self, detail: str) -> AuthExpired:
        return AuthExpired(
            f"{self.what} access for {self.owner} was revoked or has expired ({detail}): "
            f"run `{reconnect_command(self.owner)}`"
        )

    def translate(self, exc: BaseException, doing: str) -> ProviderError:
        """The ProviderError for an exception raised while ``doing`` something."""
        from google.auth.exceptions import RefreshError, TransportError
        from googleapiclient.errors import HttpError

        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, RefreshError):
            text = str(exc)
            detail = "invalid_grant" if "invalid_grant" in text else "the token refresh was refused"
            return self.auth_expired(detail)
        if isinstance(exc, HttpError):
            status, reason = _status(exc), error_reason(exc)
            if status == 401:
                return self.auth_expired(f"HTTP 401 while {doing}")
            if _rate_limited(status, reason):
                wait = _retry_after(exc)
                return RateLimited(
                    f"{self.what} rate limit ({reason or status}) while {doing}; "
                    f"retry in {wait if wait is not None else DEFAULT_RETRY_AFTER:g} s",
                    retry_after=wait if wait is not None else DEFAULT_RETRY_AFTER,
                )
            if status >= 500:
                return Unreachable(f"{self.what} answered HTTP {status} while {doing} (after {self.retries} retries)")
            if status == 403:
                msg = error_message(exc)
                return AuthExpired(
                    f"{self.what} refused access while {doing} ({reason or 'forbidden'}{': ' + msg if msg else ''}): "
                    f"run `{reconnect_command(self.owner)}` and grant read access"
                )
            msg = error_message(exc)
            return ProviderError(f"{self.what} answered HTTP {status} while {doing}{': ' + msg if msg else ''}")
        if isinstance(exc, TimeoutError | socket.timeout):
            return Unreachable(f"{self.what} did not answer in time while {doing}")
        if isinstance(exc, TransportError):
            return Unreachable(f"cannot reach {self.what} while {doing}: {type(exc).__name__}")
        try:
            import httplib2

            if isinstance(exc, httplib2.HttpLib2Error):
                return Unreachable(f"cannot reach {self.what} while {doing}: {type(exc).__name__}")
        except ImportError:  # pragma: no cover - httplib2 comes with the SDK
            pass
        if isinstance(exc, OSError):
            return Unreachable(f"cannot reach {self.what} while {doing}: {exc.strerror or type(exc).__name__}")
        if isinstance(exc, ValueError):  # JSON of a 200 answer that is not JSON
            return ProviderError(f"{self.what} sent an unreadable answer while {doing}")
        raise exc

    def call(self, request: Any, doing: str) -> Any:
        """``request.execute()`` with the SDK's retries, every failure translated."""
        try:
            return request.execute(num_retries=self.retries)
        except Exception as exc:  # noqa: BLE001 - translated (or re-raised) below
            raise self.translate(exc, doing) from None

    def batch(
        self, batch_uri: str, requests: dict[str, Any], doing: str
    ) -> dict[str, tuple[Any, BaseException | None]]:
        """Run ``requests`` (request id -> HttpRequest) in HTTP batches of at most BATCH_CALLS calls.

        Returns request id -> (response, None) or (None, HttpError) for calls that failed on their own
        (404, 400, ...). Rate-limited and 5xx calls are retried with backoff; when they keep failing the
        translated error is raised. 401 raises AuthExpired.
        """
        from googleapiclient.errors import HttpError
        from googleapiclient.http import BatchHttpRequest

        results: dict[str, tuple[Any, BaseException | None]] = {}
        pending = dict(requests)
        attempt = 0
        while pending:
            retry: dict[str, Any] = {}
            last: BaseException | None = None
            ids = list(pending)
            for i in range(0, len(ids), BATCH_CALLS):
                chunk = ids[i : i + BATCH_CALLS]
                got: dict[str, tuple[Any, BaseException | None]] = {}

                def done(request_id: str, response: Any, exception: BaseException | None) -> None:
                    got[request_id] = (response, exception)  # noqa: B023 - used within this iteration only

                batch = BatchHttpRequest(callback=done, batch_uri=batch_uri)
                for rid in chunk:
                    batch.add(pending[rid], request_id=rid)
                try:
                    batch.execute()
                except HttpError as exc:
                    if not self._retryable(exc):
                        raise self.translate(exc, doing) from None
                    last = exc
                    retry.update({rid: pending[rid] for rid in chunk})
                    continue
                except Exception as exc:  # noqa: BLE001
                    error = self.translate(exc, doing)
                    if not isinstance(error, Unreachable):
                        raise error from None
                    last = exc
                    retry.update({rid: pending[rid] for rid in chunk})
                    continue
                for rid in chunk:
                    response, exception = got.get(rid, (None, None))
                    if exception is None and rid not in got:
                        exception = ProviderError(f"{self.what} batch answer had no part for {rid}")
                    if isinstance(exception, HttpError):
                        if _status(exception) == 401:
                            raise self.auth_expired(f"HTTP 401 while {doing}")
                        if self._retryable(exception):
                            last = exception
                            retry[rid] = pending[rid]
                            continue
                    results[rid] = (response, exception)
            pending = retry
            if pending:
                attempt += 1
                if attempt > self.retries:
                    assert last is not None
                    raise self.translate(last, doing) from None
                time.sleep(random.random() * 2**attempt)
        return results

    @staticmethod
    def _retryable(exc: Any) -> bool:
        status = _status(exc)
        return status >= 500 or _rate_limited(status, error_reason(exc))


def build_service(api: str, version: str, owner: str, settings: dict[str, Any], service_path: str = "") -> Any:
    """A googleapiclient Resource from the stored grant (``settings["token_ref"]``).

    ``settings["api_endpoint"]`` is the API root shared by Gmail and Calendar (``inkless connect gmail
    --api-endpoint``); ``client_options.api_endpoint`` replaces the whole base path, so ``service_path``
    (``calendar/v3/``) is appended to it unless it is already there."""
    from google.oauth2.credentials import Credentials
    from googleapiclient.discovery import build

    hint = reconnect_command(owner)
    ref = settings.get("token_ref")
    if not ref:
        raise AuthExpired(f"no Google grant is stored for {owner}: run `{hint}`")
    try:
        info = json.loads(load_secret(str(ref), hint))
        creds = Credentials.from_authorized_user_info(info, list(SCOPES))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, KeyError):
        raise AuthExpired(f"the stored Google grant for {owner} is unreadable: run `{hint}`") from None
    endpoint = str(settings.get("api_endpoint") or "")
    if endpoint and service_path and not endpoint.rstrip("/").endswith(service_path.rstrip("/")):
        endpoint = endpoint.rstrip("/") + "/" + service_path
    options = {"api_endpoint": endpoint} if endpoint else None
    return build(api, version, credentials=creds, client_options=options, static_discovery=True, cache_discovery=False)


def base_url(service: Any) -> str:
    """Where the service sends requests: the public root or the configured ``api_endpoint``."""
    url = str(getattr(service, "_baseUrl", "") or "https://gmail.googleapis.com/")
    return url if url.endswith("/") else url + "/"


class GmailSource(Source):
    """One Gmail mailbox. Settings: ``token_ref`` (the stored OAuth grant), ``api_endpoint`` (another
    API root, e.g. a local test server), ``window_days`` (backfill depth, default 180), ``retries``
    (SDK retries per call, default 5). ``service`` replaces the default Resource built from the grant."""

    kind = "gmail"

    def __init__(
        self,
        location: str,
        owner: str,
        settings: dict[str, Any] | None = None,
        service: Any | None = None,
    ) -> None:
        super().__init__(location, owner, settings)
        self._service = service
        self.window_days = int(self.settings.get("window_days", 180))
        self.api = GoogleApi("Gmail", self.owner, int(self.settings.get("retries", DEFAULT_RETRIES)))

    # -- the SDK seam ------------------------------------------------------------------------------
    def _default_service(self) -> Any:
        return build_service("gmail", "v1", self.owner, self.settings)

    @property
    def service(self) -> Any:
        if self._service is None:
            self._service = self._default_service()
        return self._service

    def _batch_uri(self) -> str:
        # service.new_batch_http_request() ignores api_endpoint (googleapis/google-api-python-client#1107)
        return base_url(self.service) + "batch/gmail/v1"

    # -- the contract ------------------------------------------------------------------------------
    def check(self) -> None:
        self.api.call(self.service.users().getProfile(userId="me"), "reading the mailbox profile")

    def fetch(self, locator: str, ctx: SyncContext) -> Item | None:
        from googleapiclient.errors import HttpError

        request = self.service.users().messages().get(userId="me", id=locator, format="raw")
        try:
            message = request.execute(num_retries=self.api.retries)
        except HttpError as exc:
            if _status(exc) in (400, 404):
                return None
            raise self.api.translate(exc, f"reading message {locator}") from None
        except Exception as exc:  # noqa: BLE001
            raise self.api.translate(exc, f"reading message {locator}") from None
        return self._from_raw(locator, message)

    def batches(self, cursor: dict[str, Any] | None, ctx: SyncContext) -> Iterator[Batch]:
        state = dict(cursor or {})
        if not state.get("history_id"):
            profile = self.api.call(self.service.users().getProfile(userId="me"), "reading the mailbox profile")
            history_id = str(profile.get("historyId") or "")
            if not history_id:
                raise ProviderError("Gmail profile has no historyId")
            start = ctx.now - timedelta(days=self.window_days)
            state = {"history_id": history_id, "window_start": start.isoformat(), "backfill": {"page_token": None}}
        backfill = state.get("backfill")
        if isinstance(backfill, dict):
            for batch in self._backfill(state, backfill.get("page_token"), ctx):
                yield batch
                if ctx.stopping():
                    return
        yield from self._incremental(state, ctx)

    # -- backfill ----------------------------------------------------------------------------------
    def _backfill(self, state: dict[str, Any], page_token: str | None, ctx: SyncContext) -> Iterator[Batch]:
        start = datetime.fromisoformat(str(state["window_start"]))
        query = f"after:{int(start.timestamp())}"
        page_size = max(1, min(PAGE_MAX, ctx.batch_size))
        listed = 0
        while True:
            request = (
                self.service.users()
                .messages()
                .list(userId="me", q=query, maxResults=page_size, **({"pageToken": page_token} if page_token else {}))
            )
            page = self.api.call(request, "listing messages")
            ids = [str(m["id"]) for m in page.get("messages") or [] if isinstance(m, dict) and m.get("id")]
            page_token = page.get("nextPageToken") or None
            items = self._fetch_new(ids, ctx)
            cursor = {**state, "backfill": {"page_token": page_token} if page_token else None}
            listed += len(ids)
            estimate = page.get("resultSizeEstimate")
            left = max(0, int(estimate) - listed) if isinstance(estimate, int) and page_token else 0
            yield Batch(items=tuple(items), cursor=cursor, total_hint=left)
            state.update(cursor)
            if not page_token or ctx.stopping():
                return

    # -- incremental -------------------------------------------------------------------------------
    def _incremental(self, state: dict[str, Any], ctx: SyncContext) -> Iterator[Batch]:
        from googleapiclient.errors import HttpError

        start = str(state["history_id"])
        added: dict[str, None] = {}
        page_token: str | None = None
        latest = start
        while True:
            kwargs: dict[str, Any] = {
                "userId": "me",
                "startHistoryId": start,
                "historyTypes": ["messageAdded", "messageDeleted"],
                "maxResults": PAGE_MAX,
            }
            if page_token:
                kwargs["pageToken"] = page_token
            request = self.service.users().history().list(**kwargs)
            try:
                page = request.execute(num_retries=self.api.retries)
            except HttpError as exc:
                if _status(exc) == 404:
                    raise CursorExpired(
                        f"Gmail history id {start} of {self.owner} has expired; reading the mailbox again"
                    ) from None
                raise self.api.translate(exc, "reading the mailbox history") from None
            except Exception as exc:  # noqa: BLE001
                raise self.api.translate(exc, "reading the mailbox history") from None
            for record in page.get("history") or []:
                for entry in record.get("messagesAdded") or []:
                    msg = entry.get("message") or {}
                    if msg.get("id") and not _SKIP_LABELS.intersection(msg.get("labelIds") or ()):
                        added[str(msg["id"])] = None
                # messagesDeleted: deliberately ignored, deleted mail stays logged
            latest = str(page.get("historyId") or latest)
            page_token = page.get("nextPageToken") or None
            if not page_token:
                break
        ids = list(added)
        final = {**state, "history_id": latest, "backfill": None}
        if not ids:
            if latest != start or state.get("backfill") is not None:
                yield Batch(items=(), cursor=final)
            return
        # until the last chunk is stored, the cursor stays at the old history id (is_known skips the rest)
        step = max(1, ctx.batch_size)
        for i in range(0, len(ids), step):
            chunk = ids[i : i + step]
            items = self._fetch_new(chunk, ctx)
            last = i + step >= len(ids)
            yield Batch(items=tuple(items), cursor=final if last else {**state}, total_hint=max(0, len(ids) - i - step))
            if ctx.stopping():
                return

    # -- reading messages --------------------------------------------------------------------------
    def _fetch_new(self, ids: list[str], ctx: SyncContext) -> list[Item]:
        if not ids:
            return []
        known = ctx.is_known(ids)
        wanted = [i for i in ids if i not in known]
        if not wanted:
            return []
        messages = self.service.users().messages()
        meta_requests = {
            mid: messages.get(userId="me", id=mid, format="metadata", metadataHeaders=list(METADATA_HEADERS))
            for mid in wanted
        }
        metas = self.api.batch(self._batch_uri(), meta_requests, "reading message headers")
        out: dict[str, Item] = {}
        need_raw: list[str] = []
        header_only: list[tuple[bytes, str]] = []
        for mid in wanted:
            response, error = metas.get(mid, (None, None))
            if error is not None:
                if _status(error) == 404:  # deleted since it was listed: nothing to log
                    continue
                out[mid] = Quarantined(mid, mid, f"Gmail refused the message: {_describe(error)}")
                continue
            headers = _metadata_headers(response)
            if headers is None:
                out[mid] = Quarantined(mid, mid, "Gmail metadata without payload headers")
                continue
            if _SKIP_LABELS.intersection(response.get("labelIds") or ()):
                continue
            if _ruled_out(headers):
                header_only.append((_header_block(headers), mid))
            else:
                need_raw.append(mid)
        if need_raw:
            raw_requests = {mid: messages.get(userId="me", id=mid, format="raw") for mid in need_raw}
            raws = self.api.batch(self._batch_uri(), raw_requests, "reading messages")
            jobs: list[tuple[bytes, str]] = []
            for mid in need_raw:
                response, error = raws.get(mid, (None, None))
                if error is not None:
                    if _status(error) == 404:
                        continue
                    out[mid] = Quarantined(mid, mid, f"Gmail refused the message: {_describe(error)}")
                    continue
                raw = _decode_raw(response)
                if isinstance(raw, str):
                    out[mid] = Quarantined(mid, mid, raw)
                else:
                    jobs.append((raw, mid))
            for item in ctx.pmap(_parse_job, jobs):
                out[item.provider_id] = item
        for item in map(_parse_job, header_only):
            out[item.provider_id] = item
        return [out[mid] for mid in wanted if mid in out]

    def _from_raw(self, mid: str, message: Any) -> Item:
        raw = _decode_raw(message)
        if isinstance(raw, str):
            return Quarantined(mid, mid, raw)
        return parse_message(raw, mid, mid)


def _describe(error: BaseException) -> str:
    status = _status(error)
    if status:
        reason = error_reason(error)
        return f"HTTP {status}{' ' + reason if reason else ''}"
    return str(error)[:200]


def _decode_raw(message: Any) -> bytes | str:
    """The message bytes of a ``format=raw`` answer, or the reason they cannot be had."""
    if not isinstance(message, dict):
        return "Gmail answer is not a message object"
    raw = message.get("raw")
    if not isinstance(raw, str) or not raw:
        return "Gmail message without its raw content"
    try:
        text = raw.strip().encode("ascii")
        return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return "Gmail raw content is not valid base64url"


def _metadata_headers(message: Any) -> list[tuple[str, str]] | None:
    if not isinstance(message, dict):
        return None
    payload = message.get("payload")
    if not isinstance(payload, dict) or not isinstance(payload.get("headers"), list):
        return None
    out = []
    for h in payload["headers"]:
        if isinstance(h, dict) and isinstance(h.get("name"), str) and isinstance(h.get("value"), str):
            out.append((h["name"], h["value"]))
    return out


def _ruled_out(headers: list[tuple[str, str]]) -> bool:
    """True when the headers alone already say the message is never logged (bulk, automated, an
    invitation or a report), so its body is not worth downloading. Mirrors matching.classify's
    header signals; anything that depends on the people involved needs the full message."""
    h = {name.lower(): value.strip().lower() for name, value in headers}
    auto = h.get("auto-submitted", "")
    if auto and not auto.startswith("no"):
        return True
    if any(k in h for k in ("list-unsubscribe", "list-id", "x-autoreply", "x-autorespond", "feedback-id")):
        return True
    if "x-campaign" in h:
        return True
    if h.get("precedence", "") in ("bulk", "list", "junk", "auto_reply", "auto-reply"):
        return True
    ctype = h.get("content-type", "")
    return ctype.startswith("text/calendar") or ctype.startswith("multipart/report")


def _header_block(headers: list[tuple[str, str]]) -> bytes:
    """An RFC 5322 header block (no body) built from Gmail's metadata headers, for the shared parser."""
    lines = []
    for name, value in headers:
        value = value.replace("\r", " ").replace("\n", " ")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "replace")
