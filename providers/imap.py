"""An IMAP mailbox (INBOX plus Sent by default) as a mail source.

Provider id and locator are ``"<folder>|<UIDVALIDITY>|<UID>"``: stable for as long as the server keeps
the folder's UIDVALIDITY. The cursor holds, per folder::

    {"uidvalidity": int, "last_uid": int, "highestmodseq": int (CONDSTORE servers),
     "verified_through": ISO instant | None, "verified_count": int}

``last_uid`` is the highest UID handed to the engine (or below which nothing is left to hand over).
A sync SELECTs each folder read-only (EXAMINE) and compares UIDNEXT with ``last_uid + 1`` before
anything else, so a sync that finds nothing new sends the same few commands whatever the mailbox
size. New UIDs are fetched in chunks of ``ctx.batch_size`` with one FETCH per chunk: the header and
only the first ``body_bytes`` of the text (attribution needs no more; a 30 MB attachment costs 64 KiB).

A changed UIDVALIDITY invalidates every UID of that folder: the folder is read again under new
provider ids and the engine recognises each message by its Message-ID, so nothing is logged twice.
Flag changes are not new items; expunged messages stay logged (a rep deleting mail must not erase
the CRM history) and are never fetched again.

``verified_through`` records when the folder was last proven complete: at most every
``verify_every`` seconds (by ``ctx.now``) the folder's UIDs are listed (UID SEARCH ALL) and compared
with what the engine stored (``ctx.is_known``); a gap is fetched again and repaired. A fresh backfill
lists every UID itself, so it counts as a verification.

A connection dropped mid-command is reopened, the folder re-selected and the chunk retried (three
attempts, short backoff) before the sync gives up with :class:`~providers.errors.Unreachable`.
The password is resolved (``password_cmd`` / ``password_env``) at connect time, for that connection
only; it is never stored, logged or put in an error message.
"""

from __future__ import annotations

import contextlib
import copy
import imaplib
import logging
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from imapclient import IMAPClient
from imapclient.exceptions import CapabilityError, IMAPClientError, LoginError
from imapclient.imapclient import _parse_untagged_response  # what idle_check() uses, for buffered lines

from .base import Source, SyncContext
from .errors import AuthExpired, ProviderError, Unreachable
from .mailparse import parse_message
from .records import Batch, Item, Quarantined
from .secrets import resolve_password

log = logging.getLogger("inkless.imap")
T = TypeVar("T")

#: attempts per command when the connection drops, and the pause before each retry
ATTEMPTS = 3
BACKOFF = (0.2, 1.0)
#: RFC 2177: re-issue IDLE well before the server's 30-minute inactivity timeout
IDLE_RENEW = 28 * 60
#: how often wait_for_change looks at ctx.stop
IDLE_POLL = 0.25
#: (host, port, user, folder) -> (UIDVALIDITY, UIDNEXT) the last sync in this process saw. A watch loop
#: may build a new source object for IDLE; mail that arrived between that sync and the IDLE must wake it.
_SEEN_UIDNEXT: dict[tuple[str, int, str, str], tuple[int, int]] = {}
SENT_NAMES = ("sent", "sent items", "sent messages", "sent mail", "gesendet", "envoyés", "enviados")
#: what a dropped or broken connection raises inside imaplib/imapclient
_DROPPED: tuple[type[BaseException], ...] = (OSError, imaplib.IMAP4.abort, EOFError)


def _parse_job(job: tuple[bytes, str]) -> Item:
    """Top-level (picklable) worker for the engine's parallel map."""
    raw, pid = job
    return parse_message(raw, pid, pid)


class _ValidityChanged(Exception):
    """The folder's UIDVALIDITY changed while we were reading it (after a reconnect)."""


