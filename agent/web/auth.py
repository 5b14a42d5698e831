"""Users, passwords and the session key of the web page.

Only a salted scrypt hash of a password or token is stored. Sessions are signed cookies (Starlette's
SessionMiddleware, itsdangerous) whose key sits in the credential store (OS keyring or the encrypted
file), never in the database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from providers.errors import BadInput, NotFound
from store.models import User

from ..corrections import audit

log = logging.getLogger(__name__)
_N, _R, _P = 2**14, 8, 1
SESSION_KEY_REF = "inkless-web-session-key"


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.urlsafe_b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_secret(secret: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        want = base64.urlsafe_b64decode(digest)
        got = hashlib.scrypt(
            secret.encode(), salt=base64.urlsafe_b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(want)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def add_user(s: Session, name: str, secret: str, now: datetime) -> None:
    name = name.strip()
    if not name:
        raise BadInput("a user needs a name")
    if len(secret) < 8:
        raise BadInput("a password needs at least 8 characters")
    user = s.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None:
        s.add(User(name=name, secret_hash=hash_secret(secret), created_at=now))
    else:
        user.secret_hash, user.disabled_at = hash_secret(secret), None
    audit(s, "cli", "user-add", {"user": name}, now)


def disable_user(s: Session, name: str, now: datetime) -> None:
    user = s.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None:
        raise NotFound(f"no user {name!r}")
    user.disabled_at = now
    audit(s, "cli", "user-remove", {"user": name}, now)


def verify_user(s: Session, name: str, secret: str) -> bool:
    user = s.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None or user.disabled_at is not None:
        hashlib.scrypt(secret.encode(), salt=b"x" * 16, n=_N, r=_R, p=_P)  # same time either way
        return False
    return check_secret(secret, user.secret_hash)


def active_user(s: Session, name: str) -> bool:
    user = s.execute(select(User).where(User.name == name)).scalar_one_or_none()
    return user is not None and user.disabled_at is None


def session_key() -> str:
    """The cookie-signing key from the credential store, made on first use."""
    from providers.errors import InklessError
    from providers.secrets import load_secret, save_secret

    try:
        return load_secret(SESSION_KEY_REF)
    except InklessError:
        pass
    key = secrets.token_urlsafe(32)
    try:
        save_secret(SESSION_KEY_REF, key)
    except Exception as exc:  # noqa: BLE001 - no usable store: sessions last until the server stops
        log.warning(
            "no credential store for the session key (%s); sign-ins end when the server stops", type(exc).__name__
        )
    return key
