"""The health model: one integration's state, with its reasons, computed here and nowhere else.
`/health`, `sync-pipelines health`, the console, the report, the `sync_integration_health`
metric and the `integration_health` asset check all show what this module says.

States, best to worst: healthy, unknown (no evidence: never synced, disabled, not checked),
warning (data flows, something needs a look), degraded (data flows with real trouble, or is late),
unhealthy (data is not flowing, or will not until someone acts). The state is the worst of the
signals below; every signal that is not healthy adds its reason. Where a signal is an asset
check, health takes the check's own verdict, so a threshold means the same thing everywhere:

| signal                          | warning                    | degraded          | unhealthy                   |
|---------------------------------|----------------------------|-------------------|-----------------------------|
| disabled                        | (unknown: nothing else is judged)                                            |
| paused for shape drift          |                            |                   | disabled by `shape_drift_policy=pause`, with the reason and how to resume |
| never synced                    | (unknown, unless another signal is worse)                                    |
| last sync failed (data streams) | 1 failure                  | check WARN (2)    | check ERROR (3); or 1 on auth/config |
| freshness check                 |                            | ERROR (stale)     | ERROR, never succeeded      |
| last syncs complete check       | WARN (partial, replay/export failed)             |                             |
| call failure rate check         | WARN (> 5 %)               | ERROR (> 10 %)    |                             |
| call failure trend check        | WARN                       | ERROR             |                             |
| p95 latency check               | WARN (> 2 s)               | ERROR (> 5 s)     |                             |
| dead letters check              | WARN (>= 1 open)           | ERROR (>= 100)    |                             |
| inventory volume check          | WARN                       | ERROR             |                             |
| webhook inbox                   | > 500 waiting, or oldest > 10 min | > 1000 waiting (data stuck) |                  |

The figures are the integration's thresholds (`monitoring` setting, defaults in brackets).
Data-quality checks (duplicate or missing ids) and the shape check (`device_shape_stable`) judge
the data, not its flow: they show in the Checks tab and alerts, not in health — except a drift
pause, which stops the flow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.checks import dead_letters, inventory_volume, provider_calls, sync_outcomes
from sync_pipelines.checks.context import CheckContext
from sync_pipelines.checks.outcome import ERROR, CheckOutcome
from sync_pipelines.errors import AUTH, CONFIG
from sync_pipelines.monitoring.integration_stats import (
    CallWindow,
    InboxBacklog,
    SyncHistory,
    inbox_backlog,
)
from sync_pipelines.monitoring.thresholds import Thresholds
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.shapes import drift_pause

HEALTHY, WARNING, DEGRADED, UNHEALTHY, UNKNOWN = (
    "healthy",
    "warning",
    "degraded",
    "unhealthy",
    "unknown",
)
#: every state, best first (the order views list them in)
STATES = (HEALTHY, UNKNOWN, WARNING, DEGRADED, UNHEALTHY)
_RANK = {state: rank for rank, state in enumerate(STATES)}

#: signal names that are not asset checks
DISABLED, NEVER_SYNCED, LAST_SYNC, WEBHOOK_INBOX, NOT_CHECKED = (
    "disabled",
    "never_synced",
    "last_sync_failed",
    "webhook_inbox",
    "not_checked",
)
#: a disabled integration its shape drift policy paused (sync/shape_drift.py)
SHAPE_DRIFT_PAUSED = "shape_drift_paused"


def worst(states: list[str]) -> str:
    return max(states, key=_RANK.__getitem__, default=HEALTHY)


def rank(state: str) -> int:
    """0 for healthy up to 4 for unhealthy (unknown is 1): the metric's and the check's figure."""
    return _RANK[state]


@dataclass(frozen=True, slots=True)
class Signal:
    """One reason an integration is not healthy."""

    name: str
    state: str
    reason: str

    def as_json(self) -> dict[str, str]:
        return {"signal": self.name, "state": self.state, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class IntegrationHealth:
    organization_id: str
    integration_id: str
    provider: str
    name: str
    enabled: bool
    state: str
    signals: tuple[Signal, ...]
    last_success_at: datetime | None
    last_attempt_at: datetime | None
    last_error: str | None
    failure_streak: int
    window: CallWindow | None
    dead_letters: int
    inbox: InboxBacklog | None
    thresholds: Thresholds | None = field(default=None, repr=False)

    @property
    def reasons(self) -> list[str]:
        return [s.reason for s in self.signals]

    def signal_state(self, name: str) -> str:
        """The state one signal gave (healthy when it said nothing)."""
        return worst([s.state for s in self.signals if s.name == name])

    def as_json(self) -> dict[str, Any]:
        w, inbox = self.window, self.inbox
        return {
            "organization_id": self.organization_id,
            "integration_id": self.integration_id,
            "provider": self.provider,
            "name": self.name,
            "enabled": self.enabled,
            "state": self.state,
            "reasons": self.reasons,
            "signals": [s.as_json() for s in self.signals],
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "last_attempt_at": self.last_attempt_at.isoformat() if self.last_attempt_at else None,
            "last_error": self.last_error,
            "failure_streak": self.failure_streak,
            "calls": w.calls if w else None,
            "failed_calls": w.failed if w else None,
            "throttled_calls": w.throttled if w else None,
            "call_failure_rate": w.failure_rate if w else None,
            "p95_latency_ms": w.p95_latency_ms if w else None,
            "dead_letters": self.dead_letters,
            "inbox_backlog": inbox.pending if inbox else None,
            "oldest_pending_age_s": inbox.oldest_pending_age_s if inbox else None,
        }


#: asset checks health takes its verdict from: check -> (state on WARN, state on ERROR)
_CHECK_SIGNALS: tuple[tuple[str, Callable[[CheckContext], CheckOutcome], str, str], ...] = (
    (
        sync_outcomes.FAILURE_STREAK,
        sync_outcomes.failure_streak_below_threshold,
        DEGRADED,
        UNHEALTHY,
    ),
    (sync_outcomes.FRESHNESS, sync_outcomes.synced_within_freshness_sla, DEGRADED, DEGRADED),
    (sync_outcomes.SYNCS_COMPLETE, sync_outcomes.last_syncs_complete, WARNING, WARNING),
    (
        provider_calls.CALL_FAILURE_RATE,
        provider_calls.call_failure_rate_below_threshold,
        WARNING,
        DEGRADED,
    ),
    (
        provider_calls.CALL_FAILURE_TREND,
        provider_calls.call_failure_rate_not_trending_up,
        WARNING,
        DEGRADED,
    ),
    (provider_calls.P95_LATENCY, provider_calls.p95_latency_below_threshold, WARNING, DEGRADED),
    (dead_letters.DEAD_LETTERS, dead_letters.dead_letters_below_threshold, WARNING, DEGRADED),
    (
        inventory_volume.INVENTORY_VOLUME,
        inventory_volume.inventory_volume_as_expected,
        WARNING,
        DEGRADED,
    ),
)


def classify(ctx: CheckContext, inbox: InboxBacklog) -> list[Signal]:
    """Every signal that is not healthy, in the table's order."""
    t, history = ctx.thresholds, ctx.history
    signals: list[Signal] = []
    if history.syncs == 0 and ctx.window.calls == 0:
        signals.append(Signal(NEVER_SYNCED, UNKNOWN, "never synced"))
    signals += _last_sync(history, t)
    for name, evaluate, on_warn, on_error in _CHECK_SIGNALS:
        outcome = evaluate(ctx)
        if outcome.passed:
            continue
        state = on_error if outcome.severity == ERROR else on_warn
        if name == sync_outcomes.FRESHNESS and history.last_success_at is None:
            state = UNHEALTHY  # past its SLA without ever storing anything
        if name == sync_outcomes.SYNCS_COMPLETE:
            # one reason per incomplete stream, as the check lists them
            signals += [Signal(name, state, r) for r in sync_outcomes.incomplete_reasons(history)]
        else:
            signals.append(Signal(name, state, outcome.description))
    signals += _inbox(inbox, t)
    return signals