class _Conn:
    """One IMAP connection that reopens itself: ``run`` retries an operation after a drop, re-selecting
    the folder it needs and checking that its UIDVALIDITY did not change meanwhile."""

    def __init__(self, source: ImapSource) -> None:
        self.source = source
        self.client: IMAPClient | None = None
        self.selected: str | None = None
        self.validity: dict[str, int] = {}
        self.connected_once = False

    def open(self) -> IMAPClient:
        if self.client is None:
            self.client = self.source._open()
            self.selected = None
            self.connected_once = True
        return self.client

    def drop(self) -> None:
        client, self.client, self.selected = self.client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.shutdown()

    def close(self) -> None:
        client, self.client, self.selected = self.client, None, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:
            with contextlib.suppress(Exception):
                client.shutdown()

    def examine(self, folder: str) -> dict[bytes, Any]:
        """SELECT the folder read-only (EXAMINE) and return the server's answer."""
        info: dict[bytes, Any] = self.run(None, lambda c: self._examine(c, folder), f"opening {folder}")
        return info

    def _examine(self, client: IMAPClient, folder: str) -> dict[bytes, Any]:
        try:
            info: dict[bytes, Any] = client.select_folder(folder, readonly=True)
        except (IMAPClientError, ValueError) as exc:
            if isinstance(exc, imaplib.IMAP4.abort):
                raise
            self.selected = None
            raise self.source._folder_error(folder, exc) from None
        self.selected = folder
        return info

    def run(self, folder: str | None, op: Callable[[IMAPClient], T], what: str) -> T:
        last: BaseException | None = None
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(BACKOFF[min(attempt - 1, len(BACKOFF) - 1)])
            try:
                client = self.open()
                if folder is not None and self.selected != folder:
                    info = self._examine(client, folder)
                    expected = self.validity.get(folder)
                    if expected is not None and int(info[b"UIDVALIDITY"]) != expected:
                        raise _ValidityChanged(folder)
                return op(client)
            except (AuthExpired, _ValidityChanged):
                raise
            except Unreachable as exc:
                if not self.connected_once:
                    raise  # the first connection failed: say so at once (DNS, TLS, refused)
                last = exc  # reconnecting after a drop failed: the server may be restarting
                self.drop()
            except _DROPPED as exc:
                last = exc
                log.info("IMAP connection to %s dropped while %s (%s); reconnecting", self.source.host, what, exc)
                self.drop()
            except IMAPClientError as exc:
                # a NO/BAD answer (e.g. messages expunged by another session mid-command): select again
                last = exc
                self.selected = None
        assert last is not None
        if isinstance(last, Unreachable):
            raise last
        if not isinstance(last, _DROPPED):
            raise ProviderError(f"IMAP server {self.source.host} refused {what}: {_reason(last)}") from None
        raise Unreachable(
            f"IMAP connection to {self.source.host}:{self.source.port} kept dropping while {what} "
            f"({ATTEMPTS} attempts): {_reason(last)}"
        ) from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text[:200] or type(exc).__name__


