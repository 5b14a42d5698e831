"""The one error tree of inkless.

::

    InklessError                      anything inkless reports as one actionable line
    ├── ProviderError                 a mail/calendar/CRM system misbehaved
    │   ├── AuthExpired               credentials revoked or expired: reconnect
    │   ├── RateLimited(retry_after)  the provider asked us to wait
    │   ├── CursorExpired             the saved sync cursor is no longer valid: full resync
    │   └── Unreachable               host down, DNS, TLS, path missing
    ├── BadInput(problems=[...])      a file or argument the user gave is wrong (file:line: reason)
    ├── NotFound                      a record named on the command line does not exist
    └── ConfigError                   the database or configuration is not usable

SDK and OS exceptions are translated into these at each adapter's boundary, once; the CLI turns each
into one line and a non-zero exit code. Messages never contain secrets.
"""

from __future__ import annotations


class InklessError(Exception):
    """Base of every error inkless reports to a person."""

    exit_code = 1


class ProviderError(InklessError):
    """A source or CRM connector failed."""


class AuthExpired(ProviderError):
    """The grant or password no longer works; the source needs reconnecting."""


class RateLimited(ProviderError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CursorExpired(ProviderError):
    """The provider no longer accepts the saved cursor; a full, idempotent resync follows."""


class Unreachable(ProviderError):
    """The source cannot be reached (missing path, host down)."""


class BadInput(InklessError):
    """User-supplied input is wrong. ``problems`` holds one line per problem (file:line: reason)."""

    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])

    def __str__(self) -> str:
        base = super().__str__()
        if not self.problems:
            return base
        shown = self.problems[:20]
        more = len(self.problems) - len(shown)
        lines = [base, *("  " + p for p in shown)]
        if more > 0:
            lines.append(f"  ... and {more} more")
        return "\n".join(lines)


class NotFound(InklessError):
    exit_code = 3


class ConfigError(InklessError):
    pass
