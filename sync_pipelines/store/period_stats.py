"""Reads over a report period, beyond the monitoring windows (store/provider_calls.py): sync
outcomes, the most frequent errors, provider calls in time buckets and call totals across
integrations — as plain figures; reports/period_stats.py makes records of them.

Organization-scoped reads over the activity and sync logs' (organization, integration, time)
indexes; `call_totals` takes the (organization → integrations) scopes it may read, so a system-
level report stays one scoped branch per organization. Percentiles are computed by Postgres
(`percentile_disc`) and in Python on SQLite.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.figures import percentile
from sync_pipelines.observability.activity import ERROR_STATUSES, PROVIDER_CALLS
from sync_pipelines.store.database import parse_timestamp
from sync_pipelines.store.provider_calls import CALL_TYPES_SQL as _CALL_TYPES
from sync_pipelines.store.provider_calls import ERRORS_SQL as _ERRORS
from sync_pipelines.store.provider_calls import FAILED_SQL as _FAILED_SQL

#: (calls, failed, average ms, p95 ms)
CallFigures = tuple[int, int, float | None, float | None]
#: (error type, message, count, last seen)
ErrorGroup = tuple[str, str | None, int, datetime | None]


def sync_status_counts(
    conn: Connection, organization_id: str, integration_id: str, start: datetime, end: datetime
) -> dict[str, int]:
    """Syncs (sync-log rows, every stream) started in [start, end), per status."""
    rows = conn.execute(
        sa.text(
            "SELECT status, count(*) AS n FROM integration_sync_log WHERE organization_id = :o "
            "AND integration_id = :i AND started_at >= :start AND started_at < :end GROUP BY status"
        ),
        {"o": organization_id, "i": integration_id, "start": start, "end": end},
    ).all()
    return {status: int(n) for status, n in rows}


def sync_status_counts_by_integration(
    conn: Connection,
    organization_id: str,
    integration_ids: Sequence[str],
    start: datetime,
    end: datetime,
) -> dict[str, dict[str, int]]:
    """`sync_status_counts` of each of the integrations, in one query (each asked about gets an
    entry)."""
    counts: dict[str, dict[str, int]] = {iid: {} for iid in integration_ids}
    if integration_ids:
        rows = conn.execute(
            sa.text(
                "SELECT integration_id, status, count(*) AS n FROM integration_sync_log "
                "WHERE organization_id = :o AND integration_id IN :ids AND started_at >= :start "
                "AND started_at < :end GROUP BY integration_id, status"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"o": organization_id, "ids": list(integration_ids), "start": start, "end": end},
        ).all()
        for iid, status, n in rows:
            counts[iid][status] = int(n)
    return counts


def error_groups(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    start: datetime,
    end: datetime,
    *,
    limit: int,
) -> list[ErrorGroup]:
    """The most frequent (error type, message) among the period's failed and retried activity
    rows — provider calls, operations and rejected webhook deliveries alike."""
    rows = conn.execute(
        sa.text(
            "SELECT error_type, error_message, count(*) AS n, max(created_at) AS last_seen "
            "FROM integration_activity_log WHERE organization_id = :o AND integration_id = :i "
            f"AND created_at >= :start AND created_at < :end AND status IN ({_ERRORS}) "
            "AND error_type IS NOT NULL GROUP BY error_type, error_message "
            "ORDER BY n DESC, last_seen DESC LIMIT :k"
        ),
        {"o": organization_id, "i": integration_id, "start": start, "end": end, "k": limit},
    ).all()
    return [(t, m, int(n), parse_timestamp(last)) for t, m, n, last in rows]


def error_groups_by_integration(
    conn: Connection,
    organization_id: str,
    integration_ids: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    limit: int,
) -> dict[str, list[ErrorGroup]]:
    """`error_groups` of each of the integrations, in one query (a window function ranks each
    integration's error groups; ties beyond count and last seen go by type, message)."""
    found: dict[str, list[ErrorGroup]] = {iid: [] for iid in integration_ids}
    if not integration_ids:
        return found
    rows = conn.execute(
        sa.text(
            "SELECT integration_id, error_type, error_message, n, last_seen FROM ("
            "SELECT integration_id, error_type, error_message, count(*) AS n, "
            "max(created_at) AS last_seen, row_number() OVER (PARTITION BY integration_id "
            "ORDER BY count(*) DESC, max(created_at) DESC, error_type, error_message) AS r "
            "FROM integration_activity_log WHERE organization_id = :o AND integration_id IN :ids "
            f"AND created_at >= :start AND created_at < :end AND status IN ({_ERRORS}) "
            "AND error_type IS NOT NULL GROUP BY integration_id, error_type, error_message"
            ") AS ranked WHERE r <= :k ORDER BY integration_id, r"
        ).bindparams(sa.bindparam("ids", expanding=True)),
        {
            "o": organization_id,
            "ids": list(integration_ids),
            "start": start,
            "end": end,
            "k": limit,
        },
    ).all()
    for iid, error_type, message, n, last in rows:
        found[iid].append((error_type, message, int(n), parse_timestamp(last)))
    return found


def bucketed_call_figures(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    start: datetime,
    end: datetime,
    *,
    width_s: float,
) -> dict[int, tuple[int, int, float | None]]:
    """Bucket number → (calls, failed, p95 ms) of the integration's calls in [start, end), bucket
    b being [start + b·width, start + (b + 1)·width); buckets without a call are absent."""
    params = {"o": organization_id, "i": integration_id, "start": start, "end": end, "w": width_s}
    where = (
        "organization_id = :o AND integration_id = :i AND created_at >= :start "
        f"AND created_at < :end AND activity_type IN ({_CALL_TYPES})"
    )
    figures: dict[int, tuple[int, int, float | None]] = {}
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            sa.text(
                "SELECT floor(extract(epoch FROM (created_at - :start)) / :w)::int AS b, "
                f"count(*) AS calls, sum({_FAILED_SQL}) AS failed, "
                "percentile_disc(0.95) WITHIN GROUP (ORDER BY response_time_ms) AS p95 "
                f"FROM integration_activity_log WHERE {where} GROUP BY b"
            ),
            params,
        ).all()
        for b, calls, failed, p95 in rows:
            figures[int(b)] = (int(calls), int(failed), float(p95) if p95 is not None else None)
        return figures
    grouped: dict[int, list[tuple[bool, float | None]]] = defaultdict(list)
    rows = conn.execute(
        sa.text(
            f"SELECT created_at, status, response_time_ms FROM integration_activity_log WHERE {where}"
        ),
        params,
    ).all()
    for created_at, status, ms in rows:
        b = int((parse_timestamp(created_at) - start).total_seconds() // width_s)
        grouped[b].append((status in ERROR_STATUSES, ms))
    for b, calls in grouped.items():
        figures[b] = (
            len(calls),
            sum(failed for failed, _ in calls),
            percentile((ms for _, ms in calls if ms is not None), 95),
        )
    return figures


def call_totals(
    conn: Connection, scopes: Mapping[str, Sequence[str]], start: datetime, end: datetime
) -> CallFigures:
    """The figures of all the calls in [start, end) of the scopes' integrations (organization id →
    integration ids): a UNION ALL of one scoped branch per organization, so the p95 is exact
    (on Postgres the named function of sql/026, which reads across tenants)."""
    if conn.dialect.name == "postgresql":
        pairs = [(o, i) for o, ids in sorted(scopes.items()) for i in ids]
        if not pairs:
            return 0, 0, None, None
        calls, failed, avg, p95 = conn.execute(
            sa.text(
                "SELECT * FROM sync_call_totals(CAST(:o AS text[]), CAST(:i AS text[]), "
                "CAST(:types AS text[]), CAST(:errors AS text[]), :start, :end)"
            ),
            {
                "o": [o for o, _ in pairs],
                "i": [i for _, i in pairs],
                "types": sorted(PROVIDER_CALLS),
                "errors": list(ERROR_STATUSES),
                "start": start,
                "end": end,
            },
        ).one()
        return (
            int(calls),
            int(failed),
            float(avg) if avg is not None else None,
            float(p95) if p95 is not None else None,
        )
    branches: list[str] = []
    lists: list[str] = []  # the bind parameters holding integration id lists
    params: dict[str, Any] = {"start": start, "end": end}
    for n, (organization_id, integration_ids) in enumerate(sorted(scopes.items())):
        if not integration_ids:
            continue
        branches.append(
            "SELECT status, response_time_ms FROM integration_activity_log "
            f"WHERE organization_id = :o{n} AND integration_id IN :i{n} AND created_at >= :start "
            f"AND created_at < :end AND activity_type IN ({_CALL_TYPES})"
        )
        params[f"o{n}"] = organization_id
        params[f"i{n}"] = list(integration_ids)
        lists.append(f"i{n}")
    if not branches:
        return 0, 0, None, None
    union = " UNION ALL ".join(branches)
    expanding = [sa.bindparam(k, expanding=True) for k in lists]
    rows: list[Any] = conn.execute(sa.text(union).bindparams(*expanding), params).all()
    latencies = [float(ms) for _, ms in rows if ms is not None]
    return (
        len(rows),
        sum(1 for status, _ in rows if status in ERROR_STATUSES),
        sum(latencies) / len(latencies) if latencies else None,
        percentile(latencies, 95),
    )


def period_call_figures(
    conn: Connection,
    organization_id: str,
    integration_ids: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    width_s: float,
) -> dict[str | None, dict[int | None, CallFigures]]:
    """integration (None: all of them) → bucket (None: the whole period) → figures, from one scan
    of the period's calls (on Postgres the buckets, each integration's period and the
    organization's are three grouping sets of one query). Absent: no call."""
    params = {"o": organization_id, "ids": list(integration_ids), "start": start, "end": end}
    where = (
        "organization_id = :o AND integration_id IN :ids AND created_at >= :start "
        f"AND created_at < :end AND activity_type IN ({_CALL_TYPES})"
    )
    ids = sa.bindparam("ids", expanding=True)
    figures: dict[str | None, dict[int | None, CallFigures]] = defaultdict(dict)
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            sa.text(
                # neither is ever NULL for a call: NULL is the whole period / organization
                f"SELECT integration_id, b, count(*), sum({_FAILED_SQL}), avg(response_time_ms), "
                "percentile_disc(0.95) WITHIN GROUP (ORDER BY response_time_ms) FROM ("
                "SELECT integration_id, status, response_time_ms, "
                "floor(extract(epoch FROM (created_at - :start)) / :w)::int AS b "
                f"FROM integration_activity_log WHERE {where}) AS calls "
                "GROUP BY GROUPING SETS ((integration_id, b), (integration_id), ())"
            ).bindparams(ids),
            {**params, "w": width_s},
        ).all()
        for iid, b, calls, failed, avg, p95 in rows:
            figures[iid][None if b is None else int(b)] = (
                int(calls),
                int(failed or 0),  # the () set of no rows at all: count 0, sum NULL
                float(avg) if avg is not None else None,
                float(p95) if p95 is not None else None,
            )
        return figures
    grouped: dict[str, dict[int, list[tuple[bool, float | None]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for iid, created_at, status, ms in conn.execute(
        sa.text(
            "SELECT integration_id, created_at, status, response_time_ms "
            f"FROM integration_activity_log WHERE {where}"
        ).bindparams(ids),
        params,
    ):
        b = int((parse_timestamp(created_at) - start).total_seconds() // width_s)
        grouped[iid][b].append((status in ERROR_STATUSES, ms))

    def add(iid: str | None, b: int | None, calls: list[tuple[bool, float | None]]) -> None:
        latencies = [float(ms) for _, ms in calls if ms is not None]
        figures[iid][b] = (
            len(calls),
            sum(failed for failed, _ in calls),
            sum(latencies) / len(latencies) if latencies else None,
            percentile(latencies, 95),
        )

    for iid, buckets in grouped.items():
        for b, calls in buckets.items():
            add(iid, b, calls)
        add(iid, None, [call for calls in buckets.values() for call in calls])
    add(None, None, [c for buckets in grouped.values() for cs in buckets.values() for c in cs])
    return figures