class ImapSource(Source):
    """An IMAP account. Settings: ``host``, ``port``, ``user``, ``security`` ("tls" | "starttls" |
    "plain"), ``folders`` (default INBOX and the \\Sent special-use folder), ``password_cmd`` or
    ``password_env``, ``verify_every`` (seconds, default 3600), ``body_bytes`` (default 65536),
    ``timeout`` (seconds, default 60), ``ca_file`` (extra CA bundle for a private server).

    Missing host/port/user are taken from ``location`` when it is an ``imap://user@host:port`` (or
    ``imaps://``) URL; the user defaults to the owner. ``connect`` replaces the default factory and
    must return a logged-in :class:`imapclient.IMAPClient` (tests pass one that goes through a proxy).
    """

    kind = "imap"

    def __init__(
        self,
        location: str,
        owner: str,
        settings: dict[str, Any] | None = None,
        connect: Callable[[], IMAPClient] | None = None,
    ) -> None:
        super().__init__(location, owner, settings)
        url = urlsplit(location) if "://" in location else None
        scheme = url.scheme.lower() if url else ""
        security = str(self.settings.get("security") or ("tls" if scheme == "imaps" else "")).lower()
        url_port = None
        if url is not None:
            with contextlib.suppress(ValueError):
                url_port = url.port
        try:
            port = int(self.settings.get("port") or url_port or 0) or None
        except (TypeError, ValueError):
            raise ProviderError(f"IMAP port must be a number, not {self.settings.get('port')!r}") from None
        if not security:
            security = "starttls" if port == 143 else "tls"
        if security not in ("tls", "starttls", "plain"):
            raise ProviderError(f"IMAP security must be tls, starttls or plain, not {security!r}")
        self.security = security
        self.host = str(self.settings.get("host") or (url.hostname if url and url.hostname else "") or "")
        self.port = int(port or (993 if security == "tls" else 143))
        self.user = str(
            self.settings.get("user") or (unquote(url.username) if url and url.username else "") or self.owner
        )
        self.verify_every = float(self.settings.get("verify_every", 3600))
        self.body_bytes = int(self.settings.get("body_bytes", 65536))
        self.timeout = float(self.settings.get("timeout", 60))
        self._connect = connect or self._default_connect
        self._idle: IMAPClient | None = None

    def _account(self, folder: str) -> tuple[str, int, str, str]:
        return (self.host, self.port, self.user, folder)

    # -- connecting --------------------------------------------------------------------------------
    def _password_source(self) -> str:
        if self.settings.get("password_cmd"):
            return "the password command"
        if self.settings.get("password_env"):
            return f"environment variable {self.settings['password_env']}"
        return "no password_cmd or password_env is set"

    def _default_connect(self) -> IMAPClient:
        if not self.host:
            raise ProviderError("IMAP source has no host: set settings.host or use imap://user@host:port")
        context = ssl.create_default_context(cafile=self.settings.get("ca_file"))
        client = IMAPClient(
            self.host, port=self.port, ssl=self.security == "tls", ssl_context=context, timeout=self.timeout
        )
        try:
            if self.security == "starttls":
                client.starttls(context)
            password = resolve_password(self.settings)
            if password is None:
                raise AuthExpired(
                    f"IMAP source {self.user} at {self.host} has no password: set password_cmd or password_env"
                )
            client.login(self.user, password)
        except BaseException:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
        return client

    def _open(self) -> IMAPClient:
        """A logged-in client, with every connect/login failure translated to one clear line."""
        where = f"{self.host}:{self.port}"
        try:
            client = self._connect()
        except ProviderError:
            raise
        except LoginError:
            raise AuthExpired(
                f"IMAP login refused for {self.user} at {self.host}: check the password ({self._password_source()})"
            ) from None
        except CapabilityError:
            raise Unreachable(
                f"IMAP server {where} does not offer STARTTLS (TLS); check the security setting"
            ) from None
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise Unreachable(
                f"TLS handshake with IMAP server {where} failed ({_ssl_reason(exc)}); check the security setting "
                "and the port"
            ) from None
        except socket.gaierror:
            raise Unreachable(f"cannot resolve IMAP host {self.host!r} (DNS)") from None
        except ConnectionRefusedError:
            raise Unreachable(f"IMAP server {where} refused the connection") from None
        except TimeoutError:
            raise Unreachable(f"IMAP server {where} did not answer within {self.timeout:g} s") from None
        except OSError as exc:
            raise Unreachable(f"cannot connect to IMAP server {where}: {exc.strerror or type(exc).__name__}") from None
        except imaplib.IMAP4.abort as exc:
            raise Unreachable(f"IMAP server {where} closed the connection: {_reason(exc)}") from None
        except IMAPClientError as exc:
            raise ProviderError(f"IMAP server {where} refused: {_reason(exc)}") from None
        if self.settings.get("condstore", True):
            with contextlib.suppress(IMAPClientError):
                if client.has_capability("CONDSTORE"):
                    client.enable("CONDSTORE")
        return client

    def _folder_error(self, folder: str, exc: BaseException) -> ProviderError:
        text = _reason(exc)
        if "NONEXISTENT" in text.upper() or "exist" in text.lower():
            return ProviderError(
                f"IMAP folder {folder!r} does not exist (anymore) on {self.host}: fix the source's folders setting"
            )
        return ProviderError(f"IMAP folder {folder!r} on {self.host} cannot be opened: {text}")

    def _folders(self, conn: _Conn) -> list[str]:
        configured = self.settings.get("folders")
        if isinstance(configured, str):
            configured = [f.strip() for f in configured.split(",") if f.strip()]
        if configured:
            return list(dict.fromkeys(str(f) for f in configured))
        listing = conn.run(None, lambda c: c.list_folders(), "listing folders")
        return ["INBOX", *([sent] if (sent := _sent_folder(listing)) else [])]

    # -- the contract ------------------------------------------------------------------------------
    def check(self) -> None:
        conn = _Conn(self)
        try:
            folders = self._folders(conn)
            if self.settings.get("folders"):
                listing = conn.run(None, lambda c: c.list_folders(), "listing folders")
                names = {name for _, _, name in listing} | {"INBOX"}
                missing = [f for f in folders if f not in names and f.upper() != "INBOX"]
                if missing:
                    raise self._folder_error(missing[0], ProviderError("NONEXISTENT"))
        finally:
            conn.close()

    def folder_of(self, provider_id: str) -> str | None:
        return provider_id.rsplit("|", 2)[0]

    def batches(self, cursor: dict[str, Any] | None, ctx: SyncContext) -> Iterator[Batch]:
        previous = (cursor or {}).get("folders")
        previous = previous if isinstance(previous, dict) else {}
        conn = _Conn(self)
        try:
            folders = self._folders(conn)
            state: dict[str, dict[str, Any]] = {}
            for f in folders:
                st = previous.get(f)
                if isinstance(st, dict) and isinstance(st.get("uidvalidity"), int):
                    state[f] = dict(st)
            for folder in folders:
                if ctx.stopping():
                    return
                try:
                    yield from self._sync_folder(conn, folder, state, ctx)
                except _ValidityChanged:
                    # the folder was recreated while we read it; the next sync reads it again
                    log.warning("IMAP folder %s changed its UIDVALIDITY during the sync", folder)
        finally:
            conn.close()

    def _sync_folder(
        self, conn: _Conn, folder: str, state: dict[str, dict[str, Any]], ctx: SyncContext
    ) -> Iterator[Batch]:
        before = copy.deepcopy(state.get(folder))
        info = conn.examine(folder)
        validity = int(info[b"UIDVALIDITY"])
        uidnext = int(info[b"UIDNEXT"]) if info.get(b"UIDNEXT") else None
        conn.validity[folder] = validity
        st = state.get(folder)
        if st is None or st.get("uidvalidity") != validity:
            if st is not None:
                log.info("IMAP folder %s has a new UIDVALIDITY: reading it again", folder)
            st = {"uidvalidity": validity, "last_uid": 0, "verified_through": None, "verified_count": 0}
            state[folder] = st
        if info.get(b"HIGHESTMODSEQ") is not None:
            st["highestmodseq"] = int(info[b"HIGHESTMODSEQ"])

        def cursor() -> dict[str, Any]:
            return {"folders": copy.deepcopy(state)}

        prefix = f"{folder}|{validity}|"
        last_uid = int(st.get("last_uid") or 0)

        # 1. completeness of what earlier syncs handed over (UIDs up to last_uid)
        if last_uid and self._verify_due(st, ctx.now):
            present = [u for u in conn.run(folder, lambda c: c.search("ALL"), f"listing {folder}") if u <= last_uid]
            present.sort()
            missing: list[int] = []
            for i in range(0, len(present), 1000):
                chunk = present[i : i + 1000]
                known = ctx.is_known([prefix + str(u) for u in chunk])
                missing += [u for u in chunk if prefix + str(u) not in known]
            if missing:
                log.warning("IMAP folder %s: %d messages were never stored; fetching them", folder, len(missing))
            for i in range(0, len(missing), ctx.batch_size):
                if ctx.stopping():
                    return
                chunk = missing[i : i + ctx.batch_size]
                items = self._fetch_items(conn, folder, chunk, ctx)
                yield Batch(items=items, cursor=cursor(), total_hint=len(missing) - i - len(chunk))
            st["verified_through"] = ctx.now.isoformat()
            st["verified_count"] = len(present)

        # 2. new mail
        fresh = last_uid == 0
        if uidnext is None or uidnext > last_uid + 1:
            # "n:*" always matches the highest UID, even when it is below n: filter
            found = conn.run(folder, lambda c: c.search(["UID", f"{last_uid + 1}:*"]), f"searching {folder}")
            new = sorted(u for u in found if u > last_uid)
            if fresh:
                st["verified_through"] = ctx.now.isoformat()
                st["verified_count"] = 0
            for i in range(0, len(new), ctx.batch_size):
                if ctx.stopping():
                    return
                chunk = new[i : i + ctx.batch_size]
                known = ctx.is_known([prefix + str(u) for u in chunk])
                todo = [u for u in chunk if prefix + str(u) not in known]
                items = self._fetch_items(conn, folder, todo, ctx) if todo else ()
                st["last_uid"] = chunk[-1]
                if fresh:
                    st["verified_count"] = int(st["verified_count"]) + len(chunk)
                yield Batch(items=items, cursor=cursor(), total_hint=len(new) - i - len(chunk))
            # UIDs below UIDNEXT that are not there were expunged before we saw them
            st["last_uid"] = max(int(st["last_uid"]), (uidnext or 1) - 1)
        if folder.upper() == "INBOX" and uidnext is not None:
            _SEEN_UIDNEXT[self._account(folder)] = (validity, max(uidnext, int(st["last_uid"]) + 1))
        if st != before:
            yield Batch(items=(), cursor=cursor(), total_hint=0)

    def _verify_due(self, st: dict[str, Any], now: datetime) -> bool:
        stamp = st.get("verified_through")
        if not stamp:
            return True
        try:
            when = datetime.fromisoformat(str(stamp))
        except ValueError:
            return True
        return now - when >= timedelta(seconds=self.verify_every) or when > now + timedelta(days=1)

    def _fetch_items(self, conn: _Conn, folder: str, uids: list[int], ctx: SyncContext) -> tuple[Item, ...]:
        """One FETCH for the chunk: the header and the start of the text, parsed on the engine's map."""
        validity = conn.validity[folder]
        parts = [b"RFC822.SIZE", b"BODY.PEEK[HEADER]", f"BODY.PEEK[TEXT]<0.{self.body_bytes}>".encode()]
        data = conn.run(folder, lambda c: c.fetch(uids, parts), f"fetching {len(uids)} messages from {folder}")
        jobs: list[tuple[bytes, str]] = []
        quarantined: dict[int, Quarantined] = {}
        order: list[int] = []
        for uid in uids:
            d = data.get(uid)
            if d is None:  # expunged between SEARCH and FETCH: nothing to store
                continue
            pid = f"{folder}|{validity}|{uid}"
            header = d.get(b"BODY[HEADER]")
            text = next((v for k, v in d.items() if k.startswith(b"BODY[TEXT]")), b"")
            order.append(uid)
            if not isinstance(header, bytes) or not header.strip():
                quarantined[uid] = Quarantined(pid, pid, "the IMAP server returned no header for this message")
                continue
            if not header.endswith(b"\n\n") and not header.endswith(b"\r\n\r\n"):
                header += b"\r\n"
            jobs.append((header + (text if isinstance(text, bytes) else b""), pid))
        parsed = iter(list(ctx.pmap(_parse_job, jobs)) if jobs else [])
        return tuple(quarantined[u] if u in quarantined else next(parsed) for u in order)

    def fetch(self, locator: str, ctx: SyncContext) -> Item | None:
        try:
            folder, validity_s, uid_s = locator.rsplit("|", 2)
            validity, uid = int(validity_s), int(uid_s)
        except ValueError:
            return None
        conn = _Conn(self)
        try:
            try:
                info = conn.examine(folder)
            except ProviderError:
                return None  # the folder is gone
            if int(info[b"UIDVALIDITY"]) != validity:
                return None
            conn.validity[folder] = validity
            items = self._fetch_items(conn, folder, [uid], ctx)
            return items[0] if items else None
        except _ValidityChanged:
            return None
        finally:
            conn.close()

    # -- push --------------------------------------------------------------------------------------
    def wait_for_change(self, ctx: SyncContext, timeout: float) -> bool:
        """IDLE on INBOX on a connection of its own (kept between calls; :meth:`close` ends it).

        True when the server reports EXISTS / RECENT / EXPUNGE, or when INBOX grew since the last sync
        (of any source object for this account in this process); False on timeout or when ``ctx.stop``
        is set (noticed within ``IDLE_POLL`` seconds)."""
        deadline = time.monotonic() + max(0.0, timeout)
        if ctx.stopping():
            return False
        try:
            client = self._idle
            if client is None:
                client = self._open()
                self._idle = client
                info = client.select_folder("INBOX", readonly=True)
                seen = _SEEN_UIDNEXT.get(self._account("INBOX"))
                now_at = (int(info.get(b"UIDVALIDITY") or 0), int(info.get(b"UIDNEXT") or 0))
                if seen is not None and (now_at[0] != seen[0] or now_at[1] > seen[1]):
                    return True
            client.idle()
            started = time.monotonic()
            changed = False
            while not changed:
                now = time.monotonic()
                if ctx.stopping() or now >= deadline:
                    break
                if now - started >= IDLE_RENEW:
                    _, resps = client.idle_done()
                    if _is_change(resps):
                        return True
                    client.idle()
                    started = time.monotonic()
                    continue
                # imaplib may already hold responses in its buffer, where select() cannot see them
                # (Dovecot sends "+ idling" and pending "* n EXISTS" in one packet)
                resps = _buffered_responses(client)
                if not resps:
                    wait = min(IDLE_POLL, deadline - now, started + IDLE_RENEW - now)
                    ready, _, _ = select.select([client.socket()], [], [], max(0.0, wait))
                    if not ready:
                        continue
                    resps = client.idle_check(timeout=0)
                changed = _is_change(resps)
                if not resps and _at_eof(client.socket()):
                    raise ConnectionResetError("the server closed the IDLE connection")
            # what arrived between the last check and DONE counts too
            _, resps = client.idle_done()
            return changed or (_is_change(resps) and not ctx.stopping())
        except ProviderError:
            self._drop_idle()
            raise
        except _DROPPED as exc:
            # the IDLE connection died: whatever happened meanwhile, a sync will tell
            log.info("IMAP IDLE connection to %s dropped (%s)", self.host, _reason(exc))
            self._drop_idle()
            return True
        except IMAPClientError as exc:
            self._drop_idle()
            raise ProviderError(f"IMAP IDLE on {self.host} failed: {_reason(exc)}") from None

    def _drop_idle(self) -> None:
        client, self._idle = self._idle, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.shutdown()

    def close(self) -> None:
        """Close the IDLE connection, if any."""
        client, self._idle = self._idle, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:
            with contextlib.suppress(Exception):
                client.shutdown()