def _last_sync(history: SyncHistory, t: Thresholds) -> list[Signal]:
    """The newest data sync failed: a warning while the streak check passes (it takes over from
    `failure_streak_warn`), and unhealthy at once when it failed on credentials or configuration,
    which no retry fixes."""
    if history.last_status != "failed":
        return []
    error = f"{history.last_error_type}: {history.last_error_message}"
    if history.last_error_type in (AUTH, CONFIG):
        return [
            Signal(
                LAST_SYNC,
                UNHEALTHY,
                f"the last sync failed on its {history.last_error_type} ({error}); it will fail "
                "until that is fixed",
            )
        ]
    if history.failure_streak >= t.failure_streak_warn:
        return []
    return [Signal(LAST_SYNC, WARNING, f"the last sync failed ({error})")]


def _inbox(inbox: InboxBacklog, t: Thresholds) -> list[Signal]:
    if inbox.pending > t.inbox_backlog_critical:
        state = UNHEALTHY
    elif inbox.pending > t.inbox_backlog_warn:
        state = WARNING
    else:
        state = None
    signals = []
    if state:
        signals.append(
            Signal(
                WEBHOOK_INBOX,
                state,
                f"{inbox.pending} webhook events waiting (warn above {t.inbox_backlog_warn}, "
                f"unhealthy above {t.inbox_backlog_critical})",
            )
        )
    age = inbox.oldest_pending_age_s
    if age is not None and age > t.processing_delay_warn_s:
        signals.append(
            Signal(
                WEBHOOK_INBOX,
                WARNING,
                f"oldest webhook event waiting {age:.0f} s (warn above {t.processing_delay_warn_s:.0f} s)",
            )
        )
    return signals


