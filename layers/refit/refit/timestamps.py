"""ISO 8601 times as refit writes and reads them: ``...Z`` or an offset, any precision."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

Precision = Literal["auto", "seconds", "milliseconds"]


def format_utc(moment: datetime, timespec: Precision = "milliseconds") -> str:
    """``moment`` in UTC as ISO 8601 with ``Z``, e.g. ``2026-12-07T22:14:36.123Z``."""
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def parse_utc(text: str) -> datetime:
    """``text`` as an aware datetime (no offset means UTC); ValueError if it is none.

    Parsed, never compared as text: records write times at different precisions.
    """
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
