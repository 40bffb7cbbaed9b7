"""The one clock: aware UTC datetimes everywhere (the database stores UTC on every backend)."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)
