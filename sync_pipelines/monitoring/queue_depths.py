"""Webhook inbox backlog and dead-letter depth per provider: two grouped counts over the status
indexes, cheap enough for every metrics scrape and health check.

Without an organization this is a system-level scan across tenants (the service's own queues,
for `/metrics` and the system-wide health check); with one, it is scoped to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.store.database import parse_timestamp

INBOX_WAITING = ("pending", "processing")
#: open letters (pending, retrying) wait for a replay; quarantined ones for an operator
DEAD_LETTER_STATUSES = ("pending", "retrying", "quarantined")
OPEN_DEAD_LETTERS = ("pending", "retrying")


@dataclass(slots=True)
class ProviderQueueDepth:
    provider: str
    inbox_pending: int = 0
    inbox_oldest_age_s: float | None = None
    dead_letters: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(DEAD_LETTER_STATUSES, 0)
    )

    @property
    def open_dead_letters(self) -> int:
        return sum(self.dead_letters[s] for s in OPEN_DEAD_LETTERS)


def queue_depths(
    conn: Connection, *, now: datetime, organization_id: str | None = None
) -> list[ProviderQueueDepth]:
    """One row per provider that has anything waiting, sorted by provider."""
    scope, params = "", {}
    if organization_id is not None:
        scope, params = " AND organization_id = :o", {"o": organization_id}
    depths: dict[str, ProviderQueueDepth] = {}

    def depth(provider: str) -> ProviderQueueDepth:
        return depths.setdefault(provider, ProviderQueueDepth(provider))

    for row in conn.execute(
        sa.text(
            "SELECT provider, count(*) AS n, min(received_at) AS oldest FROM webhook_events "
            f"WHERE status IN {_in(INBOX_WAITING)}{scope} GROUP BY provider"
        ),
        params,
    ).mappings():
        d = depth(row["provider"])
        d.inbox_pending = int(row["n"])
        oldest = parse_timestamp(row["oldest"])
        d.inbox_oldest_age_s = max(0.0, (now - oldest).total_seconds()) if oldest else None
    for row in conn.execute(
        sa.text(
            "SELECT provider, status, count(*) AS n FROM dead_letters "
            f"WHERE status IN {_in(DEAD_LETTER_STATUSES)}{scope} GROUP BY provider, status"
        ),
        params,
    ).mappings():
        depth(row["provider"]).dead_letters[row["status"]] = int(row["n"])
    return [depths[p] for p in sorted(depths)]


def _in(values: tuple[str, ...]) -> str:
    # our own constants, never input
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def totals(depths: list[ProviderQueueDepth]) -> dict[str, Any]:
    """The providers' figures added up (the oldest age is the oldest of all)."""
    ages = [d.inbox_oldest_age_s for d in depths if d.inbox_oldest_age_s is not None]
    return {
        "inbox_pending": sum(d.inbox_pending for d in depths),
        "inbox_oldest_age_s": max(ages) if ages else None,
        "dead_letters": {s: sum(d.dead_letters[s] for d in depths) for s in DEAD_LETTER_STATUSES},
    }
