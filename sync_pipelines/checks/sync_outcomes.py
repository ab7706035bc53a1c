"""Checks on an integration's sync log: is its data fresh (the last good sync within the SLA),
how many syncs have failed in a row, and did the newest sync of each stream store everything
(a `partial` sync stored its data but not all of it)."""

from __future__ import annotations

from sync_pipelines.checks.context import CheckContext
from sync_pipelines.checks.outcome import ERROR, WARN, CheckOutcome, failed, graded, passed
from sync_pipelines.monitoring.integration_stats import StreamOutcome, SyncHistory
from sync_pipelines.store.sync_state import is_failed_sync

FRESHNESS = "synced_within_freshness_sla"
FAILURE_STREAK = "failure_streak_below_threshold"
SYNCS_COMPLETE = "last_syncs_complete"


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


def last_syncs_complete(ctx: CheckContext) -> CheckOutcome:
    """WARN when the newest finished sync of a stream ended `partial` (records dead-lettered,
    telemetry gaps, messages the broker dropped), or the newest dead-letter replay or export did
    not do all its work: the data is there, but not all of it."""
    h = ctx.history
    reasons = incomplete_reasons(h)
    figures = dict(
        partial_streams=len(h.partial_outcomes),
        records_failed=sum(o.failed for o in h.partial_outcomes),
        gaps=sum(o.gaps for o in h.partial_outcomes),
    )
    if not reasons:
        return passed(
            SYNCS_COMPLETE, "the newest sync of every stream stored all it fetched", **figures
        )
    return failed(SYNCS_COMPLETE, WARN, "; ".join(reasons), **figures)


def incomplete_reasons(history: SyncHistory) -> list[str]:
    """One sentence per stream whose newest sync did not do all its work."""
    reasons = [_partial_reason(o) for o in history.partial_outcomes]
    for side in history.side_outcomes:
        if side.status == "partial" or is_failed_sync(side.status):
            reasons.append(_side_reason(side))
    return reasons


def _partial_reason(o: StreamOutcome) -> str:
    parts = []
    if o.failed:
        parts.append(f"{o.failed} of {o.fetched} records failed (dead-lettered)")
    if o.gaps:
        parts.append(f"{o.gaps} telemetry gap(s)")
    if o.error_message:
        parts.append(o.error_message)
    return f"the last {o.stream} sync was partial: {', '.join(parts) or 'not all stored'}"


def _side_reason(o: StreamOutcome) -> str:
    if o.stream == "dead_letter_replay" and o.status == "partial":
        return (
            f"the last dead-letter replay resolved {o.fetched - o.failed} of {o.fetched} letters "
            f"({o.failed} failed again)"
        )
    what = "dead-letter replay" if o.stream == "dead_letter_replay" else f"{o.stream} run"
    error = f": {o.error_type}: {o.error_message}" if o.error_type else ""
    return f"the last {what} was {o.status}{error}"
