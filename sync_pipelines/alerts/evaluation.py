"""One evaluation pass: judge every enabled integration's figures against its thresholds, open or
count the incidents of the conditions that hold, resolve those that cleared, send what is owed.

This is a system-level scan across tenants (the alert sensor runs for the whole deployment):
the enabled integrations and the open incidents of the evaluated rules are read for every
organization at once; everything after is done with the organization each row carries.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.alerts.incidents import AlertOutcome, clear_alert, raise_alert
from sync_pipelines.alerts.provider_failures import provider_failed_calls
from sync_pipelines.alerts.rules import (
    EVALUATED_RULES,
    IntegrationFigures,
    Judgement,
    judge_integration,
)
from sync_pipelines.alerts.settings import AlertSettings
from sync_pipelines.clock import utc_now
from sync_pipelines.monitoring.integration_stats import call_window, inbox_backlog, sync_history
from sync_pipelines.monitoring.thresholds import Thresholds
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.store.alerts import open_incidents_for_rules
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import (
    Integration,
    for_each_organization,
    list_enabled_integrations,
)

_log = get_logger("alerts.evaluation")


@dataclass(slots=True)
class EvaluationSummary:
    integrations: int = 0
    #: conditions that hold right now (open incidents seen this pass)
    active: int = 0
    resolved: int = 0
    #: notifications sent or attempted this pass, by kind (firing, repeat, resolved)
    notified: Counter[str] = field(default_factory=Counter)
    deliveries_failed: int = 0
    #: integrations left out, with why (an invalid `monitoring` setting)
    skipped: dict[str, str] = field(default_factory=dict)

    def add(self, outcome: AlertOutcome) -> None:
        if outcome.kind:
            self.notified[outcome.kind] += 1
        self.deliveries_failed += sum(1 for d in outcome.deliveries if not d.ok)

    def as_json(self) -> dict[str, Any]:
        return {
            "integrations": self.integrations,
            "active": self.active,
            "resolved": self.resolved,
            "notified": dict(self.notified),
            "deliveries_failed": self.deliveries_failed,
            "skipped": self.skipped,
        }

    def describe(self) -> str:
        notified = ", ".join(f"{n} {k}" for k, n in sorted(self.notified.items())) or "none"
        text = (
            f"{self.integrations} integration(s) evaluated: {self.active} active condition(s), "
            f"{self.resolved} resolved; notifications: {notified}"
        )
        if self.deliveries_failed:
            text += f" ({self.deliveries_failed} deliveries failed)"
        if self.skipped:
            text += f"; skipped: {', '.join(sorted(self.skipped))}"
        return text


def evaluate_alerts(
    store: Store, settings: AlertSettings, *, now: datetime | None = None
) -> EvaluationSummary:
    with store.connect() as conn:
        integrations = list_enabled_integrations(conn)
        open_incidents = [
            incident
            for organization_id in for_each_organization(conn)
            for incident in open_incidents_for_rules(conn, organization_id, EVALUATED_RULES)
        ]
    run = _Pass(
        store,
        settings,
        now or utc_now(),
        {(i.organization_id, i.dedupe_key) for i in open_incidents},
    )
    judged: set[tuple[str, str | None]] = set()
    for integration in integrations:
        try:
            thresholds = Thresholds.from_settings(integration.settings)
        except ValueError as exc:
            run.summary.skipped[integration.integration_id] = str(exc)
            _log.error(
                "alert_thresholds_invalid",
                organization_id=integration.organization_id,
                integration_id=integration.integration_id,
                error={"type": "ValueError", "message": str(exc)},
            )
            continue
        with store.scoped(integration.organization_id).connect() as conn:
            figures = read_figures(conn, integration, thresholds, run.now)
        judged.add((integration.organization_id, integration.integration_id))
        run.summary.integrations += 1
        run.apply(integration.organization_id, judge_integration(integration, figures, thresholds))
    # incidents of integrations no longer judged (disabled, removed) would stay open forever
    for incident in open_incidents:
        key = (incident.organization_id, incident.integration_id)
        if key not in judged and incident.integration_id not in run.summary.skipped:
            run.resolve(
                incident.organization_id,
                incident.dedupe_key,
                "the integration is disabled or was removed",
            )
    return run.summary


def read_figures(
    conn: Connection, integration: Integration, thresholds: Thresholds, now: datetime
) -> IntegrationFigures:
    org, iid = integration.organization_id, integration.integration_id
    start = now - timedelta(seconds=thresholds.window_s)
    return IntegrationFigures(
        window=call_window(conn, org, iid, start, now, with_latency=False),
        provider_failed=provider_failed_calls(conn, org, iid, start, now),
        history=sync_history(conn, org, iid, now=now, stale_running_s=thresholds.stale_running_s),
        inbox=inbox_backlog(conn, org, iid, now=now),
    )


@dataclass(slots=True)
class _Pass:
    """One evaluation's state: what was open when it started, what it did, and the channels
    that already failed in it (tried once per pass: see notify.send_message)."""

    store: Store
    settings: AlertSettings
    now: datetime
    open_keys: set[tuple[str, str]]
    summary: EvaluationSummary = field(default_factory=EvaluationSummary)
    failed_channels: set[str] = field(default_factory=set)

    def apply(self, organization_id: str, judgement: Judgement) -> None:
        for condition in judgement.active:
            self.summary.active += 1
            self.summary.add(
                raise_alert(
                    self.store,
                    condition,
                    self.settings,
                    now=self.now,
                    failed_channels=self.failed_channels,
                )
            )
        for key in sorted(judgement.clear):
            if (organization_id, key) in self.open_keys:  # nothing open: no write
                self.resolve(organization_id, key, "the condition cleared")

    def resolve(self, organization_id: str, key: str, reason: str) -> None:
        outcome = clear_alert(
            self.store,
            organization_id,
            key,
            self.settings,
            now=self.now,
            reason=reason,
            failed_channels=self.failed_channels,
        )
        self.summary.resolved += outcome.incident is not None
        self.summary.add(outcome)
