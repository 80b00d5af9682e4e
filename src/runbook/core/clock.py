"""The one timestamp format of the store: UTC ISO 8601 with microseconds and ``+00:00``.

The reaper compares heartbeats *as text* in SQL (``heartbeat_at < ?``), which is only right when
every writer uses exactly this fixed-width format; so there is one function that writes it.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def ts(dt: datetime | None = None) -> str:
    """``dt`` (default: now) as the store's timestamp text."""
    return (dt or now()).astimezone(UTC).isoformat(timespec="microseconds")


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)
