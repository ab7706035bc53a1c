"""The figures every monitor reads about one integration: provider-call windows (error rate,
latency), the sync history (last success, failure streak, volumes), dead-letter depth and the
webhook inbox backlog. Organization-scoped reads over the store's indexes; no decisions here
(those are in `health.py`, the checks and the alert rules)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.store.database import parse_timestamp
from sync_pipelines.store.dead_letters import open_dead_letter_count
from sync_pipelines.store.provider_calls import call_figures, call_p95_ms, windowed_call_figures
from sync_pipelines.store.sync_state import (
    GOOD_SYNC_STATUSES,
    PARTIAL,
    RUNNING,
    SIDE_STREAMS,
    is_failed_sync,
    last_good_sync_at,
    recent_sync_log,
)
from sync_pipelines.store.webhook_events import waiting_events


@dataclass(frozen=True, slots=True)
class CallWindow:
    """Provider calls (HTTP requests, MQTT broker operations) of one integration in [start, end)."""

    start: datetime
    end: datetime
    calls: int
    failed: int
    avg_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    #: failed calls the provider refused as too many (429 / throttling); counted in `failed`
    throttled: int = 0

    @property
    def failure_rate(self) -> float | None:
        """Failed calls (final failures and retried attempts) / calls: the call failure rate."""
        return self.failed / self.calls if self.calls else None


def call_window(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    start: datetime,
    end: datetime,
    *,
    with_latency: bool = True,
) -> CallWindow:
    calls, failed, avg, throttled = call_figures(conn, organization_id, integration_id, start, end)
    p95 = None
    if with_latency and calls:
        p95 = call_p95_ms(conn, organization_id, integration_id, start, end)
    return CallWindow(start, end, calls, failed, avg, p95, throttled)


def call_windows(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    *,
    end: datetime,
    window_s: int,
    count: int,
    with_latency: bool = False,
) -> list[CallWindow]:
    """`count` consecutive windows ending at `end`, oldest first: the last one is "now" (one
    grouped query, the same figures as `call_window` of each)."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    width = timedelta(seconds=window_s)
    starts = [end - width * (count - k) for k in range(count)]
    figures = windowed_call_figures(
        conn, organization_id, integration_id, starts, width, end, with_latency=with_latency
    )
    return [
        CallWindow(start, start + width, *figures.get(k, (0, 0, None, None, 0)))
        for k, start in enumerate(starts)
    ]


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    """How one stream's newest finished sync ended: what a partial one failed to store, or why
    a failed one failed."""

    stream: str
    status: str
    fetched: int
    failed: int
    gaps: int
    error_type: str | None
    error_message: str | None


@dataclass(frozen=True, slots=True)
class SyncHistory:
    """What the sync log says about an integration's recent syncs. The streak, the last status
    and the last error are of the streams that bring data in; the dead-letter replay and the
    exports (SIDE_STREAMS) are judged apart, in `side_outcomes`."""

    syncs: int
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_status: str | None
    last_error_type: str | None
    last_error_message: str | None
    #: syncs that failed in a row, newest first (a `running` row older than the stale limit
    #: counts as failed: the process died before it could say so)
    failure_streak: int
    #: syncs still `running` past the stale limit
    stale_running: int
    #: devices fetched by the newest good inventory sync, and by the good one before it
    last_inventory_fetched: int | None
    previous_inventory_fetched: int | None
    #: data streams whose newest finished sync was `partial`
    partial_outcomes: tuple[StreamOutcome, ...] = ()
    #: the newest finished replay and export, when there is one
    side_outcomes: tuple[StreamOutcome, ...] = ()


def sync_history(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    *,
    now: datetime,
    stale_running_s: float = 3600.0,
    limit: int = 50,
) -> SyncHistory:
    every = recent_sync_log(conn, organization_id, integration_id, limit=limit)
    rows = [r for r in every if r["stream"] not in SIDE_STREAMS]
    stale_before = now - timedelta(seconds=stale_running_s)

    def outcome(row: Any) -> str:
        """`failed` for every way a sync fails (failed, abandoned, fenced, stale `running`)."""
        if row["status"] == RUNNING:
            return "failed" if parse_timestamp(row["started_at"]) < stale_before else RUNNING
        return "failed" if is_failed_sync(row["status"]) else row["status"]

    streak = 0
    for row in rows:
        status = outcome(row)
        if status == "running":
            continue
        if status != "failed":
            break
        streak += 1

    last_success = last_good_sync_at(conn, organization_id, integration_id)
    last_error = next((r for r in rows if outcome(r) == "failed"), None)
    # good inventories, newest first: the expected-volume check compares the newest with the one before
    good_inventory = [
        r for r in rows if r["stream"] == "devices" and r["status"] in GOOD_SYNC_STATUSES
    ]
    newest: dict[str, Any] = {}
    for row in every:  # newest first: the first finished row of each stream is its newest
        if row["status"] != RUNNING:
            newest.setdefault(row["stream"], row)
    return SyncHistory(
        syncs=len(rows),
        last_attempt_at=parse_timestamp(rows[0]["started_at"]) if rows else None,
        last_success_at=last_success,
        last_status=outcome(rows[0]) if rows else None,
        last_error_type=(last_error["error_type"] or "stale_running") if last_error else None,
        last_error_message=(
            (
                last_error["error_message"]
                or "sync never finished (process died or store unreachable)"
            )
            if last_error
            else None
        ),
        failure_streak=streak,
        stale_running=sum(1 for r in rows if r["status"] == "running" and outcome(r) == "failed"),
        last_inventory_fetched=int(good_inventory[0]["fetched"]) if good_inventory else None,
        previous_inventory_fetched=(
            int(good_inventory[1]["fetched"]) if len(good_inventory) > 1 else None
        ),
        partial_outcomes=tuple(
            _stream_outcome(row)
            for stream, row in sorted(newest.items())
            if stream not in SIDE_STREAMS and row["status"] == PARTIAL
        ),
        side_outcomes=tuple(
            _stream_outcome(newest[stream]) for stream in SIDE_STREAMS if stream in newest
        ),
    )


def _stream_outcome(row: Any) -> StreamOutcome:
    return StreamOutcome(
        stream=row["stream"],
        status=row["status"],
        fetched=int(row["fetched"] or 0),
        failed=int(row["failed"] or 0),
        gaps=int(row["gaps"] or 0),
        error_type=row["error_type"],
        error_message=row["error_message"],
    )


def dead_letter_depth(
    conn: Connection, organization_id: str, integration_id: str | None = None
) -> int:
    """Open dead letters (pending + retrying); quarantined ones are counted apart."""
    return open_dead_letter_count(conn, organization_id, integration_id)


@dataclass(frozen=True, slots=True)
class InboxBacklog:
    pending: int
    #: age of the oldest event not yet processed: the processing delay right now
    oldest_pending_age_s: float | None


def inbox_backlog(
    conn: Connection,
    organization_id: str,
    integration_id: str | None = None,
    *,
    now: datetime,
) -> InboxBacklog:
    pending, oldest = waiting_events(conn, organization_id, integration_id)
    return InboxBacklog(
        pending=pending,
        oldest_pending_age_s=(now - oldest).total_seconds() if oldest else None,
    )
