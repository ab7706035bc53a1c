"""The integration-health report as data: per integration its state (`monitoring.health`), sync
and provider-call success over the period, latency, the error-rate trend and the top errors, and
on top how many integrations are failed (unhealthy) or degraded. Renderers (markdown.py,
terminal.py, chart.py) and the Dagster asset only read these records.

Scope: one organization's integrations, or — when an operator asks for every
organization — all integrations (the system-level scan `list_every_integration`); a disabled
integration is listed, `unknown`, as every health view lists it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.histograms import histogram_percentiles
from sync_pipelines.monitoring.health import (
    DEGRADED,
    HEALTHY,
    UNHEALTHY,
    UNKNOWN,
    WARNING,
    IntegrationHealth,
    integration_health,
)
from sync_pipelines.monitoring.integration_stats import CallWindow, call_windows
from sync_pipelines.monitoring.thresholds import Thresholds
from sync_pipelines.monitoring.trend import Trend, error_rate_trend
from sync_pipelines.reports.period_stats import (
    ROLLED_UP_PERIOD,
    ErrorCount,
    OrganizationCalls,
    PeriodCalls,
    SeriesPoint,
    SyncOutcomes,
    call_totals,
    period_calls,
    sync_outcomes_by_integration,
    top_errors_by_integration,
)
from sync_pipelines.store.call_hours import roll_up_organizations
from sync_pipelines.store.database import Store, use_organization
from sync_pipelines.store.integrations import (
    Integration,
    list_enabled_integrations,
    list_every_integration,
    list_integrations,
)

#: the arrow a report shows for a trend direction (`up`: the error rate is worsening)
TREND_ARROWS = {"up": "↑", "down": "↓", "flat": "→", "unknown": "?"}
#: worst first, for ordering the table
_STATE_ORDER = {UNHEALTHY: 0, DEGRADED: 1, WARNING: 2, UNKNOWN: 3, HEALTHY: 4}
DEFAULT_PERIOD = timedelta(hours=24)
WEEKLY_PERIOD = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class IntegrationReportRow:
    integration: Integration
    health: IntegrationHealth
    syncs: SyncOutcomes
    #: provider calls over the whole period
    calls: CallWindow
    #: the period's last window against the ones before it
    trend: Trend
    top_errors: tuple[ErrorCount, ...]
    #: provider calls per time bucket, for the chart
    series: tuple[SeriesPoint, ...]

    @property
    def organization_id(self) -> str:
        return self.integration.organization_id

    @property
    def integration_id(self) -> str:
        return self.integration.integration_id

    @property
    def state(self) -> str:
        return self.health.state

    @property
    def call_success_rate(self) -> float | None:
        rate = self.calls.failure_rate
        return None if rate is None else 1.0 - rate

    @property
    def trend_arrow(self) -> str:
        return TREND_ARROWS.get(self.trend.direction, "?")

    def as_json(self) -> dict[str, Any]:
        return {
            "organization_id": self.organization_id,
            "integration_id": self.integration_id,
            "provider": self.integration.provider,
            "name": self.integration.name,
            "state": self.state,
            "reasons": list(self.health.reasons),
            "last_success_at": _iso(self.health.last_success_at),
            "last_error": self.health.last_error,
            "syncs": self.syncs.syncs,
            "syncs_succeeded": self.syncs.succeeded,
            "syncs_partial": self.syncs.partial,
            "syncs_failed": self.syncs.failed,
            "sync_success_rate": self.syncs.success_rate,
            "calls": self.calls.calls,
            "calls_failed": self.calls.failed,
            "call_success_rate": self.call_success_rate,
            "avg_latency_ms": self.calls.avg_latency_ms,
            "p95_latency_ms": self.calls.p95_latency_ms,
            "trend": {
                "direction": self.trend.direction,
                "arrow": self.trend_arrow,
                "current_rate": self.trend.current_rate,
                "baseline_rate": self.trend.baseline_rate,
                "z": self.trend.z,
                "worsening": self.trend.worsening,
            },
            "top_errors": [
                {
                    "error_type": e.error_type,
                    "message": e.message,
                    "count": e.count,
                    "last_seen_at": _iso(e.last_seen_at),
                }
                for e in self.top_errors
            ],
            "series": [
                {
                    "start": p.start.isoformat(),
                    "calls": p.calls,
                    "failed": p.failed,
                    "call_failure_rate": p.failure_rate,
                    "p95_latency_ms": p.p95_latency_ms,
                }
                for p in self.series
            ],
        }


@dataclass(frozen=True, slots=True)
class IntegrationHealthReport:
    #: None: every organization (a system-level report)
    organization_id: str | None
    generated_at: datetime
    period_start: datetime
    period_end: datetime
    bucket: timedelta
    #: worst first
    integrations: tuple[IntegrationReportRow, ...]
    #: provider calls of every integration in the report, over the period
    totals: CallWindow

    @property
    def period(self) -> timedelta:
        return self.period_end - self.period_start

    @property
    def title(self) -> str:
        scope = (
            f"organization {self.organization_id}" if self.organization_id else "all organizations"
        )
        return f"Integration health — {scope} — last {period_label(self.period)}"

    def count(self, state: str) -> int:
        return sum(1 for row in self.integrations if row.state == state)

    @property
    def failed_integrations(self) -> int:
        """Integrations whose state is unhealthy."""
        return self.count(UNHEALTHY)

    @property
    def degraded_integrations(self) -> int:
        return self.count(DEGRADED)

    @property
    def sync_success_rate(self) -> float | None:
        succeeded = sum(r.syncs.succeeded for r in self.integrations)
        finished = sum(r.syncs.finished for r in self.integrations)
        return succeeded / finished if finished else None

    @property
    def call_success_rate(self) -> float | None:
        rate = self.totals.failure_rate
        return None if rate is None else 1.0 - rate

    def figures(self) -> dict[str, int | float | None]:
        """The headline numbers (Dagster metadata, JSON output)."""
        return {
            "integrations": len(self.integrations),
            "failed_integrations": self.failed_integrations,
            "degraded_integrations": self.degraded_integrations,
            "warning_integrations": self.count(WARNING),
            "healthy_integrations": self.count(HEALTHY),
            "unknown_integrations": self.count(UNKNOWN),
            "syncs": sum(r.syncs.syncs for r in self.integrations),
            "syncs_partial": sum(r.syncs.partial for r in self.integrations),
            "syncs_failed": sum(r.syncs.failed for r in self.integrations),
            # "success rate" without qualifier is the syncs': clean successes of finished syncs
            "success_rate": self.sync_success_rate,
            "calls": self.totals.calls,
            "calls_failed": self.totals.failed,
            "call_success_rate": self.call_success_rate,
            "avg_latency_ms": self.totals.avg_latency_ms,
            "p95_ms": self.totals.p95_latency_ms,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "organization_id": self.organization_id,
            "generated_at": self.generated_at.isoformat(),
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "bucket_s": self.bucket.total_seconds(),
            **self.figures(),
            "integrations": [row.as_json() for row in self.integrations],
        }


def roll_up_for_report(
    store: Store, *, organization_id: str | None, now: datetime, period: timedelta
) -> None:
    """Bring the rolled-up hours a long report reads up to date before it reads them (the hourly
    `provider_call_hours_schedule` usually has; a report stays right without it, only slower)."""
    if period < ROLLED_UP_PERIOD:
        return
    if organization_id is not None:
        organizations = [organization_id]
    else:
        with store.connect() as conn:
            organizations = [i.organization_id for i in list_enabled_integrations(conn)]
    roll_up_organizations(store, organizations, now=now)


def build_integration_report(
    conn: Connection,
    *,
    organization_id: str | None,
    now: datetime,
    period: timedelta = DEFAULT_PERIOD,
    top_error_limit: int = 3,
) -> IntegrationHealthReport:
    """The report for the period ending `now`: one organization's integrations, or every
    organization's when `organization_id` is None (the operator asked for all of them)."""
    if period <= timedelta(0):
        raise ValueError(f"the report period must be positive, got {period}")
    if organization_id is not None:
        # every integration of the organization: a disabled one is listed as such (unknown)
        integrations = list_integrations(conn, organization_id)
    else:
        # system-level scan across tenants: a report over every organization, on request only
        integrations = list_every_integration(conn)
    start, bucket = now - period, chart_bucket(period)
    scopes: dict[str, list[str]] = {}
    for integ in integrations:
        scopes.setdefault(integ.organization_id, []).append(integ.integration_id)
    # the period's calls and chart buckets: one scan per organization, not three per integration
    # (each organization's reads in its own scope: row security, sql/026)
    by_org: dict[str, OrganizationCalls] = {}
    calls, syncs, errors = {}, {}, {}
    for org, iids in scopes.items():
        use_organization(conn, org)
        by_org[org] = period_calls(conn, org, iids, start, now, bucket=bucket)
        calls.update({(org, iid): f for iid, f in by_org[org].by_integration.items()})
        outcomes = sync_outcomes_by_integration(conn, org, iids, start, now)
        syncs.update({(org, iid): o for iid, o in outcomes.items()})
        found = top_errors_by_integration(conn, org, iids, start, now, limit=top_error_limit)
        errors.update({(org, iid): e for iid, e in found.items()})
    rows = []
    for integ in integrations:
        key = (integ.organization_id, integ.integration_id)
        use_organization(conn, integ.organization_id)
        rows.append(_report_row(conn, integ, start, now, calls[key], syncs[key], errors[key]))
    rows.sort(
        key=lambda r: (
            _STATE_ORDER.get(r.state, 9),
            -(r.calls.failure_rate or 0.0),
            r.organization_id,
            r.integration_id,
        )
    )
    return IntegrationHealthReport(
        organization_id=organization_id,
        generated_at=now,
        period_start=start,
        period_end=now,
        bucket=bucket,
        integrations=tuple(rows),
        # one organization's totals came with its integrations'; across organizations the p95
        # needs every call of them all together
        totals=_totals(conn, organization_id, by_org, scopes, start, now),
    )


