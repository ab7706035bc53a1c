"""The figures a report reads over a period, beyond the monitoring windows: sync outcomes, the most
frequent errors, provider calls in time buckets (the chart) and call totals across integrations.

Organization-scoped reads over the activity and sync logs' (organization, integration, time)
indexes; `call_totals` takes the (organization → integrations) scopes it may read, so a system-
level report stays one scoped branch per organization. Percentiles are computed by Postgres
(`percentile_disc`) and in Python on SQLite, like `monitoring.integration_stats`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.figures import percentile
from sync_pipelines.histograms import histogram_percentiles
from sync_pipelines.monitoring.integration_stats import (
    ERROR_STATUSES,
    GOOD_SYNC_STATUSES,
    CallWindow,
)
from sync_pipelines.observability.activity import PROVIDER_CALLS
from sync_pipelines.store.call_hours import (
    HOUR,
    RECOMPUTE,
    CallHours,
    call_hours,
    ceil_hour,
    newest_rolled_up_hour,
    rolled_up_hours,
    rolled_up_until,
)
from sync_pipelines.store.database import parse_timestamp

_CALL_TYPES = ", ".join(f"'{t}'" for t in sorted(PROVIDER_CALLS))
_ERRORS = ", ".join(f"'{s}'" for s in ERROR_STATUSES)
_FAILED_SQL = f"CASE WHEN status IN ({_ERRORS}) THEN 1 ELSE 0 END"
#: periods this long are read from the rolled-up hours (a weekly report reads ~4k hour rows per
#: organization instead of ~150k calls at 10M activity rows); shorter ones from the calls, exactly
ROLLED_UP_PERIOD = timedelta(hours=48)


@dataclass(frozen=True, slots=True)
class SyncOutcomes:
    """Syncs (sync-log rows, every stream) started in the period, by outcome."""

    syncs: int
    #: stored their data: `success`, or `partial` (some records dead-lettered)
    succeeded: int
    failed: int
    #: still running (or died without saying so)
    running: int

    @property
    def success_rate(self) -> float | None:
        """Succeeded / finished; None when nothing finished."""
        finished = self.succeeded + self.failed
        return self.succeeded / finished if finished else None


def sync_outcomes(
    conn: Connection, organization_id: str, integration_id: str, start: datetime, end: datetime
) -> SyncOutcomes:
    rows = conn.execute(
        sa.text(
            "SELECT status, count(*) AS n FROM integration_sync_log WHERE organization_id = :o "
            "AND integration_id = :i AND started_at >= :start AND started_at < :end GROUP BY status"
        ),
        {"o": organization_id, "i": integration_id, "start": start, "end": end},
    ).all()
    counts = {status: int(n) for status, n in rows}
    return SyncOutcomes(
        syncs=sum(counts.values()),
        succeeded=sum(counts.get(s, 0) for s in GOOD_SYNC_STATUSES),
        failed=counts.get("failed", 0),
        running=counts.get("running", 0),
    )


@dataclass(frozen=True, slots=True)
class ErrorCount:
    error_type: str
    message: str | None
    count: int
    last_seen_at: datetime | None


def top_errors(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    start: datetime,
    end: datetime,
    *,
    limit: int = 3,
) -> list[ErrorCount]:
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
    return [ErrorCount(t, m, int(n), parse_timestamp(last)) for t, m, n, last in rows]


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """Provider calls in one time bucket [start, start + bucket)."""

    start: datetime
    calls: int
    failed: int
    p95_latency_ms: float | None

    @property
    def error_rate(self) -> float | None:
        return self.failed / self.calls if self.calls else None


def call_series(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    start: datetime,
    end: datetime,
    *,
    bucket: timedelta,
) -> list[SeriesPoint]:
    """Every bucket from `start` to `end` (empty ones with 0 calls), oldest first."""
    width = bucket.total_seconds()
    if width <= 0:
        raise ValueError(f"bucket must be positive, got {bucket}")
    count = max(1, int(-(-(end - start).total_seconds() // width)))
    params = {"o": organization_id, "i": integration_id, "start": start, "end": end, "w": width}
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
    else:
        grouped: dict[int, list[tuple[bool, float | None]]] = defaultdict(list)
        rows = conn.execute(
            sa.text(
                f"SELECT created_at, status, response_time_ms FROM integration_activity_log WHERE {where}"
            ),
            params,
        ).all()
        for created_at, status, ms in rows:
            b = int((parse_timestamp(created_at) - start).total_seconds() // width)
            grouped[b].append((status in ERROR_STATUSES, ms))
        for b, calls in grouped.items():
            figures[b] = (
                len(calls),
                sum(failed for failed, _ in calls),
                percentile((ms for _, ms in calls if ms is not None), 95),
            )
    points = []
    for b in range(count):
        calls, failed, p95 = figures.get(b, (0, 0, None))
        points.append(SeriesPoint(start + bucket * b, calls, failed, p95))
    return points


def call_totals(
    conn: Connection,
    scopes: Mapping[str, Sequence[str]],
    start: datetime,
    end: datetime,
) -> CallWindow:
    """Provider calls of the given integrations, grouped by organization (organization id →
    integration ids), in [start, end): one scoped branch per organization, so the p95 is exact
    across all of them."""
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
        return CallWindow(start=start, end=end, calls=0, failed=0)
    union = " UNION ALL ".join(branches)
    expanding = [sa.bindparam(k, expanding=True) for k in lists]
    if conn.dialect.name == "postgresql":
        row = conn.execute(
            sa.text(
                f"SELECT count(*), coalesce(sum({_FAILED_SQL}), 0), avg(response_time_ms), "
                "percentile_disc(0.95) WITHIN GROUP (ORDER BY response_time_ms) "
                f"FROM ({union}) AS calls"
            ).bindparams(*expanding),
            params,
        ).one()
        calls, failed, avg, p95 = row
        return CallWindow(
            start=start,
            end=end,
            calls=int(calls),
            failed=int(failed),
            avg_latency_ms=float(avg) if avg is not None else None,
            p95_latency_ms=float(p95) if p95 is not None else None,
        )
    rows: list[Any] = conn.execute(sa.text(union).bindparams(*expanding), params).all()
    latencies = [float(ms) for _, ms in rows if ms is not None]
    return CallWindow(
        start=start,
        end=end,
        calls=len(rows),
        failed=sum(1 for status, _ in rows if status in ERROR_STATUSES),
        avg_latency_ms=sum(latencies) / len(latencies) if latencies else None,
        p95_latency_ms=percentile(latencies, 95),
    )


@dataclass(frozen=True, slots=True)
class PeriodCalls:
    """One integration's provider calls over a report period: the whole period and its buckets."""

    calls: CallWindow
    series: tuple[SeriesPoint, ...]


