"""Failed asset checks as alerts. A failed check does not fail its run, so nothing else would
tell anyone: each row of `integration_check_results` (sql/009, written by `store.check_results`)
is read once, in (created_at, id) order, and a failed one raises the incident
`check_failed:<integration>:<check>` while a passing one resolves it.

The scan's cursor is the last row read: a row committed later with an earlier created_at (a
check transaction slower than a sensor tick) is not read. Results are written in short
transactions as checks are evaluated, so that window is small; `alerts list` and the check
results themselves still show it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from sync_pipelines.alerts.incidents import AlertOutcome, clear_alert, raise_alert
from sync_pipelines.alerts.rules import CHECK_FAILED, CRITICAL, WARNING, Condition, dedupe_key
from sync_pipelines.alerts.settings import AlertSettings
from sync_pipelines.checks.health_check import INTEGRATION_HEALTH
from sync_pipelines.checks.provider_calls import CALL_FAILURE_RATE
from sync_pipelines.checks.shape_drift import DEVICE_SHAPE_STABLE
from sync_pipelines.checks.sync_outcomes import FAILURE_STREAK as FAILURE_STREAK_CHECK
from sync_pipelines.store.alerts import open_incident
from sync_pipelines.store.check_results import CheckResult
from sync_pipelines.store.check_results import check_results_after as stored_results_after
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import for_each_organization

#: checks whose failure another incident already carries, so one cause opens one incident: the
#: health model's verdict (a summary: the check or rule under it alerts), and the checks an alert
#: rule judges at the same thresholds from the same figures (rules.py: call_failure_rate, folded
#: into provider_api_failures when the provider is failing; failure_streak); and the shape check,
#: whose change the sync itself alerts as `shape_drift` under the integration's policy
NOT_ALERTED_CHECKS = frozenset(
    {INTEGRATION_HEALTH, CALL_FAILURE_RATE, FAILURE_STREAK_CHECK, DEVICE_SHAPE_STABLE}
)
#: Dagster's AssetCheckSeverity names → alert severities
_SEVERITIES = {"ERROR": CRITICAL, "WARN": WARNING}


@dataclass(frozen=True, slots=True)
class CheckPosition:
    """Where the scan is: the last row read, by (created_at, id). The sensor's cursor."""

    created_at: datetime
    id: str

    def to_cursor(self) -> str:
        return json.dumps({"created_at": self.created_at.isoformat(), "id": self.id})

    @classmethod
    def from_cursor(cls, cursor: str | None) -> CheckPosition | None:
        if not cursor:
            return None
        try:
            value = json.loads(cursor)
            return cls(datetime.fromisoformat(value["created_at"]), str(value["id"]))
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                f'check-result cursor {cursor!r} is not {{"created_at": ISO-8601, "id": ...}}; '
                "reset the sensor's cursor"
            ) from None


def position_of(result: CheckResult) -> CheckPosition:
    return CheckPosition(result.created_at, result.id)


def check_failure_key(result: CheckResult) -> str:
    return dedupe_key(CHECK_FAILED, f"{result.integration_id}:{result.check_name}")


def check_results_after(
    conn: Connection, after: CheckPosition | None, *, since: datetime, limit: int
) -> list[CheckResult]:
    """The sensor watches every organization's checks: the first `limit` rows of all of them,
    in (created_at, id) order, after `after`, or — with no position yet — created at or after
    `since`. Each organization's first `limit` are read in turn, then merged."""
    position = None if after is None else (after.created_at, after.id)
    found = [
        result
        for organization_id in for_each_organization(conn)
        for result in stored_results_after(
            conn, organization_id, since=since, after=position, limit=limit
        )
    ]
    return sorted(found, key=lambda r: (r.created_at, r.id))[:limit]


def condition_of(result: CheckResult) -> Condition:
    return Condition(
        organization_id=result.organization_id,
        integration_id=result.integration_id,
        rule=CHECK_FAILED,
        subject=f"{result.integration_id}:{result.check_name}",
        severity=_SEVERITIES.get(result.severity.upper(), WARNING),
        summary=f"asset check {result.check_name} failed: {result.description}",
        details={
            "check_name": result.check_name,
            "provider": result.provider,
            "check_severity": result.severity,
            "check_result_id": result.id,
            "metadata": result.metadata,
        },
        run_id=result.run_id,
    )


def alert_on_check_result(
    store: Store,
    result: CheckResult,
    settings: AlertSettings,
    *,
    now: datetime,
    failed_channels: set[str] | None = None,
) -> AlertOutcome:
    if result.check_name in NOT_ALERTED_CHECKS:
        return AlertOutcome(incident=None)
    if not result.passed:
        # a result is one sighting, however many evaluators read it (a sensor without a cursor
        # reads the last hour again, e.g. the daemon's first tick after the demo alerted in-process)
        with store.scoped(result.organization_id).connect() as conn:
            seen = open_incident(conn, result.organization_id, check_failure_key(result))
        if seen is not None and seen.details.get("check_result_id") == result.id:
            return AlertOutcome(incident=seen)
    if result.passed:
        return clear_alert(
            store,
            result.organization_id,
            check_failure_key(result),
            settings,
            now=now,
            reason=f"asset check {result.check_name} passed again",
            failed_channels=failed_channels,
        )
    return raise_alert(
        store, condition_of(result), settings, now=now, failed_channels=failed_channels
    )
