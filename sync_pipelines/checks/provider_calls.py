"""Checks on an integration's provider calls (HTTP requests, MQTT broker operations): the call
failure rate over the current window, its trend against the trailing windows, and p95 latency.
(The share of *records* a sync failed to store is `record_failure_rate`, on the asset's
materializations; these judge calls.)"""

from __future__ import annotations

from sync_pipelines.checks.context import CheckContext
from sync_pipelines.checks.outcome import ERROR, WARN, CheckOutcome, failed, graded, passed
from sync_pipelines.monitoring.integration_stats import call_windows
from sync_pipelines.monitoring.trend import error_rate_trend

CALL_FAILURE_RATE = "call_failure_rate_below_threshold"
CALL_FAILURE_TREND = "call_failure_rate_not_trending_up"
P95_LATENCY = "p95_latency_below_threshold"


def call_failure_rate_below_threshold(ctx: CheckContext) -> CheckOutcome:
    t, w = ctx.thresholds, ctx.window
    figures = dict(
        call_failure_rate=w.failure_rate,
        throttled=w.throttled,
        calls=w.calls,
        failed=w.failed,
        window_s=t.window_s,
        warn_rate=t.error_rate_warn,
        critical_rate=t.error_rate_critical,
    )
    if w.calls < t.min_calls:  # 1 failure in 3 calls is not an incident
        return passed(
            CALL_FAILURE_RATE,
            f"{w.failed} of {w.calls} provider calls failed in the last {t.window_s} s: "
            f"too few calls to judge (at least {t.min_calls})",
            **figures,
        )
    rate = w.failed / w.calls
    throttled = f", {w.throttled} of them throttled" if w.throttled else ""
    summary = f"{rate:.1%} of {w.calls} provider calls failed in the last {t.window_s} s{throttled}"
    limit = t.error_rate_critical if rate > t.error_rate_critical else t.error_rate_warn
    return graded(
        CALL_FAILURE_RATE,
        rate,
        warn=t.error_rate_warn,
        critical=t.error_rate_critical,
        ok=f"{summary} (warn above {t.error_rate_warn:.1%})",
        bad=f"{summary}: above {limit:.1%}",
        **figures,
    )


def call_failure_rate_not_trending_up(ctx: CheckContext) -> CheckOutcome:
    """The current window against the `trend_windows` before it (a two-proportion z-test with an
    absolute floor, `monitoring/trend.py`), so noise around a stable rate does not fire."""
    t = ctx.thresholds
    windows = call_windows(
        ctx.conn,
        ctx.organization_id,
        ctx.integration_id,
        end=ctx.now,
        window_s=t.window_s,
        count=t.trend_windows + 1,
    )
    trend = error_rate_trend(
        windows, min_calls=t.min_calls, z_threshold=t.trend_z, min_increase=t.trend_min_increase
    )
    figures = dict(
        current_rate=trend.current_rate,
        baseline_rate=trend.baseline_rate,
        delta=trend.delta,
        z=trend.z,
        current_calls=trend.current_calls,
        baseline_calls=trend.baseline_calls,
        z_threshold=t.trend_z,
        min_increase=t.trend_min_increase,
        windows=t.trend_windows,
    )
    if trend.z is None:
        return passed(
            CALL_FAILURE_TREND,
            f"too few provider calls to compare ({trend.current_calls} now, "
            f"{trend.baseline_calls} in the {t.trend_windows} windows before; at least {t.min_calls} each)",
            **figures,
        )
    summary = (
        f"call failure rate {trend.current_rate:.1%} in the last {t.window_s} s against "
        f"{trend.baseline_rate:.1%} over the {t.trend_windows} windows before (z = {trend.z:.1f})"
    )
    if not trend.worsening:
        return passed(CALL_FAILURE_TREND, f"{summary}: no significant rise", **figures)
    # a significant rise is a warning; it is an error once the rate itself is critical
    severity = ERROR if (trend.current_rate or 0) > t.error_rate_critical else WARN
    return failed(CALL_FAILURE_TREND, severity, f"{summary}: rising significantly", **figures)


def p95_latency_below_threshold(ctx: CheckContext) -> CheckOutcome:
    t, w = ctx.thresholds, ctx.window
    figures = dict(
        p95_ms=w.p95_latency_ms,
        avg_ms=w.avg_latency_ms,
        calls=w.calls,
        warn_ms=t.p95_latency_warn_ms,
        critical_ms=t.p95_latency_critical_ms,
    )
    # below min_calls a "p95" is just the slowest call
    if w.calls < t.min_calls or w.p95_latency_ms is None:
        return passed(
            P95_LATENCY,
            f"{w.calls} provider calls in the last {t.window_s} s: too few to judge latency "
            f"(at least {t.min_calls})",
            **figures,
        )
    p95 = w.p95_latency_ms
    summary = f"p95 latency {p95:.0f} ms over {w.calls} provider calls in the last {t.window_s} s"
    limit = t.p95_latency_critical_ms if p95 > t.p95_latency_critical_ms else t.p95_latency_warn_ms
    return graded(
        P95_LATENCY,
        p95,
        warn=t.p95_latency_warn_ms,
        critical=t.p95_latency_critical_ms,
        ok=f"{summary} (warn above {t.p95_latency_warn_ms:.0f} ms)",
        bad=f"{summary}: above {limit:.0f} ms",
        **figures,
    )
