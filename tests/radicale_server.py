"""A real Radicale CalDAV server on loopback for tests (fixture ``radicale``).

Radicale runs from this interpreter (``python -m radicale``) on a free 127.0.0.1 port with its own temp
storage folder and htpasswd (plain) authentication, so a wrong password is answered 401 like a real
server. The fixture yields a :class:`RadicaleServer` with the URL and credentials plus helpers that use
the caldav client to create calendars and PUT or DELETE events. Without the radicale module the tests
are skipped with the reason, except under CI, where a missing server is a failure (CI installs it).
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

START_TIMEOUT = 15.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"OPTIONS / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return sock.recv(12).startswith(b"HTTP/")
    except OSError:
        return False


@dataclass
class RadicaleServer:
    """A running Radicale: ``url`` is the server root, ``user``/``password`` a valid htpasswd login."""

    url: str
    user: str
    password: str
    folder: Path
    _clients: list[Any] = field(default_factory=list, repr=False)

    def client(self, password: str | None = None) -> Any:
        """A caldav.DAVClient for the test user (closed when the fixture ends)."""
        from caldav.davclient import DAVClient

        client = DAVClient(url=self.url, username=self.user, password=password or self.password, timeout=10)
        self._clients.append(client)
        return client

    def calendar_url(self, cal_id: str) -> str:
        return f"{self.url}{self.user}/{cal_id}/"

    def make_calendar(
        self, cal_id: str, name: str | None = None, components: list[str] | None = None, timezone: str | None = None
    ) -> str:
        """Create a calendar collection ``/<user>/<cal_id>/`` (display name ``name``); returns its URL.

        ``components`` limits what it holds (``["VTODO"]``: a task list); ``timezone`` (an IANA name) sets
        its CALDAV:calendar-timezone."""
        from caldav.elements import cdav

        calendar = (
            self.client()
            .principal()
            .make_calendar(name=name or cal_id, cal_id=cal_id, supported_calendar_component_set=components)
        )
        if timezone:
            vtimezone = (
                "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//inkless tests//EN\r\nBEGIN:VTIMEZONE\r\n"
                f"TZID:{timezone}\r\nEND:VTIMEZONE\r\nEND:VCALENDAR\r\n"
            )
            calendar.set_properties([cdav.CalendarTimeZone(vtimezone)])
        return self.calendar_url(cal_id)

    def href(self, cal_id: str, name: str) -> str:
        return self.calendar_url(cal_id) + quote(name, safe="@.-_")

    def put(self, cal_id: str, ics: str | bytes, name: str | None = None) -> str:
        """PUT one calendar object (created or replaced). ``name`` defaults to ``<UID>.ics``; returns its URL."""
        body = ics.encode() if isinstance(ics, str) else ics
        if name is None:
            found = re.search(rb"(?m)^UID:(.+?)\r?$", body)
            assert found, "the event has no UID; give the object name"
            name = found.group(1).decode().strip() + ".ics"
        url = self.href(cal_id, name)
        response = self.client().put(url, body, {"Content-Type": "text/calendar; charset=utf-8"})
        assert response.status in (201, 204), f"PUT {url}: {response.status}"
        return url

    def delete(self, cal_id: str, name: str) -> None:
        url = self.href(cal_id, name)
        response = self.client().delete(url)
        assert response.status in (200, 204), f"DELETE {url}: {response.status}"

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()


@pytest.fixture
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadicaleServer]:
    if importlib.util.find_spec("radicale") is None:
        reason = f"the radicale module is not installed for {sys.executable} (pip install radicale)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("radicale")
    user, password = "ana", "correct horse battery staple"
    (folder / "users").write_text(f"{user}:{password}\n")
    (folder / "collections").mkdir()
    port = _free_port()
    (folder / "config").write_text(
        f"""[server]
hosts = 127.0.0.1:{port}
[auth]
type = htpasswd
htpasswd_filename = {folder / "users"}
htpasswd_encryption = plain
delay = 0
[storage]
filesystem_folder = {folder / "collections"}
[rights]
type = owner_only
[logging]
level = warning
"""
    )
    log = (folder / "radicale.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "radicale", "--config", str(folder / "config")],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    server = RadicaleServer(f"http://127.0.0.1:{port}/", user, password, folder)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                text = (folder / "radicale.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"Radicale did not start on port {port} (exit {proc.returncode}):\n{text}")
            time.sleep(0.05)
        yield server
    finally:
        server.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
