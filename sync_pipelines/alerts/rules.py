"""The alert rules: which conditions hold for one integration, given its figures and thresholds.
Pure decisions, no SQL (the figures are read in `evaluation.py`).

Each rule judges its condition *active* (with a severity), *clear*, or leaves it *held*:
- error rate and provider API failures are held while the window has fewer than `min_calls`
  calls — a quiet window neither opens nor resolves an incident, so an integration polled every
  few minutes does not flap between firing and resolved;
- the error-rate condition is held while the provider-API-failure condition is active: an
  outage of the provider is one incident ("the provider is failing"), not two.

Incidents raised by events rather than by evaluation — a failed asset check, a failed run —
are conditions too (`check_failed`, `run_failed`, `sensor_failed`), built where the event is
seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sync_pipelines.monitoring.integration_stats import CallWindow, InboxBacklog, SyncHistory
from sync_pipelines.monitoring.thresholds import Thresholds
from sync_pipelines.store.integrations import Integration

ERROR_RATE = "call_failure_rate"
PROVIDER_API_FAILURES = "provider_api_failures"
FAILURE_STREAK = "failure_streak"
PROCESSING_DELAY = "processing_delay"
INBOX_BACKLOG = "inbox_backlog"
CHECK_FAILED = "check_failed"
RUN_FAILED = "run_failed"
#: a sensor tick raised (alerts/sensor_failures; Dagster OSS alerts on no sensor failure)
SENSOR_FAILED = "sensor_failed"
#: a scan would have deleted more than the integration's max_delete_fraction (alerts/deletion_guard)
DELETION_GUARD = "deletion_guard"
#: a telemetry drain found messages its broker dropped, or its session lost (alerts/telemetry_loss)
TELEMETRY_LOSS = "telemetry_loss"
#: the shape of a provider's device attributes or state changed (alerts/shape_drift)
SHAPE_DRIFT = "shape_drift"
#: the rules the periodic evaluation judges (the others are raised by events)
EVALUATED_RULES = (
    ERROR_RATE,
    PROVIDER_API_FAILURES,
    FAILURE_STREAK,
    PROCESSING_DELAY,
    INBOX_BACKLOG,
)

WARNING, CRITICAL = "warning", "critical"


@dataclass(frozen=True, slots=True)
class Condition:
    """A condition that holds: what, about whom, how bad, and the figures behind it."""

    organization_id: str
    integration_id: str | None
    rule: str
    #: what, besides the rule, tells two conditions apart (an integration, a check, a job)
    subject: str
    severity: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    request_id: str | None = None

    @property
    def dedupe_key(self) -> str:
        return dedupe_key(self.rule, self.subject)


def dedupe_key(rule: str, subject: str) -> str:
    return f"{rule}:{subject}"


@dataclass(frozen=True, slots=True)
class IntegrationFigures:
    window: CallWindow
    #: calls in the window that failed on the provider's side (5xx, 429, timeouts, refused)
    provider_failed: int
    history: SyncHistory
    inbox: InboxBacklog


@dataclass(frozen=True, slots=True)
class Judgement:
    active: list[Condition]
    #: dedupe keys of the conditions judged absent (their open incidents resolve)
    clear: set[str]


def provider_failure_limit(t: Thresholds) -> float:
    # The seeds' "provider API failures > 10 %", overridable on its own
    return t.provider_failure_rate


def judge_integration(
    integration: Integration, figures: IntegrationFigures, t: Thresholds
) -> Judgement:
    judged: dict[str, Condition | bool | None] = {
        PROVIDER_API_FAILURES: _provider_api_failures(
            integration, figures.window, figures.provider_failed, t
        ),
        ERROR_RATE: _error_rate(integration, figures.window, t),
        FAILURE_STREAK: _failure_streak(integration, figures.history, t),
        PROCESSING_DELAY: _processing_delay(integration, figures.inbox, t),
        INBOX_BACKLOG: _inbox_backlog(integration, figures.inbox, t),
    }
    if isinstance(judged[PROVIDER_API_FAILURES], Condition):
        judged[ERROR_RATE] = None  # held: folded into the provider incident
    return Judgement(
        active=[c for c in judged.values() if isinstance(c, Condition)],
        clear={
            dedupe_key(rule, integration.integration_id) for rule, c in judged.items() if c is False
        },
    )


# Each rule returns a Condition (active), False (clear) or None (held).


def _condition(
    integration: Integration, rule: str, severity: str, summary: str, **details: Any
) -> Condition:
    return Condition(
        organization_id=integration.organization_id,
        integration_id=integration.integration_id,
        rule=rule,
        subject=integration.integration_id,
        severity=severity,
        summary=summary,
        details=details,
    )


def _error_rate(
    integration: Integration, window: CallWindow, t: Thresholds
) -> Condition | bool | None:
    rate = window.failure_rate
    if rate is None or window.calls < t.min_calls:
        return None
    if rate > t.error_rate_critical:
        severity, limit = CRITICAL, t.error_rate_critical
    elif rate > t.error_rate_warn:
        severity, limit = WARNING, t.error_rate_warn
    else:
        return False
    return _condition(
        integration,
        ERROR_RATE,
        severity,
        f"{rate:.1%} of {window.calls} provider calls failed over the last {t.window_s} s "
        f"(threshold {limit:.0%})",
        calls=window.calls,
        failed=window.failed,
        call_failure_rate=round(rate, 4),
        threshold=limit,
        window_s=t.window_s,
    )


def _provider_api_failures(
    integration: Integration, window: CallWindow, provider_failed: int, t: Thresholds
) -> Condition | bool | None:
    if window.calls == 0 or window.calls < t.min_calls:
        return None
    rate = provider_failed / window.calls
    limit = provider_failure_limit(t)
    if rate <= limit:
        return False
    return _condition(
        integration,
        PROVIDER_API_FAILURES,
        CRITICAL,
        f"the {integration.provider} API failed {rate:.1%} of {window.calls} calls over the last "
        f"{t.window_s} s (5xx, 429, timeouts, connection errors; threshold {limit:.0%})",
        calls=window.calls,
        provider_failed=provider_failed,
        failed=window.failed,
        provider_failure_rate=round(rate, 4),
        call_failure_rate=round(window.failure_rate or 0.0, 4),
        threshold=limit,
        window_s=t.window_s,
    )


def _failure_streak(
    integration: Integration, history: SyncHistory, t: Thresholds
) -> Condition | bool:
    streak = history.failure_streak
    if streak >= t.failure_streak_critical:
        severity = CRITICAL
    elif streak >= t.failure_streak_warn:
        severity = WARNING
    else:
        return False
    return _condition(
        integration,
        FAILURE_STREAK,
        severity,
        f"{streak} syncs failed in a row; last error: "
        f"{history.last_error_type or 'unknown'}: {history.last_error_message or '-'}",
        failure_streak=streak,
        last_error_type=history.last_error_type,
        last_error_message=history.last_error_message,
        last_success_at=history.last_success_at.isoformat() if history.last_success_at else None,
        threshold=t.failure_streak_warn if severity == WARNING else t.failure_streak_critical,
    )


def _processing_delay(
    integration: Integration, inbox: InboxBacklog, t: Thresholds
) -> Condition | bool:
    age = inbox.oldest_pending_age_s
    if age is None or age <= t.processing_delay_warn_s:
        return False
    return _condition(
        integration,
        PROCESSING_DELAY,
        WARNING,
        f"the oldest unprocessed webhook event has waited {age:.0f} s "
        f"(threshold {t.processing_delay_warn_s:.0f} s; {inbox.pending} pending)",
        oldest_pending_age_s=round(age, 1),
        pending=inbox.pending,
        threshold_s=t.processing_delay_warn_s,
    )


def _inbox_backlog(
    integration: Integration, inbox: InboxBacklog, t: Thresholds
) -> Condition | bool:
    if inbox.pending > t.inbox_backlog_critical:
        severity, limit = CRITICAL, t.inbox_backlog_critical
    elif inbox.pending > t.inbox_backlog_warn:
        severity, limit = WARNING, t.inbox_backlog_warn
    else:
        return False
    return _condition(
        integration,
        INBOX_BACKLOG,
        severity,
        f"{inbox.pending} webhook events wait in the inbox (threshold {limit})",
        pending=inbox.pending,
        threshold=limit,
    )
