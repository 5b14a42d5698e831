"""A real, unprivileged Dovecot IMAP server on loopback for tests, plus a TCP proxy that can cut a
connection after N bytes (a connection dropped mid-FETCH).

The server follows the verified recipe in shared/notes/providers.md §3.2 (a): its own config, state
and Maildir in a temporary directory, a passwd-file user, no system configuration touched. It starts
in a few hundredths of a second, so every test gets its own server and mailbox.

Use the ``dovecot`` fixture: ``from tests.dovecot import dovecot_fixture  # noqa: F401`` in a test module.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

DOVECOT = Path(os.environ.get("INKLESS_DOVECOT", "/usr/sbin/dovecot"))
DOVEADM = Path(os.environ.get("INKLESS_DOVEADM", "/usr/bin/doveadm"))

_CONFIG = """\
base_dir = {dir}/run
state_dir = {dir}/run/state
instance_name = inkless-test-{tag}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
log_path = {dir}/log/dovecot.log
default_login_user = {mail_user}
default_internal_user = {mail_user}
default_internal_group = {mail_group}
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={dir}/mail/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  chroot =
}}
service anvil {{
  chroot =
  # no growing delay after failed logins (tests try wrong passwords on purpose): auth cannot reach it
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
protocol imap {{
  mail_plugins =
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.005)
    return False


class Dovecot:
    """One running Dovecot with one user. ``host``, ``port``, ``user`` and ``password`` are what a client
    needs; the helpers change the mailbox the way a mail client or a server admin would."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dv-"))  # short: unix socket paths are limited to 108 bytes
        self.host = "127.0.0.1"
        self.port = free_port()
        self.user = "ana@northwind.io"
        self.password = "s3cret-" + secrets.token_hex(4)
        self.conf = self.dir / "dovecot.conf"
        self._pid: int | None = None

    # -- life cycle --------------------------------------------------------------------------------
    def start(self) -> None:
        root = os.geteuid() == 0
        mail_user, mail_group = ("nobody", "nogroup") if root else _me()
        os.chmod(self.dir, 0o755)  # the mail user must be able to reach its Maildir
        for sub in ("run", "mail", "log"):
            (self.dir / sub).mkdir()
        (self.dir / "users").write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        if root:
            shutil.chown(self.dir / "mail", "nobody", "nogroup")
        self.conf.write_text(
            _CONFIG.format(dir=self.dir, port=self.port, tag=self.dir.name, mail_user=mail_user, mail_group=mail_group)
        )
        # the daemon's children keep stdout/stderr open: send them to a file, not to a pipe we wait on
        errfile = self.dir / "log" / "start.err"
        with open(errfile, "wb") as err:
            proc = subprocess.run(
                [str(DOVECOT), "-c", str(self.conf)], stdin=subprocess.DEVNULL, stdout=err, stderr=err, timeout=30
            )
        if proc.returncode != 0:
            raise RuntimeError(f"dovecot did not start: {errfile.read_text(errors='replace').strip()}")
        pidfile = self.dir / "run" / "master.pid"
        deadline = time.monotonic() + 10
        pid = ""
        while time.monotonic() < deadline:  # the master writes its pid file non-atomically: wait for content
            pid = pidfile.read_text().strip() if pidfile.exists() else ""
            if pid:
                break
            time.sleep(0.005)
        if not pid:
            raise RuntimeError(f"dovecot wrote no pid file:\n{self.log()[-2000:]}")
        self._pid = int(pid.split()[0])
        if not _wait_for_port(self.port, deadline):
            self.stop()
            raise RuntimeError(f"dovecot is not listening on {self.port}:\n{self.log()[-2000:]}")

    def stop(self) -> None:
        if self._pid is not None:
            # the master leads its own process group (it daemonised); a graceful SIGTERM takes ~3 s,
            # so the whole group is killed: nothing here needs a clean shutdown
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _alive(self._pid):
                time.sleep(0.005)
            self._pid = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.dir / "log" / "dovecot.log").read_text(errors="replace")
        except OSError:
            return ""

    # -- clients -----------------------------------------------------------------------------------
    def settings(self, **extra: object) -> dict[str, object]:
        """Source settings for this server; the password comes from the environment variable named in
        ``password_env`` (the caller sets it)."""
        return {"host": self.host, "port": self.port, "user": self.user, "security": "plain", **extra}

    def client(self, port: int | None = None) -> IMAPClient:
        c = IMAPClient(self.host, port=port or self.port, ssl=False, timeout=30)
        c.login(self.user, self.password)
        return c

    def doveadm(self, *args: str, stdin: bytes | None = None) -> str:
        proc = subprocess.run(
            [str(DOVEADM), "-c", str(self.conf), *args], input=stdin, capture_output=True, timeout=120
        )
        if proc.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed: {proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout.decode(errors="replace")

    # -- mailbox changes ---------------------------------------------------------------------------
    def append(self, folder: str, raw: bytes, flags: Iterable[str] = ()) -> int:
        """IMAP APPEND one message; returns its UID."""
        with self.client() as c:
            self._ensure(c, folder)
            resp = c.append(folder, raw, flags=tuple(flags))
        # b'[APPENDUID <uidvalidity> <uid>] Append completed.'
        return int(resp.split(b"]")[0].split()[-1])

    def append_many(self, folder: str, raws: Iterable[bytes], chunk: int = 200) -> int:
        """APPEND many messages over one connection (MULTIAPPEND, ``chunk`` per command)."""
        n = 0
        with self.client() as c:
            self._ensure(c, folder)
            batch: list[bytes] = []
            for raw in raws:
                batch.append(raw)
                if len(batch) >= chunk:
                    c.multiappend(folder, batch)
                    n += len(batch)
                    batch = []
            if batch:
                c.multiappend(folder, batch)
                n += len(batch)
        return n

    def save(self, folder: str, raw: bytes) -> None:
        """Deliver one message the way an MDA would (``doveadm save``), without IMAP."""
        self.doveadm("save", "-u", self.user, "-m", folder, stdin=raw)

    @staticmethod
    def _ensure(c: IMAPClient, folder: str) -> None:
        if not c.folder_exists(folder):
            c.create_folder(folder)

    def uids(self, folder: str) -> list[int]:
        with self.client() as c:
            c.select_folder(folder, readonly=True)
            return sorted(c.search("ALL"))

    def uidvalidity(self, folder: str) -> int:
        with self.client() as c:
            return int(c.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])

    def set_flags(self, folder: str, uids: list[int], flags: Iterable[str]) -> None:
        with self.client() as c:
            c.select_folder(folder)
            c.add_flags(uids, tuple(flags))

    def expunge(self, folder: str, uids: list[int]) -> None:
        with self.client() as c:
            c.select_folder(folder)
            c.delete_messages(uids)
            c.uid_expunge(uids)

    def delete_folder(self, folder: str) -> None:
        with self.client() as c:
            c.delete_folder(folder)

    def recreate_folder(self, folder: str) -> list[bytes]:
        """Delete and re-create ``folder`` with the same messages: a new UIDVALIDITY (what a server
        restore or a client "repair" does). Returns the messages copied back."""
        with self.client() as c:
            c.select_folder(folder, readonly=True)
            uids = sorted(c.search("ALL"))
            raws = [d[b"RFC822"] for _, d in sorted(c.fetch(uids, [b"RFC822"]).items())] if uids else []
            c.unselect_folder()
            before = int(c.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])
            c.delete_folder(folder)
            c.create_folder(folder)
            if folder == "INBOX" or int(c.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"]) == before:
                raise RuntimeError(f"{folder}: the UIDVALIDITY did not change")
            for i in range(0, len(raws), 200):
                c.multiappend(folder, raws[i : i + 200])
        return raws

    def kick(self) -> None:
        """Disconnect every IMAP session of the user (server side)."""
        subprocess.run([str(DOVEADM), "-c", str(self.conf), "kick", self.user], capture_output=True, timeout=30)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        return True


def _me() -> tuple[str, str]:
    import grp
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


def require_dovecot() -> None:
    """Skip (or, in CI, fail) when Dovecot is not installed."""
    missing = [str(p) for p in (DOVECOT, DOVEADM) if not p.exists()]
    if not missing:
        return
    reason = f"Dovecot is not installed ({' and '.join(missing)} missing; apt-get install dovecot-imapd)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(name="dovecot")
def dovecot_fixture() -> Iterator[Dovecot]:
    """A fresh server and mailbox per test (it starts in a few hundredths of a second)."""
    require_dovecot()
    server = Dovecot()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------- proxy
class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target, one thread pair per connection.

    ``budgets`` lists, per accepted connection in order, how many bytes the server may send to the
    client before the proxy cuts both sides (None: no limit; connections beyond the list are not cut).
    ``connections`` counts accepted connections; ``to_client`` counts bytes sent to clients.
    """

    def __init__(self, target_host: str, target_port: int, budgets: Iterable[int | None] = ()) -> None:
        self.target = (target_host, target_port)
        self.budgets = list(budgets)
        self.connections = 0
        self.to_client = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._closing = threading.Event()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                budget = self.budgets[self.connections] if self.connections < len(self.budgets) else None
                self.connections += 1
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            self._socks += [client, upstream]
            pair = _Pair(self, client, upstream, budget)
            for t in (
                threading.Thread(target=pair.pump, args=(client, upstream, False), daemon=True),
                threading.Thread(target=pair.pump, args=(upstream, client, True), daemon=True),
            ):
                self._threads.append(t)
                t.start()

    def close(self) -> None:
        self._closing.set()
        self._listener.close()
        self._acceptor.join(2)
        for s in self._socks:
            _close(s)
        for t in self._threads:
            t.join(2)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Pair:
    def __init__(self, proxy: TcpProxy, client: socket.socket, upstream: socket.socket, budget: int | None):
        self.proxy, self.client, self.upstream, self.budget = proxy, client, upstream, budget
        self.sent = 0
        self.cut = threading.Event()

    def pump(self, src: socket.socket, dst: socket.socket, to_client: bool) -> None:
        try:
            while not self.cut.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if to_client and self.budget is not None and self.sent + len(data) >= self.budget:
                    data = data[: max(0, self.budget - self.sent)]
                    dst.sendall(data)
                    self.sent += len(data)
                    with self.proxy._lock:
                        self.proxy.to_client += len(data)
                        self.proxy.cuts += 1
                    self.cut.set()
                    break
                dst.sendall(data)
                if to_client:
                    self.sent += len(data)
                    with self.proxy._lock:
                        self.proxy.to_client += len(data)
        except OSError:
            pass
        finally:
            # cut (or end) both directions: the client sees EOF / a reset mid-response
            for s in (self.client, self.upstream):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.close()


def mbox_messages(path: Path) -> list[bytes]:
    """The messages of an mbox exactly as providers.mailfiles.MboxSource hands them to the parser."""
    from providers.mailfiles import _MBOXRD_ESCAPE, MboxSource

    src = MboxSource(str(path), "x@example.test")
    with open(path, "rb") as fh:
        return [_MBOXRD_ESCAPE.sub(rb"\1", raw) for _, _, raw in src._messages(fh, 0)]


class CommandLog:
    """Records the name of every tagged IMAP command a client sends (``UID FETCH``, ``EXAMINE``, ...).

    ``connect(server)`` returns a connect factory for :class:`providers.imap.ImapSource` that logs in
    to ``server`` (optionally through ``port``, e.g. a :class:`TcpProxy`) with a recording client."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def clear(self) -> None:
        self.commands.clear()

    def count(self, name: str) -> int:
        return sum(1 for c in self.commands if c == name)

    def connect(
        self, server: Dovecot, port: int | None = None, password: str | None = None
    ) -> Callable[[], IMAPClient]:
        def factory() -> IMAPClient:
            client = IMAPClient(server.host, port=port or server.port, ssl=False, timeout=10)
            self.wrap(client)
            try:
                client.login(server.user, server.password if password is None else password)
            except BaseException:
                client.shutdown()
                raise
            return client

        return factory

    def wrap(self, client: IMAPClient) -> None:
        imap = client._imap
        send = imap.send
        tagpre = imap.tagpre

        def recording_send(data: bytes) -> None:
            if data.startswith(tagpre):
                words = data.split(b" ", 3)
                name = words[1] if len(words) > 1 else b""
                if name.upper() == b"UID" and len(words) > 2:
                    name = b"UID " + words[2]
                self.commands.append(name.decode("ascii", "replace").strip().upper())
            send(data)

        imap.send = recording_send
