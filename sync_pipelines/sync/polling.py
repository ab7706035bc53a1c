"""When an integration's poll is next due: a poll interval after its last sync started. The poll
schedules (defs/schedules.py) and the console's integration page both ask here."""

from __future__ import annotations

from datetime import datetime, timedelta


def next_poll_at(last_started_at: datetime | None, poll_interval_s: int) -> datetime | None:
    """The time the next poll is due; None when it is due already (never synced)."""
    if last_started_at is None:
        return None
    return last_started_at + timedelta(seconds=poll_interval_s)


def poll_due(last_started_at: datetime | None, poll_interval_s: int, now: datetime) -> bool:
    due_at = next_poll_at(last_started_at, poll_interval_s)
    return due_at is None or now >= due_at
