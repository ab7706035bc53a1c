"""Checks on an integration's sync log: is its data fresh (the last good sync within the SLA),
and how many syncs have failed in a row."""

from __future__ import annotations

from sync_pipelines.checks.context import CheckContext
from sync_pipelines.checks.outcome import ERROR, CheckOutcome, failed, graded, passed

FRESHNESS = "synced_within_freshness_sla"
FAILURE_STREAK = "failure_streak_below_threshold"


def synced_within_freshness_sla(ctx: CheckContext) -> CheckOutcome:
    """The last successful (or partial) sync of any stream is no older than the SLA: the
    integration's `freshness_sla_s`, else three poll intervals. Breaking an SLA is an ERROR."""
    sla = ctx.thresholds.freshness_sla_for(ctx.integration.poll_interval_s)
    last = ctx.history.last_success_at
    if last is None:
        # a new integration has one SLA to deliver its first sync
        created = ctx.integration.created_at or ctx.now
        waited = (ctx.now - created).total_seconds()
        figures = dict(age_s=None, sla_s=sla, since_created_s=waited)
        if waited <= sla:
            return passed(
                FRESHNESS,
                f"no successful sync yet, {waited:.0f} s after creation (SLA {sla:.0f} s)",
                **figures,
            )
        return failed(
            FRESHNESS,
            ERROR,
            f"no successful sync in the {waited:.0f} s since creation (SLA {sla:.0f} s)",
            **figures,
        )
    age = (ctx.now - last).total_seconds()
    figures = dict(age_s=age, sla_s=sla)
    summary = f"last successful sync {age:.0f} s ago (SLA {sla:.0f} s)"
    if age > sla:
        return failed(FRESHNESS, ERROR, f"{summary}: stale", **figures)
    return passed(FRESHNESS, summary, **figures)


def failure_streak_below_threshold(ctx: CheckContext) -> CheckOutcome:
    """Syncs failed in a row (a `running` row past the stale limit counts: its process died)."""
    t, h = ctx.thresholds, ctx.history
    figures = dict(
        streak=h.failure_streak,
        stale_running=h.stale_running,
        warn_streak=t.failure_streak_warn,
        critical_streak=t.failure_streak_critical,
    )
    last_error = (
        f"; last error {h.last_error_type}: {h.last_error_message}" if h.last_error_type else ""
    )
    return graded(
        FAILURE_STREAK,
        h.failure_streak,
        warn=t.failure_streak_warn,
        critical=t.failure_streak_critical,
        inclusive=True,
        ok=f"{h.failure_streak} failed sync(s) in a row (warn at {t.failure_streak_warn})",
        bad=f"{h.failure_streak} syncs failed in a row{last_error}",
        **figures,
    )
