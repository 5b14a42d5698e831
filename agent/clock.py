"""The one place that reads "now". ``INKLESS_NOW`` (ISO 8601) pins it for reproducible runs."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from providers.errors import ConfigError


def now() -> datetime:
    pinned = os.environ.get("INKLESS_NOW")
    if pinned:
        try:
            d = datetime.fromisoformat(pinned.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"INKLESS_NOW is not an ISO 8601 instant: {pinned!r}") from None
        return d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)
    return datetime.now(UTC)
