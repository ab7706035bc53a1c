"""The figures every monitor reads about one integration: provider-call windows (error rate,
latency), the sync history (last success, failure streak, volumes), dead-letter depth and the
webhook inbox backlog. Organization-scoped reads over the store's indexes; no decisions here
(those are in `health.py`, the checks and the alert rules)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.figures import percentile
from sync_pipelines.observability.activity import PROVIDER_CALLS
from sync_pipelines.store.database import parse_timestamp

#: activity statuses that count as a failed provider call: the final failure and every attempt
#: that failed and was retried (an API answering 503 twice then 200 failed twice)
ERROR_STATUSES = ("failed", "retrying")
#: sync log statuses of a sync that stored its data (`partial`: some records dead-lettered)
GOOD_SYNC_STATUSES = ("success", "partial")

_CALL_TYPES = tuple(sorted(PROVIDER_CALLS))


@dataclass(frozen=True, slots=True)
class CallWindow:
    """Provider calls (HTTP requests, MQTT broker operations) of one integration in [start, end)."""

    start: datetime
    end: datetime
    calls: int
    failed: int
    avg_latency_ms: float | None = None
    p95_latency_ms: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.failed / self.calls if self.calls else None


def _call_filter() -> str:
    types = ", ".join(f"'{t}'" for t in _CALL_TYPES)
    return (
        "organization_id = :o AND integration_id = :i AND created_at >= :start AND created_at < :end "
        f"AND activity_type IN ({types})"
    )


def call_window(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    start: datetime,
    end: datetime,
    *,
    with_latency: bool = True,
) -> CallWindow:
    params = {"o": organization_id, "i": integration_id, "start": start, "end": end}
    errors = ", ".join(f"'{s}'" for s in ERROR_STATUSES)
    row = (
        conn.execute(
            sa.text(
                f"SELECT count(*) AS calls, "
                f"coalesce(sum(CASE WHEN status IN ({errors}) THEN 1 ELSE 0 END), 0) AS failed, "
                f"avg(response_time_ms) AS avg_ms FROM integration_activity_log WHERE {_call_filter()}"
            ),
            params,
        )
        .mappings()
        .one()
    )
    p95 = None
    if with_latency and row["calls"]:
        p95 = _p95_latency_ms(conn, params)
    return CallWindow(
        start=start,
        end=end,
        calls=int(row["calls"]),
        failed=int(row["failed"]),
        avg_latency_ms=float(row["avg_ms"]) if row["avg_ms"] is not None else None,
        p95_latency_ms=p95,
    )


def _p95_latency_ms(conn: Connection, params: dict[str, Any]) -> float | None:
    if conn.dialect.name == "postgresql":
        value = conn.execute(
            sa.text(
                "SELECT percentile_disc(0.95) WITHIN GROUP (ORDER BY response_time_ms) "
                f"FROM integration_activity_log WHERE {_call_filter()} AND response_time_ms IS NOT NULL"
            ),
            params,
        ).scalar()
        return float(value) if value is not None else None
    values = conn.execute(
        sa.text(
            f"SELECT response_time_ms FROM integration_activity_log WHERE {_call_filter()} "
            "AND response_time_ms IS NOT NULL"
        ),
        params,
    ).scalars()
    return percentile((float(v) for v in values), 95)


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
    """`count` consecutive windows ending at `end`, oldest first: the last one is "now".

    One grouped query instead of one per window: each row's window is picked by comparing
    created_at with the windows' bounds (a CASE over bound parameters), the same `>= start` /
    `< end` comparisons `call_window` makes, so the figures are identical on both engines."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    width = timedelta(seconds=window_s)
    starts = [end - width * (count - k) for k in range(count)]
    params: dict[str, Any] = {
        "o": organization_id,
        "i": integration_id,
        "start": starts[0],
        "end": end,
        **{f"b{k}": s + width for k, s in enumerate(starts[:-1])},
    }
    # rows are >= start and < end already: the window is the first upper bound it is below
    bucket = (
        "CASE "
        + " ".join(f"WHEN created_at < :b{k} THEN {k}" for k in range(count - 1))
        + f" ELSE {count - 1} END"
        if count > 1
        else "0"
    )
    errors = ", ".join(f"'{s}'" for s in ERROR_STATUSES)
    rows = conn.execute(
        sa.text(
            f"SELECT {bucket} AS w, count(*) AS calls, "
            f"sum(CASE WHEN status IN ({errors}) THEN 1 ELSE 0 END) AS failed, "
            f"avg(response_time_ms) AS avg_ms FROM integration_activity_log WHERE {_call_filter()} "
            "GROUP BY 1"
        ),
        params,
    ).all()
    figures = {int(w): (int(calls), int(failed), avg) for w, calls, failed, avg in rows}
    p95s = _p95_by_window(conn, params, bucket) if with_latency and figures else {}
    windows = []
    for k, start in enumerate(starts):
        calls, failed, avg = figures.get(k, (0, 0, None))
        windows.append(
            CallWindow(
                start=start,
                end=start + width,
                calls=calls,
                failed=failed,
                avg_latency_ms=float(avg) if avg is not None else None,
                p95_latency_ms=p95s.get(k),
            )
        )
    return windows


