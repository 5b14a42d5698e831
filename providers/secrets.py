"""Passwords and tokens for sources, resolved when needed and never stored.

A source's settings hold only how to obtain its secret: ``password_cmd`` (a shell command printing it,
like mbsync's PassCmd: ``pass show mail/work``, ``secret-tool lookup ...``) or ``password_env`` (the
name of an environment variable). The secret itself lives in memory for the connection only and never
appears in the database, the logs or an error message.
"""

from __future__ import annotations

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