def integration_health(
    conn: Connection, integration: Integration, *, now: datetime
) -> IntegrationHealth:
    """The integration's state and reasons at `now`. A disabled integration is `unknown`, not
    judged, but its figures (last success, errors, dead letters, inbox) are still read: what it
    left behind is true whether or not it runs. A malformed `monitoring` setting is `unknown`,
    naming the setting."""
    try:
        ctx = CheckContext.of(conn, integration, now=now)
    except ValueError as exc:
        return _without_figures(integration, Signal(NOT_CHECKED, UNKNOWN, f"not checked: {exc}"))
    if not integration.enabled:
        return health_in(ctx, judged=False)
    return health_in(ctx)


def health_in(ctx: CheckContext, *, judged: bool = True) -> IntegrationHealth:
    """The health of the context's integration, sharing the figures its checks read; not
    `judged` (disabled): the figures with one `unknown` signal saying so (unhealthy when its shape
    drift policy paused it)."""
    integration = ctx.integration
    inbox = inbox_backlog(ctx.conn, ctx.organization_id, ctx.integration_id, now=ctx.now)
    signals = classify(ctx, inbox) if judged else [_disabled_signal(ctx)]
    history = ctx.history
    last_error = (
        f"{history.last_error_type}: {history.last_error_message}"
        if history.last_error_type
        else None
    )
    return IntegrationHealth(
        organization_id=ctx.organization_id,
        integration_id=ctx.integration_id,
        provider=integration.provider,
        name=integration.name,
        enabled=integration.enabled,
        state=worst([s.state for s in signals]),
        signals=tuple(signals),
        last_success_at=history.last_success_at,
        last_attempt_at=history.last_attempt_at,
        last_error=last_error,
        failure_streak=history.failure_streak,
        window=ctx.window,
        dead_letters=ctx.dead_letters,
        inbox=inbox,
        thresholds=ctx.thresholds,
    )


def _disabled_signal(ctx: CheckContext) -> Signal:
    """A disabled integration is not judged — unless its shape drift policy paused it: data
    will not flow until someone acts, so unhealthy, with the reason and how to resume."""
    paused = drift_pause(ctx.conn, ctx.organization_id, ctx.integration_id)
    if paused is not None:
        return Signal(SHAPE_DRIFT_PAUSED, UNHEALTHY, paused.pause_reason())
    return Signal(DISABLED, UNKNOWN, "disabled: not synced or judged")


def _without_figures(integration: Integration, signal: Signal) -> IntegrationHealth:
    return IntegrationHealth(
        organization_id=integration.organization_id,
        integration_id=integration.integration_id,
        provider=integration.provider,
        name=integration.name,
        enabled=integration.enabled,
        state=signal.state,
        signals=(signal,),
        last_success_at=None,
        last_attempt_at=None,
        last_error=None,
        failure_streak=0,
        window=None,
        dead_letters=0,
        inbox=None,
    )
