"""``inkless connect``: the one-time consent for Google, Microsoft 365 and Exchange on-premises.

Each flow ends with a credential in the encrypted store (providers/secrets.py) under a reference
name, and with source rows whose settings hold that name plus the endpoints used (national clouds,
private endpoints, the local servers tests use) — never the token itself.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.errors import AuthExpired, BadInput
from providers.secrets import save_secret

GOOGLE_SCOPES = [
    "https://www.googleapis.com/auth/gmail.readonly",
    "https://www.googleapis.com/auth/calendar.readonly",
]
MS_SCOPES = ["Mail.Read", "Calendars.Read"]  # MSAL adds offline_access (refresh tokens) itself

#: Microsoft national clouds: login authority host and Graph endpoint (Microsoft Graph "national cloud deployments")
MS_CLOUDS = {
    "global": ("https://login.microsoftonline.com", "https://graph.microsoft.com"),
    "usgov": ("https://login.microsoftonline.us", "https://graph.microsoft.us"),
    "usgov-dod": ("https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),
    "china": ("https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"),
}
EXCHANGE_ONLINE_HOSTS = ("outlook.office365.com", "outlook.office.com", "office365.com", "outlook.office365.us")


@dataclass
class Connected:
    token_ref: str
    sources: list[tuple[str, str, dict[str, Any]]]  # (kind, location, settings)


def connect_google(
    owner: str,
    client_secrets: Path,
    open_browser: bool = True,
    port: int = 0,
    api_endpoint: str | None = None,
    announce: Callable[[str], None] = print,
    timeout: int = 600,
) -> Connected:
    """Installed-app flow with a loopback redirect; read-only Gmail and Calendar scopes.

    The OAuth endpoints come from the client-secrets file (auth_uri / token_uri), as Google's own
    libraries read them, so a private or test endpoint needs no code path of its own."""
    from google_auth_oauthlib.flow import InstalledAppFlow

    if not client_secrets.is_file():
        raise BadInput(f"{client_secrets}: no such client-secrets file (download it from your Google Cloud project)")
    try:
        flow = InstalledAppFlow.from_client_secrets_file(str(client_secrets), GOOGLE_SCOPES)
    except ValueError as exc:
        raise BadInput(f"{client_secrets}: not a Google OAuth client-secrets file ({exc})") from None
    prompt = "Open this address in a browser to let inkless read your mail and calendar:\n{url}"
    if open_browser:
        prompt = "A browser window asks you to let inkless read your mail and calendar. If it did not open:\n{url}"
    try:
        creds = flow.run_local_server(
            host="localhost",
            port=port,
            open_browser=open_browser,
            authorization_prompt_message=prompt,
            success_message="inkless is connected; you can close this window.",
            timeout_seconds=timeout,
        )
    except Exception as exc:  # oauthlib/requests errors; the text may hold the code, never print it
        raise AuthExpired(f"Google refused the sign-in ({type(exc).__name__}); run the command again") from None
    if not getattr(creds, "refresh_token", None):
        raise AuthExpired("Google returned no refresh token; remove inkless's access in your Google account and retry")
    ref = f"google:{owner}"
    save_secret(ref, creds.to_json())
    common: dict[str, Any] = {"token_ref": ref}
    if api_endpoint:
        common["api_endpoint"] = api_endpoint
    return Connected(
        ref,
        [
            ("gmail", f"gmail://{owner}", dict(common)),
            ("gcal", f"gcal://{owner}/primary", {**common, "calendar": "primary"}),
        ],
    )


def microsoft_endpoints(
    cloud: str, tenant: str, authority: str | None, graph_endpoint: str | None
) -> tuple[str, str, list[str]]:
    if cloud not in MS_CLOUDS:
        raise BadInput(f"unknown cloud {cloud!r}; one of: {', '.join(MS_CLOUDS)}")
    login, graph = MS_CLOUDS[cloud]
    auth = authority or f"{login}/{tenant}"
    graph = (graph_endpoint or graph).rstrip("/")
    if not auth.startswith("https://"):
        raise BadInput("--authority must be an https URL (MSAL refuses anything else)")
    scopes = MS_SCOPES if cloud == "global" and not graph_endpoint else [f"{graph}/{s}" for s in MS_SCOPES]
    return auth, graph, scopes


def connect_microsoft(
    owner: str,
    client_id: str,
    tenant: str = "common",
    cloud: str = "global",
    authority: str | None = None,
    graph_endpoint: str | None = None,
    announce: Callable[[str], None] = print,
    http_client: Any = None,
) -> Connected:
    """Device-code flow (works on a headless machine); the MSAL token cache is what gets stored."""
    import msal

    auth, graph, scopes = microsoft_endpoints(cloud, tenant, authority, graph_endpoint)
    cache = msal.SerializableTokenCache()
    kwargs: dict[str, Any] = {"authority": auth, "token_cache": cache}
    if authority or cloud != "global":
        kwargs["instance_discovery"] = False
    if http_client is not None:
        kwargs["http_client"] = http_client
    try:
        app = msal.PublicClientApplication(client_id, **kwargs)
        flow = app.initiate_device_flow(scopes=scopes)
    except ValueError as exc:
        raise BadInput(f"the Microsoft sign-in could not start: {exc}") from None
    if "user_code" not in flow:
        raise AuthExpired(f"Microsoft refused to start the sign-in: {flow.get('error_description') or flow}")
    announce(flow["message"])
    result = app.acquire_token_by_device_flow(flow)
    if "access_token" not in result:
        err = result.get("error_description") or result.get("error") or "no token"
        raise AuthExpired(f"Microsoft sign-in failed: {str(err).splitlines()[0]}")
    ref = f"microsoft:{owner}"
    save_secret(ref, cache.serialize())
    common: dict[str, Any] = {
        "token_ref": ref,
        "client_id": client_id,
        "authority": auth,
        "graph_endpoint": graph,
        "scopes": scopes,
        "cloud": cloud,
    }
    return Connected(
        ref,
        [
            ("graph_mail", f"graph://{owner}/mail", dict(common)),
            ("graph_calendar", f"graph://{owner}/calendar", dict(common)),
        ],
    )


def connect_exchange(
    owner: str,
    server: str,
    auth: str = "ntlm",
    user: str | None = None,
    password_settings: dict[str, str] | None = None,
    ask_password: Callable[[str], str] = getpass.getpass,
) -> Connected:
    """Exchange on-premises over EWS. Exchange Online is Graph's job."""
    host = server.split("://", 1)[-1].split("/", 1)[0].lower()
    if host.endswith(EXCHANGE_ONLINE_HOSTS) or host.endswith(".office.com"):
        raise BadInput(
            f"{host} is Exchange Online: connect it with `inkless connect microsoft --owner {owner}` "
            "(EWS in Exchange Online is being switched off)"
        )
    if auth not in ("ntlm", "basic", "oauth"):
        raise BadInput("--auth must be ntlm, basic or oauth")
    ref = f"exchange:{owner}"
    settings: dict[str, Any] = {"server": host, "auth": auth, "user": user or owner}
    if password_settings:
        settings.update(password_settings)  # a command or a variable: nothing to store
    else:
        secret = ask_password(f"Password for {user or owner} at {host}: ")
        if not secret:
            raise BadInput("no password given")
        save_secret(ref, secret)
        settings["token_ref"] = ref
    return Connected(ref, [("exchange", f"ews://{owner}@{host}", settings)])


def describe(conn: Connected) -> str:
    return json.dumps([k for k, _, _ in conn.sources])