def _totals(
    conn: Connection,
    organization_id: str | None,
    by_org: dict[str, OrganizationCalls],
    scopes: dict[str, list[str]],
    start: datetime,
    end: datetime,
) -> CallWindow:
    """All the report's calls together: one organization's came with its integrations'; across
    organizations the p95 needs every call of them all (or their rolled-up histograms)."""
    if organization_id is not None and organization_id in by_org:
        return by_org[organization_id].total
    if by_org and all(of.total_histogram is not None for of in by_org.values()):
        calls = sum(of.total.calls for of in by_org.values())
        latency_ms = [
            (of.total.avg_latency_ms, int(of.total_histogram.sum()))
            for of in by_org.values()
            if of.total.avg_latency_ms is not None
        ]
        timed = sum(n for _, n in latency_ms)
        p95 = histogram_percentiles(sum(of.total_histogram for of in by_org.values()), 95)
        return CallWindow(
            start,
            end,
            calls,
            sum(of.total.failed for of in by_org.values()),
            sum(avg * n for avg, n in latency_ms) / timed if timed else None,
            None if math.isnan(p95) else float(p95),
        )
    return call_totals(conn, scopes, start, end)


def _report_row(
    conn: Connection,
    integ: Integration,
    start: datetime,
    end: datetime,
    calls: PeriodCalls,
    syncs: SyncOutcomes,
    errors: list[ErrorCount],
) -> IntegrationReportRow:
    health = integration_health(conn, integ, now=end)
    t = health.thresholds or Thresholds()  # disabled, or its `monitoring` setting unusable
    # the trend over the report's period: its last 1/(n+1) against the n windows before
    # (a weekly summary compares the last day with the six before), never finer than the
    # monitoring window
    windows = t.trend_windows + 1
    window_s = max(t.window_s, int((end - start).total_seconds() // windows))
    trend = error_rate_trend(
        _trend_windows(conn, integ, start, end, calls.series, window_s=window_s, count=windows),
        min_calls=t.min_calls,
        z_threshold=t.trend_z,
        min_increase=t.trend_min_increase,
    )
    return IntegrationReportRow(
        integration=integ,
        health=health,
        syncs=syncs,
        calls=calls.calls,
        trend=trend,
        top_errors=tuple(errors),
        series=calls.series,
    )


def _trend_windows(
    conn: Connection,
    integ: Integration,
    start: datetime,
    end: datetime,
    series: tuple[SeriesPoint, ...],
    *,
    window_s: int,
    count: int,
) -> list[CallWindow]:
    """The trend's windows, summed from the chart's buckets when they tile them exactly (the
    default periods: 24 h = 8 × 3 h of 1 h buckets, 7 days = 8 × 21 h), else read again."""
    bucket_s = (series[1].start - series[0].start).total_seconds() if len(series) > 1 else 0
    per_window = int(window_s // bucket_s) if bucket_s else 0
    if (
        per_window
        and window_s == per_window * bucket_s
        and start + timedelta(seconds=window_s * count) == end
        and len(series) == per_window * count
    ):
        width = timedelta(seconds=window_s)
        return [
            CallWindow(
                start=start + width * k,
                end=start + width * (k + 1),
                calls=sum(p.calls for p in series[k * per_window : (k + 1) * per_window]),
                failed=sum(p.failed for p in series[k * per_window : (k + 1) * per_window]),
            )
            for k in range(count)
        ]
    return call_windows(
        conn, integ.organization_id, integ.integration_id, end=end, window_s=window_s, count=count
    )


def chart_bucket(period: timedelta) -> timedelta:
    """Time buckets of the chart: 5 min up to 6 h, hourly up to a week, then ~168 buckets."""
    hours = period.total_seconds() / 3600
    if hours <= 6:
        return timedelta(minutes=5)
    if hours <= 168:
        return timedelta(hours=1)
    return timedelta(hours=-(-hours // 168))


def period_label(period: timedelta) -> str:
    hours = period.total_seconds() / 3600
    if hours < 48 or hours % 24:
        return f"{hours:g} h"
    return f"{hours / 24:g} days"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
