"""`inkless connect`: the OAuth flows up to the token exchange, against local loopback stubs of the
providers' endpoints, and the rule that secrets never reach the database or the output."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from agent.cli import app
from agent.connect import connect_exchange, microsoft_endpoints
from providers.errors import BadInput
from providers.secrets import load_secret
from store.db import open_db
from store.models import Source

REFRESH = "1//refresh-token-that-must-never-be-stored-in-plain-text"


class Stub:
    """A loopback HTTP(S) server answering OAuth endpoints; records every request body."""

    def __init__(self, routes: dict[str, Any], tls: tuple[str, str] | None = None) -> None:
        self.routes = routes
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, method: str) -> None:
                path = urllib.parse.urlparse(self.path).path
                length = int(self.headers.get("Content-Length") or 0)
                body = urllib.parse.parse_qs(self.rfile.read(length).decode()) if length else {}
                stub.requests.append((method, path, body))
                route = stub.routes.get(path)
                payload = route(body) if callable(route) else route
                data = json.dumps(payload if payload is not None else {"error": "not_found"}).encode()
                self.send_response(200 if payload is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._answer("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._answer("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def secret_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INKLESS_SECRET_BACKEND", "file")
    monkeypatch.setenv("INKLESS_SECRET_FILE", str(tmp_path / "data" / "secrets.bin"))
    monkeypatch.setenv("INKLESS_SECRET_KEY_FILE", str(tmp_path / "config" / "secret.key"))
    return tmp_path / "data" / "secrets.bin"


# ------------------------------------------------------------------------------------------- Google
@pytest.fixture
def google_stub() -> Iterator[Stub]:
    def token(body: dict[str, list[str]]) -> dict[str, Any]:
        assert body["grant_type"] == ["authorization_code"] and body["code"] == ["code-from-consent"]
        assert body.get("code_verifier"), "the installed-app flow must use PKCE"
        return {
            "access_token": "ya29.access",
            "refresh_token": REFRESH,
            "expires_in": 3599,
            "token_type": "Bearer",
            "scope": "https://www.googleapis.com/auth/gmail.readonly https://www.googleapis.com/auth/calendar.readonly",
        }

    stub = Stub({"/token": token})
    yield stub
    stub.close()


def test_gmail_consent_stores_the_grant_encrypted_and_adds_two_sources(
    google_stub: Stub, secret_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the stub token endpoint speaks plain http
    base = f"http://127.0.0.1:{google_stub.port}"
    secrets_file = tmp_path / "client_secret.json"
    secrets_file.write_text(json.dumps({"installed": {
        "client_id": "inkless-test.apps.googleusercontent.com", "client_secret": "not-so-secret",
        "auth_uri": f"{base}/auth", "token_uri": f"{base}/token", "redirect_uris": ["http://localhost"],
    }}))  # fmt: skip
    consent: dict[str, str] = {}

    class Browser:
        """Plays the user: reads the consent URL and follows the redirect back with a code."""

        def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
            q = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
            consent.update(scope=q["scope"][0], access_type=q.get("access_type", [""])[0])
            query = urllib.parse.urlencode(
                {"code": "code-from-consent", "state": q["state"][0], "scope": q["scope"][0]}
            )
            back = f"{q['redirect_uri'][0]}?{query}"
            threading.Thread(target=lambda: urllib.request.urlopen(back, timeout=10).read(), daemon=True).start()
            return True

    monkeypatch.setattr("webbrowser.get", lambda *a, **k: Browser())
    db = f"sqlite:///{tmp_path / 'i.db'}"
    result = CliRunner().invoke(
        app, ["--db", db, "connect", "gmail", "--owner", "Ana@Northwind.io", "--client-secrets", str(secrets_file),
              "--api-endpoint", "http://127.0.0.1:9/"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert set(consent["scope"].split()) == {
        "https://www.googleapis.com/auth/gmail.readonly",
        "https://www.googleapis.com/auth/calendar.readonly",
    }
    stored = json.loads(load_secret("google:ana@northwind.io"))
    assert stored["refresh_token"] == REFRESH and stored["token_uri"].endswith("/token")
    assert REFRESH.encode() not in secret_store.read_bytes()  # encrypted at rest
    _, sessions = open_db(db)
    with sessions() as s:
        rows = {r.kind: r for r in s.execute(select(Source)).scalars()}
    assert set(rows) == {"gmail", "gcal"}
    assert rows["gmail"].settings == {"token_ref": "google:ana@northwind.io", "api_endpoint": "http://127.0.0.1:9/"}
    assert REFRESH.encode() not in (tmp_path / "i.db").read_bytes()
    assert REFRESH not in result.output


def test_a_wrong_client_secrets_file_is_one_clear_error(tmp_path: Path, secret_store: Path) -> None:
    bad = tmp_path / "client_secret.json"
    bad.write_text('{"web": {}}')
    result = CliRunner().invoke(
        app, ["--db", f"sqlite:///{tmp_path / 'i.db'}", "connect", "gmail", "--owner", "a@b.io",
              "--client-secrets", str(bad), "--no-browser"],
    )  # fmt: skip
    assert isinstance(result.exception, BadInput) and "client-secrets" in str(result.exception)


# ---------------------------------------------------------------------------------------- Microsoft
@pytest.fixture
def tls_cert(tmp_path: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (MSAL accepts only https authorities)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, False, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def test_microsoft_device_code_flow_exchanges_the_code_and_stores_the_cache(
    tls_cert: tuple[str, str], secret_store: Path, tmp_path: Path
) -> None:
    import requests

    polls = {"n": 0}

    def token(body: dict[str, list[str]]) -> dict[str, Any]:
        assert body["grant_type"] == ["urn:ietf:params:oauth:grant-type:device_code"]
        assert body["device_code"] == ["dev-123"]
        polls["n"] += 1
        id_token = ".".join([_b64({"alg": "none"}), _b64({
            "iss": f"https://127.0.0.1:{stub.port}/tenant-x/v2.0", "aud": "client-1", "sub": "s", "tid": "tenant-x",
            "oid": "o", "preferred_username": "ana@northwind.io", "exp": 4102444800, "iat": 1700000000,
        }), ""])  # fmt: skip
        return {
            "token_type": "Bearer", "scope": "Mail.Read Calendars.Read", "expires_in": 3600,
            "access_token": "eyJ.access", "refresh_token": REFRESH, "id_token": id_token,
            "client_info": _b64({"uid": "o", "utid": "tenant-x"}),
        }  # fmt: skip

    routes: dict[str, Any] = {"/tenant-x/oauth2/v2.0/token": token}
    stub = Stub(routes, tls=tls_cert)
    base = f"https://127.0.0.1:{stub.port}/tenant-x"
    routes["/tenant-x/v2.0/.well-known/openid-configuration"] = {
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        "issuer": f"{base}/v2.0",
    }
    routes["/tenant-x/oauth2/v2.0/devicecode"] = {
        "device_code": "dev-123", "user_code": "ABCD-EFGH", "verification_uri": "https://microsoft.com/devicelogin",
        "expires_in": 900, "interval": 1,
        "message": "To sign in, open https://microsoft.com/devicelogin and enter the code ABCD-EFGH.",
    }  # fmt: skip
    session = requests.Session()
    session.verify = tls_cert[0]
    session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides the test CA
    said: list[str] = []
    try:
        from agent.connect import connect_microsoft

        conn = connect_microsoft(
            "ana@northwind.io", "client-1", authority=base, graph_endpoint="https://127.0.0.1:9/v1.0",
            announce=said.append, http_client=session,
        )  # fmt: skip
    finally:
        stub.close()
    assert said and "ABCD-EFGH" in said[0]
    assert polls["n"] == 1
    cache = json.loads(load_secret("microsoft:ana@northwind.io"))
    assert any(rt["secret"] == REFRESH for rt in cache["RefreshToken"].values())
    assert REFRESH.encode() not in secret_store.read_bytes()
    kinds = {k: settings for k, _, settings in conn.sources}
    assert set(kinds) == {"graph_mail", "graph_calendar"}
    assert kinds["graph_mail"]["authority"] == base and REFRESH not in json.dumps(kinds)


@pytest.mark.parametrize(
    ("cloud", "login", "graph"),
    [
        ("global", "https://login.microsoftonline.com/common", "https://graph.microsoft.com"),
        ("usgov", "https://login.microsoftonline.us/common", "https://graph.microsoft.us"),
        ("china", "https://login.chinacloudapi.cn/common", "https://microsoftgraph.chinacloudapi.cn"),
    ],
)
def test_national_clouds_pick_their_authority_and_graph_endpoint(cloud: str, login: str, graph: str) -> None:
    auth, endpoint, scopes = microsoft_endpoints(cloud, "common", None, None)
    assert (auth, endpoint) == (login, graph)
    assert all(s.endswith(("Mail.Read", "Calendars.Read")) for s in scopes)
    with pytest.raises(BadInput):
        microsoft_endpoints("mars", "common", None, None)
    with pytest.raises(BadInput):
        microsoft_endpoints("global", "common", "http://insecure/", None)


# ----------------------------------------------------------------------------------------- Exchange
def test_exchange_online_is_pointed_at_graph(secret_store: Path) -> None:
    with pytest.raises(BadInput, match="connect microsoft"):
        connect_exchange("ana@northwind.io", "outlook.office365.com", ask_password=lambda _: "pw")


def test_exchange_password_is_stored_encrypted_or_not_at_all(secret_store: Path) -> None:
    conn = connect_exchange("ana@corp.example", "mail.corp.example", ask_password=lambda _: "hunter2-secret")
    ((kind, _, settings),) = conn.sources
    assert kind == "exchange" and settings["token_ref"] == "exchange:ana@corp.example"
    assert "hunter2-secret" not in json.dumps(settings) and load_secret("exchange:ana@corp.example") == "hunter2-secret"
    assert b"hunter2-secret" not in secret_store.read_bytes()
    by_cmd = connect_exchange("ana@corp.example", "mail.corp.example", password_settings={"password_cmd": "pass x"})
    assert by_cmd.sources[0][2] == {"server": "mail.corp.example", "auth": "ntlm", "user": "ana@corp.example",
                                    "password_cmd": "pass x"}  # fmt: skip
