"""Passwords and tokens for sources, resolved when needed and never stored.

A source's settings hold only how to obtain its secret: ``password_cmd`` (a shell command printing it,
like mbsync's PassCmd: ``pass show mail/work``, ``secret-tool lookup ...``) or ``password_env`` (the
name of an environment variable). The secret itself lives in memory for the connection only and never
appears in the database, the logs or an error message.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from typing import Any

from .errors import AuthExpired, BadInput

SECRET_KEYS = ("password_cmd", "password_env")


def resolve_password(settings: dict[str, Any]) -> str | None:
    cmd = settings.get("password_cmd")
    if cmd:
        try:
            proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise AuthExpired("the password command did not answer within 60 s") from None
        if proc.returncode != 0:
            # its stderr may echo the secret store's contents: report the exit code only
            raise AuthExpired(f"the password command failed (exit {proc.returncode})")
        line = proc.stdout.splitlines()[0] if proc.stdout else ""
        if not line:
            raise AuthExpired("the password command printed nothing")
        return line
    var = settings.get("password_env")
    if var:
        value = os.environ.get(str(var))
        if not value:
            raise AuthExpired(f"environment variable {var} is not set")
        return value
    return None


def secret_settings(password_cmd: str | None, password_env: str | None) -> dict[str, str]:
    if password_cmd and password_env:
        raise BadInput("give either --password-cmd or --password-env, not both")
    if password_cmd:
        return {"password_cmd": password_cmd}
    if password_env:
        return {"password_env": password_env}
    return {}


# ------------------------------------------------------------------------------------ stored credentials
# OAuth refresh tokens (Google, Microsoft token caches) and Exchange passwords given interactively must
# survive restarts. They go to the OS keyring when a real one is available; otherwise to a file encrypted
# with Fernet (AES-128-CBC + HMAC) whose key lives in a different directory (the config dir, mode 0600)
# or comes from INKLESS_SECRET_KEY. The database only ever holds the reference name.

_SERVICE = "inkless"


def _keyring() -> Any | None:
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    if os.environ.get("INKLESS_SECRET_BACKEND") == "file":
        return None
    backend = keyring.get_keyring()
    if (
        isinstance(backend, fail.Keyring)
        or type(backend).__name__ in ("Keyring", "ChainerBackend")
        and getattr(backend, "priority", 1) <= 0
    ):
        return None
    return keyring


def _paths() -> tuple[Any, Any]:
    from pathlib import Path

    from platformdirs import user_config_dir, user_data_dir

    data = Path(
        os.environ.get("INKLESS_SECRET_FILE") or Path(user_data_dir("inkless", appauthor=False)) / "secrets.bin"
    )
    key = Path(
        os.environ.get("INKLESS_SECRET_KEY_FILE") or Path(user_config_dir("inkless", appauthor=False)) / "secret.key"
    )
    return data, key


def _fernet() -> Any:
    from cryptography.fernet import Fernet

    env = os.environ.get("INKLESS_SECRET_KEY")
    if env:
        return Fernet(env.encode())
    _, key_path = _paths()
    if not key_path.exists():
        key_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key())
    return Fernet(key_path.read_bytes().strip())


def _read_file_store() -> dict[str, str]:
    import json

    from cryptography.fernet import InvalidToken

    data_path, _ = _paths()
    if not data_path.exists():
        return {}
    try:
        return dict(json.loads(_fernet().decrypt(data_path.read_bytes())))
    except InvalidToken:
        raise AuthExpired(
            f"the credential store {data_path} cannot be decrypted with its key (key file replaced?); "
            "reconnect the sources"
        ) from None


def _write_file_store(store: dict[str, str]) -> None:
    import json

    data_path, _ = _paths()
    data_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = data_path.with_name(data_path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(_fernet().encrypt(json.dumps(store).encode()))
    os.replace(tmp, data_path)


def save_secret(ref: str, value: str) -> None:
    """Store a credential under a reference name (the only thing a source's settings keep)."""
    kr = _keyring()
    if kr is not None:
        kr.set_password(_SERVICE, ref, value)
        return
    store = _read_file_store()
    store[ref] = value
    _write_file_store(store)


def load_secret(ref: str, reconnect_hint: str = "") -> str:
    kr = _keyring()
    value = kr.get_password(_SERVICE, ref) if kr is not None else _read_file_store().get(ref)
    if not value:
        hint = f": run `{reconnect_hint}`" if reconnect_hint else ""
        raise AuthExpired(f"no stored credential for {ref}{hint}")
    return str(value)


def delete_secret(ref: str) -> None:
    kr = _keyring()
    if kr is not None:
        with contextlib.suppress(Exception):  # already gone
            kr.delete_password(_SERVICE, ref)
        return
    store = _read_file_store()
    if store.pop(ref, None) is not None:
        _write_file_store(store)