@dataclass(frozen=True, slots=True)
class OrganizationCalls:
    """`period_calls`: each integration's calls, and all of them together (`call_totals`)."""

    by_integration: dict[str, PeriodCalls]
    total: CallWindow
    #: the total's latency histogram, when read from the rolled-up hours (so organizations'
    #: totals can be summed with a p95 of them all)
    total_histogram: np.ndarray | None = None


def period_calls(
    conn: Connection,
    organization_id: str,
    integration_ids: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    bucket: timedelta,
) -> OrganizationCalls:
    """`call_window` (with latency) and `call_series` of each of the organization's integrations,
    and `call_totals` of them all, at once: one scan of the period's calls instead of three per
    integration and one more for the total (on Postgres the buckets, each integration's period
    and the organization's are three grouping sets of one query). Every integration asked about
    gets an entry, with zeros when it made no call."""
    width = bucket.total_seconds()
    if width <= 0:
        raise ValueError(f"bucket must be positive, got {bucket}")
    if not integration_ids:
        return OrganizationCalls({}, CallWindow(start=start, end=end, calls=0, failed=0))
    count = max(1, int(-(-(end - start).total_seconds() // width)))
    if end - start >= ROLLED_UP_PERIOD and bucket >= HOUR:
        return _rolled_up_period_calls(
            conn, organization_id, integration_ids, start, end, bucket=bucket, count=count
        )
    params = {"o": organization_id, "ids": list(integration_ids), "start": start, "end": end}
    where = (
        "organization_id = :o AND integration_id IN :ids AND created_at >= :start "
        f"AND created_at < :end AND activity_type IN ({_CALL_TYPES})"
    )
    ids = sa.bindparam("ids", expanding=True)
    # integration (None: all of them) → bucket (None: the whole period) → (calls, failed, avg
    # ms, p95 ms)
    figures: dict[str | None, dict[int | None, tuple[int, int, float | None, float | None]]] = (
        defaultdict(dict)
    )
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
            {**params, "w": width},
        ).all()
        for iid, b, calls, failed, avg, p95 in rows:
            figures[iid][None if b is None else int(b)] = (
                int(calls),
                int(failed or 0),  # the () set of no rows at all: count 0, sum NULL
                float(avg) if avg is not None else None,
                float(p95) if p95 is not None else None,
            )
    else:
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
            b = int((parse_timestamp(created_at) - start).total_seconds() // width)
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

    def whole(of: dict[int | None, tuple[int, int, float | None, float | None]]) -> CallWindow:
        calls, failed, avg, p95 = of.get(None, (0, 0, None, None))
        return CallWindow(start, end, calls, failed, avg, p95 if calls else None)

    result = {}
    for iid in integration_ids:
        of = figures.get(iid, {})
        points = []
        for b in range(count):
            n, f, _, bucket_p95 = of.get(b, (0, 0, None, None))
            points.append(SeriesPoint(start + bucket * b, n, f, bucket_p95))
        result[iid] = PeriodCalls(calls=whole(of), series=tuple(points))
    return OrganizationCalls(result, whole(figures.get(None, {})))


def _rolled_up_period_calls(
    conn: Connection,
    organization_id: str,
    integration_ids: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    bucket: timedelta,
    count: int,
) -> OrganizationCalls:
    """`period_calls` from the rolled-up hours (store/call_hours.py) up to the organization's
    newest, less the few a roll-up may still correct, and from the calls themselves before and
    after them — so the figures are right however far behind the roll-up is, and fast when it
    is current. Counts and averages are exact; p95s come from the latency histograms (±5 %); an
    hour that straddles two chart buckets counts in the one holding most of it."""
    first = ceil_hour(start)
    newest = newest_rolled_up_hour(conn, organization_id)
    last = first
    if newest is not None:
        last = max(first, min(newest + HOUR - RECOMPUTE, rolled_up_until(end)))
    hours = CallHours.concat(
        [
            call_hours(conn, organization_id, start, first, integration_ids=integration_ids),
            rolled_up_hours(conn, organization_id, integration_ids, first, last),
            call_hours(conn, organization_id, last, end, integration_ids=integration_ids),
        ]
    )
    # every hour into its (integration, chart bucket) cell: the bucket holding its middle
    position = {iid: n for n, iid in enumerate(integration_ids)}
    rows = np.array([position.get(iid, -1) for iid in hours.integration_ids], dtype=np.int64)
    middles = [
        (max(h, start) + (min(h + HOUR, end) - max(h, start)) / 2 - start) / bucket
        for h in hours.hours
    ]
    cells = np.clip(np.array(middles, dtype=np.float64).astype(np.int64), 0, count - 1)
    known = rows >= 0
    shape = (len(integration_ids), count)

    def summed(values: np.ndarray) -> np.ndarray:
        out = np.zeros(shape + values.shape[1:], dtype=values.dtype)
        np.add.at(out, (rows[known], cells[known]), values[known])
        return out

    calls, failed = summed(hours.calls), summed(hours.failed)
    timed, total_ms = summed(hours.latency_count), summed(hours.latency_sum_ms)
    histograms = summed(hours.histograms)
    by_integration = histograms.sum(axis=1)
    cell_p95 = histogram_percentiles(histograms, 95)
    whole_p95 = histogram_percentiles(by_integration, 95)
    all_histogram = by_integration.sum(axis=0)

    def window(n: int, f: int, t: int, ms: float, p95: float) -> CallWindow:
        return CallWindow(
            start,
            end,
            int(n),
            int(f),
            float(ms) / int(t) if t else None,
            None if np.isnan(p95) else float(p95),
        )

    result = {}
    for k, iid in enumerate(integration_ids):
        series = tuple(
            SeriesPoint(
                start + bucket * b,
                int(calls[k, b]),
                int(failed[k, b]),
                None if np.isnan(cell_p95[k, b]) else float(cell_p95[k, b]),
            )
            for b in range(count)
        )
        result[iid] = PeriodCalls(
            calls=window(
                calls[k].sum(), failed[k].sum(), timed[k].sum(), total_ms[k].sum(), whole_p95[k]
            ),
            series=series,
        )
    total = window(
        calls.sum(),
        failed.sum(),
        timed.sum(),
        total_ms.sum(),
        histogram_percentiles(all_histogram, 95),
    )
    return OrganizationCalls(result, total, all_histogram)


def sync_outcomes_by_integration(
    conn: Connection,
    organization_id: str,
    integration_ids: Sequence[str],
    start: datetime,
    end: datetime,
) -> dict[str, SyncOutcomes]:
    """`sync_outcomes` of each of the organization's integrations, in one query."""
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
    return {
        iid: SyncOutcomes(
            syncs=sum(of.values()),
            succeeded=sum(of.get(s, 0) for s in GOOD_SYNC_STATUSES),
            failed=of.get("failed", 0),
            running=of.get("running", 0),
        )
        for iid, of in counts.items()
    }


def top_errors_by_integration(
    conn: Connection,
    organization_id: str,
    integration_ids: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    limit: int = 3,
) -> dict[str, list[ErrorCount]]:
    """`top_errors` of each of the organization's integrations, in one query (a window function
    ranks each integration's error groups; ties beyond count and last seen go by type, message)."""
    found: dict[str, list[ErrorCount]] = {iid: [] for iid in integration_ids}
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
        found[iid].append(ErrorCount(error_type, message, int(n), parse_timestamp(last)))
    return found
