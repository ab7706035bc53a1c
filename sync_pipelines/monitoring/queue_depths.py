"""Webhook inbox backlog and dead-letter depth per provider: two grouped counts over the status
indexes, cheap enough for every metrics scrape and health check.

Without an organization this is a system-level scan across tenants (the service's own queues,
for `/metrics` and the system-wide health check); with one, it is scoped to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.store.dead_letters import letters_by_provider
from sync_pipelines.store.webhook_events import waiting_by_provider

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
    depths: dict[str, ProviderQueueDepth] = {}

    def depth(provider: str) -> ProviderQueueDepth:
        return depths.setdefault(provider, ProviderQueueDepth(provider))

    for provider, waiting, oldest in waiting_by_provider(conn, INBOX_WAITING, organization_id):
        d = depth(provider)
        d.inbox_pending = waiting
        d.inbox_oldest_age_s = max(0.0, (now - oldest).total_seconds()) if oldest else None
    for provider, status, letters in letters_by_provider(
        conn, DEAD_LETTER_STATUSES, organization_id
    ):
        depth(provider).dead_letters[status] = letters
    return [depths[p] for p in sorted(depths)]


def totals(depths: list[ProviderQueueDepth]) -> dict[str, Any]:
    """The providers' figures added up (the oldest age is the oldest of all)."""
    ages = [d.inbox_oldest_age_s for d in depths if d.inbox_oldest_age_s is not None]
    return {
        "inbox_pending": sum(d.inbox_pending for d in depths),
        "inbox_oldest_age_s": max(ages) if ages else None,
        "dead_letters": {s: sum(d.dead_letters[s] for d in depths) for s in DEAD_LETTER_STATUSES},
    }