def _p95_by_window(conn: Connection, params: dict[str, Any], bucket: str) -> dict[int, float]:
    where = f"{_call_filter()} AND response_time_ms IS NOT NULL"
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            sa.text(
                f"SELECT {bucket} AS w, percentile_disc(0.95) WITHIN GROUP "
                f"(ORDER BY response_time_ms) FROM integration_activity_log WHERE {where} GROUP BY 1"
            ),
            params,
        ).all()
        return {int(w): float(v) for w, v in rows if v is not None}
    grouped: dict[int, list[float]] = {}
    for w, ms in conn.execute(
        sa.text(
            f"SELECT {bucket} AS w, response_time_ms FROM integration_activity_log WHERE {where}"
        ),
        params,
    ):
        grouped.setdefault(int(w), []).append(float(ms))
    return {w: p for w, values in grouped.items() if (p := percentile(values, 95)) is not None}


@dataclass(frozen=True, slots=True)
class SyncHistory:
    """What the sync log says about an integration's recent syncs (all streams)."""

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


def sync_history(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    *,
    now: datetime,
    stale_running_s: float = 3600.0,
    limit: int = 50,
) -> SyncHistory:
    rows = (
        conn.execute(
            sa.text(
                "SELECT stream, status, started_at, completed_at, fetched, error_type, error_message "
                "FROM integration_sync_log WHERE organization_id = :o AND integration_id = :i "
                "ORDER BY started_at DESC LIMIT :n"
            ),
            {"o": organization_id, "i": integration_id, "n": limit},
        )
        .mappings()
        .all()
    )
    stale_before = now - timedelta(seconds=stale_running_s)

    def outcome(row: Any) -> str:
        if row["status"] == "running":
            return "failed" if parse_timestamp(row["started_at"]) < stale_before else "running"
        return row["status"]

    streak = 0
    for row in rows:
        status = outcome(row)
        if status == "running":
            continue
        if status != "failed":
            break
        streak += 1

    last_success = conn.execute(
        sa.text(
            "SELECT max(completed_at) FROM integration_sync_log WHERE organization_id = :o "
            "AND integration_id = :i AND status IN ('success', 'partial')"
        ),
        {"o": organization_id, "i": integration_id},
    ).scalar()
    last_error = next((r for r in rows if outcome(r) == "failed"), None)
    # good inventories, newest first: the expected-volume check compares the newest with the one before
    good_inventory = [
        r for r in rows if r["stream"] == "devices" and r["status"] in GOOD_SYNC_STATUSES
    ]
    return SyncHistory(
        syncs=len(rows),
        last_attempt_at=parse_timestamp(rows[0]["started_at"]) if rows else None,
        last_success_at=parse_timestamp(last_success),
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
    )


def dead_letter_depth(
    conn: Connection, organization_id: str, integration_id: str | None = None
) -> int:
    """Open dead letters (pending + retrying); quarantined ones are counted apart."""
    sql = (
        "SELECT count(*) FROM dead_letters WHERE organization_id = :o "
        "AND status IN ('pending', 'retrying')"
    )
    params: dict[str, Any] = {"o": organization_id}
    if integration_id:
        sql += " AND integration_id = :i"
        params["i"] = integration_id
    return int(conn.execute(sa.text(sql), params).scalar() or 0)


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
    sql = (
        "SELECT count(*) AS n, min(received_at) AS oldest FROM webhook_events "
        "WHERE organization_id = :o AND status IN ('pending', 'processing')"
    )
    params: dict[str, Any] = {"o": organization_id}
    if integration_id:
        sql += " AND integration_id = :i"
        params["i"] = integration_id
    row = conn.execute(sa.text(sql), params).mappings().one()
    oldest = parse_timestamp(row["oldest"])
    return InboxBacklog(
        pending=int(row["n"]),
        oldest_pending_age_s=(now - oldest).total_seconds() if oldest else None,
    )
