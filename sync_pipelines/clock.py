"""The one source of "now": timezone-aware UTC, shared by every layer."""

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)
