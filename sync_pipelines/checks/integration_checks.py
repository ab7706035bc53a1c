"""The checks every integration gets, in one list, and their evaluation: each check judges the
integration at `now` from the store; the outcomes are written to `integration_check_results`
(the store's record, read by the alert sensor) in the same transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from sync_pipelines.checks import (
    data_quality,
    dead_letters,
    health_check,
    inventory_volume,
    provider_calls,
    shape_drift,
    sync_outcomes,
)
from sync_pipelines.checks.context import CheckContext
from sync_pipelines.checks.outcome import CheckOutcome
from sync_pipelines.store.check_results import CheckResult, insert_check_results
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import Integration


@dataclass(frozen=True, slots=True)
class IntegrationCheck:
    name: str
    description: str
    evaluate: Callable[[CheckContext], CheckOutcome]


CHECKS: tuple[IntegrationCheck, ...] = (
    IntegrationCheck(
        health_check.INTEGRATION_HEALTH,
        "The integration's health (healthy / warning / degraded / unhealthy / unknown) with its "
        "reasons, as /health, the CLI, the console and the report show it: WARN when warning, "
        "ERROR when degraded or unhealthy. Raises no alert of its own: the check or signal under "
        "it does.",
        health_check.integration_health_check,
    ),
    IntegrationCheck(
        provider_calls.CALL_FAILURE_RATE,
        "Share of failed provider calls (failed and retried attempts) over the last window: WARN above "
        "`error_rate_warn` (5 %), ERROR above `error_rate_critical` (10 %); fewer than `min_calls` calls "
        "are not judged.",
        provider_calls.call_failure_rate_below_threshold,
    ),
    IntegrationCheck(
        provider_calls.CALL_FAILURE_TREND,
        "The current window's call failure rate against the `trend_windows` before it (two-proportion z-test, "
        "z >= `trend_z` and a rise of at least `trend_min_increase`): flags a significant worsening, "
        "not noise. WARN; ERROR when the current rate is also critical.",
        provider_calls.call_failure_rate_not_trending_up,
    ),
    IntegrationCheck(
        provider_calls.P95_LATENCY,
        "p95 latency of provider calls over the last window: WARN above `p95_latency_warn_ms` (2 s), "
        "ERROR above `p95_latency_critical_ms` (5 s).",
        provider_calls.p95_latency_below_threshold,
    ),
    IntegrationCheck(
        sync_outcomes.FRESHNESS,
        "The last successful sync is no older than `freshness_sla_s` (default: 3 poll intervals); "
        "ERROR when stale.",
        sync_outcomes.synced_within_freshness_sla,
    ),
    IntegrationCheck(
        sync_outcomes.FAILURE_STREAK,
        "Syncs failed in a row: WARN from `failure_streak_warn` (2), ERROR from "
        "`failure_streak_critical` (3).",
        sync_outcomes.failure_streak_below_threshold,
    ),
    IntegrationCheck(
        sync_outcomes.SYNCS_COMPLETE,
        "The newest sync of every stream stored all it fetched: WARN when one ended partial "
        "(records dead-lettered, telemetry gaps, messages the broker dropped) or the newest "
        "dead-letter replay or export failed or left letters failing.",
        sync_outcomes.last_syncs_complete,
    ),
    IntegrationCheck(
        dead_letters.DEAD_LETTERS,
        "Open (pending + retrying) dead letters: WARN from `dead_letters_warn` (1), ERROR from "
        "`dead_letters_critical` (100).",
        dead_letters.dead_letters_below_threshold,
    ),
    IntegrationCheck(
        inventory_volume.INVENTORY_VOLUME,
        "The newest good full inventory fetched at least `volume_drop_ratio` (50 %) of the one before: "
        "0 devices after thousands is an ERROR.",
        inventory_volume.inventory_volume_as_expected,
    ),
    IntegrationCheck(
        shape_drift.DEVICE_SHAPE_STABLE,
        "The shape of the devices' attributes and state (key paths and JSON types) is the one "
        "known: fails while a shape change a sync found is unacknowledged — WARN under "
        "`shape_drift_policy` alert, ERROR under pause; a change under ignore passes. Accept it "
        "with `sync-pipelines integrations accept-shape` (or `integrations enable` after a pause).",
        shape_drift.device_shape_stable,
    ),
    IntegrationCheck(
        data_quality.EXTERNAL_IDS_DISTINCT,
        "No two devices whose external ids differ only by case or spaces (ERROR).",
        data_quality.external_ids_distinct_ignoring_case,
    ),
    IntegrationCheck(
        data_quality.HARDWARE_IDS_UNIQUE,
        "No hardware id claimed by two devices of the integration (WARN).",
        data_quality.hardware_ids_claimed_once,
    ),
    IntegrationCheck(
        data_quality.REQUIRED_FIELDS,
        "Every device has a non-empty external id (else ERROR) and name (else WARN).",
        data_quality.required_fields_present,
    ),
)


def evaluate_integration(
    conn: Connection, integration: Integration, *, now: datetime
) -> list[CheckOutcome]:
    """Every check of CHECKS, in order. A ValueError names an unusable `monitoring` setting."""
    ctx = CheckContext.of(conn, integration, now=now)
    return [check.evaluate(ctx) for check in CHECKS]


def record_outcomes(
    conn: Connection,
    integration: Integration,
    outcomes: Sequence[CheckOutcome],
    *,
    run_id: str | None,
    now: datetime,
) -> list[CheckResult]:
    results = [
        CheckResult(
            organization_id=integration.organization_id,
            integration_id=integration.integration_id,
            provider=integration.provider,
            check_name=o.name,
            passed=o.passed,
            severity=o.severity,
            description=o.description,
            metadata=dict(o.metadata),
            run_id=run_id,
            created_at=now,
        )
        for o in outcomes
    ]
    insert_check_results(conn, results)
    return results


def check_integration(
    store: Store, integration: Integration, *, now: datetime, run_id: str | None
) -> list[CheckOutcome]:
    """Evaluate and record in one transaction: what the store says matches what was reported."""
    with store.scoped(integration.organization_id).transaction() as conn:
        outcomes = evaluate_integration(conn, integration, now=now)
        record_outcomes(conn, integration, outcomes, run_id=run_id, now=now)
    return outcomes
