"""The figures a report reads over a period, beyond the monitoring windows: sync outcomes, the most
frequent errors, provider calls in time buckets (the chart) and call totals across integrations,
as records. The queries are store/period_stats.py (recent periods, from the calls) and
store/call_hours.py (long ones, from the rolled-up hours).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy.engine import Connection

from sync_pipelines.histograms import histogram_percentiles
from sync_pipelines.monitoring.integration_stats import CallWindow
from sync_pipelines.store import period_stats as stored
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
from sync_pipelines.store.sync_state import FAILED_SYNC_STATUSES, PARTIAL, SUCCESS

#: periods this long are read from the rolled-up hours (a weekly report reads ~4k hour rows per
#: organization instead of ~150k calls at 10M activity rows); shorter ones from the calls, exactly
ROLLED_UP_PERIOD = timedelta(hours=48)


@dataclass(frozen=True, slots=True)
class SyncOutcomes:
    """Syncs (sync-log rows, every stream) started in the period, by outcome."""

    syncs: int
    #: stored everything they fetched (`success`)
    succeeded: int
    #: stored their data but not all of it (`partial`: records dead-lettered, gaps, loss)
    partial: int
    #: failed, abandoned (process died) or fenced (a stale writer)
    failed: int
    #: still running (or died without saying so)
    running: int

    @property
    def finished(self) -> int:
        return self.succeeded + self.partial + self.failed

    @property
    def success_rate(self) -> float | None:
        """Clean successes / finished syncs (a partial sync is not a success); None when
        nothing finished."""
        return self.succeeded / self.finished if self.finished else None


def sync_outcomes(
    conn: Connection, organization_id: str, integration_id: str, start: datetime, end: datetime
) -> SyncOutcomes:
    counts = stored.sync_status_counts(conn, organization_id, integration_id, start, end)
    return _outcomes(counts)


def _outcomes(counts: Mapping[str, int]) -> SyncOutcomes:
    return SyncOutcomes(
        syncs=sum(counts.values()),
        succeeded=counts.get(SUCCESS, 0),
        partial=counts.get(PARTIAL, 0),
        failed=sum(counts.get(s, 0) for s in FAILED_SYNC_STATUSES),
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
    groups = stored.error_groups(conn, organization_id, integration_id, start, end, limit=limit)
    return [ErrorCount(*group) for group in groups]


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """Provider calls in one time bucket [start, start + bucket)."""

    start: datetime
    calls: int
    failed: int
    p95_latency_ms: float | None

    @property
    def failure_rate(self) -> float | None:
        """Failed calls / calls: the call failure rate."""
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
    figures = stored.bucketed_call_figures(
        conn, organization_id, integration_id, start, end, width_s=width
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
    return CallWindow(start, end, *stored.call_totals(conn, scopes, start, end))


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
    figures = stored.period_call_figures(
        conn, organization_id, integration_ids, start, end, width_s=width
    )

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
    counts = stored.sync_status_counts_by_integration(
        conn, organization_id, integration_ids, start, end
    )
    return {iid: _outcomes(of) for iid, of in counts.items()}


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
    found = stored.error_groups_by_integration(
        conn, organization_id, integration_ids, start, end, limit=limit
    )
    return {iid: [ErrorCount(*group) for group in groups] for iid, groups in found.items()}
