"""One integration's health, from its figures and thresholds: healthy / degraded / unhealthy /
unknown, with the reasons. Unhealthy means data is not flowing (syncs failing, none ever
succeeded, inbox overflowing); degraded means it flows with trouble (errors, staleness, latency). The health command and
endpoint, the reports and the alert rules all classify through here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.monitoring.integration_stats import (
    CallWindow,
    InboxBacklog,
    SyncHistory,
    call_window,
    dead_letter_depth,
    inbox_backlog,
    sync_history,
)
from sync_pipelines.monitoring.thresholds import Thresholds
from sync_pipelines.store.integrations import Integration

HEALTHY, DEGRADED, UNHEALTHY, UNKNOWN = "healthy", "degraded", "unhealthy", "unknown"
_RANK = {HEALTHY: 0, UNKNOWN: 1, DEGRADED: 2, UNHEALTHY: 3}


def worst(states: list[str]) -> str:
    return max(states, key=_RANK.__getitem__, default=HEALTHY)


@dataclass(frozen=True, slots=True)
class IntegrationHealth:
    organization_id: str
    integration_id: str
    provider: str
    name: str
    state: str
    reasons: list[str]
    last_success_at: datetime | None
    last_attempt_at: datetime | None
    last_error: str | None
    failure_streak: int
    window: CallWindow
    dead_letters: int
    inbox: InboxBacklog
    thresholds: Thresholds = field(repr=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "organization_id": self.organization_id,
            "integration_id": self.integration_id,
            "provider": self.provider,
            "name": self.name,
            "state": self.state,
            "reasons": self.reasons,
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "last_attempt_at": self.last_attempt_at.isoformat() if self.last_attempt_at else None,
            "last_error": self.last_error,
            "failure_streak": self.failure_streak,
            "calls": self.window.calls,
            "failed_calls": self.window.failed,
            "error_rate": self.window.error_rate,
            "p95_latency_ms": self.window.p95_latency_ms,
            "dead_letters": self.dead_letters,
            "inbox_backlog": self.inbox.pending,
            "oldest_pending_age_s": self.inbox.oldest_pending_age_s,
        }


def classify(
    history: SyncHistory,
    window: CallWindow,
    dead_letters: int,
    inbox: InboxBacklog,
    thresholds: Thresholds,
    *,
    poll_interval_s: int,
    now: datetime,
) -> tuple[str, list[str]]:
    """The state and the human reasons behind it."""
    t = thresholds
    if history.syncs == 0 and window.calls == 0:
        return UNKNOWN, ["no sync has run yet"]
    reasons: list[tuple[str, str]] = []
    if history.failure_streak >= t.failure_streak_critical:
        reasons.append((UNHEALTHY, f"{history.failure_streak} syncs failed in a row"))
    elif history.failure_streak >= t.failure_streak_warn:
        reasons.append((DEGRADED, f"{history.failure_streak} syncs failed in a row"))
    elif history.last_status == "failed":
        reasons.append((DEGRADED, "the last sync failed"))
    sla = t.freshness_sla_for(poll_interval_s)
    if history.last_success_at is None:
        reasons.append((UNHEALTHY, "no successful sync yet"))
    elif (age := (now - history.last_success_at).total_seconds()) > sla:
        reasons.append((DEGRADED, f"last successful sync {age:.0f} s ago (SLA {sla:.0f} s)"))
    # Provider errors alone make an integration degraded, not unhealthy: while its syncs still
    # succeed (retries absorb the errors) data is flowing. Alerts and checks rate them critical.
    rate = window.error_rate
    if rate is not None and window.calls >= t.min_calls and rate > t.error_rate_warn:
        level = "critical" if rate > t.error_rate_critical else "warning"
        reasons.append(
            (DEGRADED, f"provider error rate {rate:.1%} over the last {t.window_s} s ({level})")
        )
    p95 = window.p95_latency_ms
    if p95 is not None and p95 > t.p95_latency_critical_ms:
        reasons.append((DEGRADED, f"p95 latency {p95:.0f} ms"))
    if dead_letters >= t.dead_letters_critical:
        reasons.append((DEGRADED, f"{dead_letters} open dead letters"))
    if inbox.pending > t.inbox_backlog_critical:
        reasons.append((UNHEALTHY, f"webhook inbox backlog {inbox.pending}"))
    elif inbox.pending > t.inbox_backlog_warn:
        reasons.append((DEGRADED, f"webhook inbox backlog {inbox.pending}"))
    if (
        inbox.oldest_pending_age_s is not None
        and inbox.oldest_pending_age_s > t.processing_delay_warn_s
    ):
        reasons.append(
            (DEGRADED, f"oldest webhook event waiting {inbox.oldest_pending_age_s:.0f} s")
        )
    if not reasons:
        return HEALTHY, []
    return worst([s for s, _ in reasons]), [r for _, r in reasons]


def integration_health(
    conn: Connection, integration: Integration, *, now: datetime
) -> IntegrationHealth:
    thresholds = Thresholds.from_settings(integration.settings)
    org, iid = integration.organization_id, integration.integration_id
    history = sync_history(conn, org, iid, now=now, stale_running_s=thresholds.stale_running_s)
    window = call_window(conn, org, iid, now - timedelta(seconds=thresholds.window_s), now)
    depth = dead_letter_depth(conn, org, iid)
    inbox = inbox_backlog(conn, org, iid, now=now)
    state, reasons = classify(
        history,
        window,
        depth,
        inbox,
        thresholds,
        poll_interval_s=integration.poll_interval_s,
        now=now,
    )
    last_error = (
        f"{history.last_error_type}: {history.last_error_message}"
        if history.last_error_type
        else None
    )
    return IntegrationHealth(
        organization_id=org,
        integration_id=iid,
        provider=integration.provider,
        name=integration.name,
        state=state,
        reasons=reasons,
        last_success_at=history.last_success_at,
        last_attempt_at=history.last_attempt_at,
        last_error=last_error,
        failure_streak=history.failure_streak,
        window=window,
        dead_letters=depth,
        inbox=inbox,
        thresholds=thresholds,
    )