def _is_change(resps: list[Any]) -> bool:
    for r in resps:
        if isinstance(r, tuple) and len(r) >= 2 and isinstance(r[0], int):
            if r[1] in (b"EXISTS", b"EXPUNGE"):
                return True
            if r[1] == b"RECENT" and r[0] > 0:
                return True
    return False


def _buffered_responses(client: IMAPClient) -> list[Any]:
    """Complete untagged lines imaplib has read from the socket but not parsed yet."""
    imap = client._imap
    sock = client.socket()
    out: list[Any] = []
    sock.setblocking(False)
    try:
        while True:
            try:
                pending = imap.file.peek(1)
            except (BlockingIOError, ssl.SSLWantReadError, InterruptedError):
                break
            if not pending or b"\n" not in pending:
                break  # nothing, or half a line: select() sees the rest arrive
            out.append(_parse_untagged_response(imap._get_line()))
    finally:
        sock.setblocking(True)
        client._set_read_timeout()
    return out


def _at_eof(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except ssl.SSLError:
        return False
    except OSError:
        return True


def _sent_folder(listing: list[tuple[tuple[bytes, ...], bytes, str]]) -> str | None:
    """The \\Sent special-use folder (RFC 6154, also Gmail's XLIST flag), else a folder named like one."""
    for flags, _, name in listing:
        if any(f.lower() == b"\\sent" for f in flags):
            return str(name)
    by_name: dict[str, str] = {}
    for flags, delim, name in listing:
        if any(f.lower() == b"\\noselect" for f in flags):
            continue
        leaf = str(name).rsplit(delim.decode() if isinstance(delim, bytes) and delim else "/", 1)[-1]
        by_name.setdefault(leaf.lower(), str(name))
    for candidate in SENT_NAMES:
        if candidate in by_name:
            return by_name[candidate]
    return None


def _ssl_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "verify_message", None)
    return str(reason or _reason(exc))[:200]
