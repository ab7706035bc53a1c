"""Reads of the provider calls in `integration_activity_log` (one row per HTTP request or MQTT
broker operation): counts, failures and latencies of one integration in a window or in several
consecutive windows, the provider-side failures and a run's call counts. Organization-scoped,
over the (organization, integration, created_at) and (organization, run) indexes.

Percentiles are computed by Postgres (`percentile_disc`) and in Python on SQLite.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.errors import RATE_LIMITED
from sync_pipelines.figures import percentile
from sync_pipelines.observability.activity import ERROR_STATUSES, PROVIDER_CALLS
from sync_pipelines.store.database import sql_list

#: the call row types and error statuses as SQL lists (our own constants, never input)
CALL_TYPES_SQL = sql_list(sorted(PROVIDER_CALLS))
ERRORS_SQL = sql_list(ERROR_STATUSES)
FAILED_SQL = f"CASE WHEN status IN ({ERRORS_SQL}) THEN 1 ELSE 0 END"
#: failed calls the provider refused as too many (our own constants, never input)
THROTTLED_SQL = (
    f"coalesce(sum(CASE WHEN status IN ({ERRORS_SQL}) AND error_type = '{RATE_LIMITED}' "
    "THEN 1 ELSE 0 END), 0)"
)

_CALL_FILTER = (
    "organization_id = :o AND integration_id = :i AND created_at >= :start AND created_at < :end "
    f"AND activity_type IN ({CALL_TYPES_SQL})"
)


def call_figures(
    conn: Connection, organization_id: str, integration_id: str, start: datetime, end: datetime
) -> tuple[int, int, float | None, int]:
    """(calls, failed, average latency ms, throttled) of the integration's calls in [start, end);
    throttled calls (the provider answered "slow down") are among the failed ones."""
    row = (
        conn.execute(
            sa.text(
                f"SELECT count(*) AS calls, "
                f"coalesce(sum(CASE WHEN status IN ({ERRORS_SQL}) THEN 1 ELSE 0 END), 0) AS failed, "
                f"{THROTTLED_SQL} AS throttled, "
                f"avg(response_time_ms) AS avg_ms FROM integration_activity_log WHERE {_CALL_FILTER}"
            ),
            _params(organization_id, integration_id, start, end),
        )
        .mappings()
        .one()
    )
    avg = row["avg_ms"]
    return (
        int(row["calls"]),
        int(row["failed"]),
        float(avg) if avg is not None else None,
        int(row["throttled"]),
    )


def call_p95_ms(
    conn: Connection, organization_id: str, integration_id: str, start: datetime, end: datetime
) -> float | None:
    """The p95 latency of the integration's timed calls in [start, end)."""
    params = _params(organization_id, integration_id, start, end)
    if conn.dialect.name == "postgresql":
        value = conn.execute(
            sa.text(
                "SELECT percentile_disc(0.95) WITHIN GROUP (ORDER BY response_time_ms) "
                f"FROM integration_activity_log WHERE {_CALL_FILTER} AND response_time_ms IS NOT NULL"
            ),
            params,
        ).scalar()
        return float(value) if value is not None else None
    values = conn.execute(
        sa.text(
            f"SELECT response_time_ms FROM integration_activity_log WHERE {_CALL_FILTER} "
            "AND response_time_ms IS NOT NULL"
        ),
        params,
    ).scalars()
    return percentile((float(v) for v in values), 95)


def windowed_call_figures(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    starts: Sequence[datetime],
    width: timedelta,
    end: datetime,
    *,
    with_latency: bool = False,
) -> dict[int, tuple[int, int, float | None, float | None, int]]:
    """Window number → (calls, failed, average ms, p95 ms, throttled) of the consecutive windows
    [start, start + width) of `starts`, the last one ending at `end`; windows without a call are
    absent.

    One grouped query instead of one per window: each row's window is picked by comparing
    created_at with the windows' bounds (a CASE over bound parameters), the same `>= start` /
    `< end` comparisons `call_figures` makes, so the figures are identical on both engines."""
    count = len(starts)
    params: dict[str, Any] = {
        **_params(organization_id, integration_id, starts[0], end),
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
    rows = conn.execute(
        sa.text(
            f"SELECT {bucket} AS w, count(*) AS calls, "
            f"sum(CASE WHEN status IN ({ERRORS_SQL}) THEN 1 ELSE 0 END) AS failed, "
            f"avg(response_time_ms) AS avg_ms, {THROTTLED_SQL} AS throttled "
            f"FROM integration_activity_log WHERE {_CALL_FILTER} GROUP BY 1"
        ),
        params,
    ).all()
    p95s = _p95_by_window(conn, params, bucket) if with_latency and rows else {}
    return {
        int(w): (
            int(calls),
            int(failed),
            float(avg) if avg is not None else None,
            p95s.get(int(w)),
            int(throttled),
        )
        for w, calls, failed, avg, throttled in rows
    }


def _p95_by_window(conn: Connection, params: dict[str, Any], bucket: str) -> dict[int, float]:
    where = f"{_CALL_FILTER} AND response_time_ms IS NOT NULL"
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


def provider_failed_call_count(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    start: datetime,
    end: datetime,
    *,
    error_types: Collection[str],
) -> int:
    """Failed calls in [start, end) whose cause was the provider or the way to it: HTTP 5xx, 429,
    or one of `error_types` (the taxonomy's transient ones, for failures without a status)."""
    return int(
        conn.execute(
            sa.text(
                "SELECT count(*) FROM integration_activity_log WHERE organization_id = :o "
                "AND integration_id = :i AND created_at >= :start AND created_at < :end "
                f"AND activity_type IN ({CALL_TYPES_SQL}) AND status IN ({ERRORS_SQL}) "
                f"AND (status_code >= 500 OR status_code = 429 OR error_type IN ({sql_list(error_types)}))"
            ),
            _params(organization_id, integration_id, start, end),
        ).scalar()
        or 0
    )


def run_call_counts(
    conn: Connection, organization_id: str, run_ids: Collection[str]
) -> dict[str, tuple[int, int]]:
    """Run id → (calls, failed calls) of the given runs."""
    statement = sa.text(
        "SELECT run_id, count(*) AS calls, "
        f"coalesce(sum(CASE WHEN status IN ({ERRORS_SQL}) THEN 1 ELSE 0 END), 0) AS failed "
        "FROM integration_activity_log WHERE organization_id = :o AND run_id IN :runs "
        f"AND activity_type IN ({CALL_TYPES_SQL}) GROUP BY run_id"
    ).bindparams(sa.bindparam("runs", expanding=True))
    rows = conn.execute(statement, {"o": organization_id, "runs": sorted(run_ids)}).all()
    return {run_id: (int(calls), int(failed)) for run_id, calls, failed in rows}


def _params(
    organization_id: str, integration_id: str, start: datetime, end: datetime
) -> dict[str, Any]:
    return {"o": organization_id, "i": integration_id, "start": start, "end": end}
