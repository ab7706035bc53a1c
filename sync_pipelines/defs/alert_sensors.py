"""Alerts in Dagster: the sensors that evaluate the alert rules, turn failed asset checks into
incidents, resolve failed-run incidents when the job next succeeds, and send the heartbeat.

They start no runs: each tick does its (cheap) work and reports it as the tick's skip message.
A channel that fails is recorded in the alert history and logged, never raised into the tick.
Channels and cooldowns come from the environment (`alerts/settings.py`).
"""

from datetime import timedelta

import dagster as dg

from sync_pipelines.alerts.check_results import (
    CheckPosition,
    alert_on_check_result,
    check_results_after,
    position_of,
)
from sync_pipelines.alerts.evaluation import evaluate_alerts
from sync_pipelines.alerts.heartbeat import heartbeat_due, send_heartbeat
from sync_pipelines.alerts.incidents import clear_alert
from sync_pipelines.alerts.run_failures import run_failure_key
from sync_pipelines.alerts.settings import AlertSettings
from sync_pipelines.clock import utc_now
from sync_pipelines.defs.failure_sensors import integration_of
from sync_pipelines.defs.observed_sensors import observed
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.store.event_failures import SYSTEM_ORGANIZATION
from sync_pipelines.store.integrations import find_integration_owner

#: with no cursor yet (a new deployment), check results this recent are still alerted on
CHECK_LOOKBACK_S = 3600
CHECK_RESULTS_PER_TICK = 500


@dg.sensor(
    description="Every minute, evaluates the alert rules (error rate, provider API failures, "
    "failure streak, webhook processing delay, inbox backlog) for every enabled integration: "
    "opens, counts and resolves incidents and sends their notifications.",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
@observed
def alert_evaluation_sensor(
    context: dg.SensorEvaluationContext, store: SyncStoreResource
) -> dg.SkipReason:
    summary = evaluate_alerts(store.get_store(), AlertSettings.from_env())
    if summary.notified or summary.skipped:
        context.log.info(f"alerts: {summary.describe()}")
    return dg.SkipReason(summary.describe())


@dg.sensor(
    description="Turns new rows of integration_check_results into alerts: a failed asset check "
    "raises check_failed:<integration>:<check>, the check passing again resolves it. Cursor: "
    "the last row read (created_at, id).",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
@observed
def check_failure_alert_sensor(
    context: dg.SensorEvaluationContext, store: SyncStoreResource
) -> dg.SensorResult:
    settings, now = AlertSettings.from_env(), utc_now()
    sync_store = store.get_store()
    position = CheckPosition.from_cursor(context.cursor)
    with sync_store.connect() as conn:
        results = check_results_after(
            conn,
            position,
            since=now - timedelta(seconds=CHECK_LOOKBACK_S),
            limit=CHECK_RESULTS_PER_TICK,
        )
    if not results:
        return dg.SensorResult(skip_reason="no new check results", cursor=context.cursor)
    raised = resolved = 0
    failed_channels: set[str] = set()  # a dead channel is tried once per tick
    for result in results:
        outcome = alert_on_check_result(
            sync_store, result, settings, now=now, failed_channels=failed_channels
        )
        raised += not result.passed
        resolved += result.passed and outcome.incident is not None
    return dg.SensorResult(
        skip_reason=f"{len(results)} check result(s): {raised} failed, {resolved} incident(s) resolved",
        cursor=position_of(results[-1]).to_cursor(),
    )


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    description="Resolves the run_failed alert of a job and partition when a run of them succeeds.",
    monitor_all_code_locations=False,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
@observed
def run_success_alert_resolver(
    context: dg.RunStatusSensorContext, store: SyncStoreResource
) -> None:
    run = context.dagster_run
    sync_store = store.get_store()
    integration_id = integration_of(run)
    with sync_store.connect() as conn:
        owner = find_integration_owner(conn, integration_id) if integration_id else None
    outcome = clear_alert(
        sync_store,
        owner.organization_id if owner else SYSTEM_ORGANIZATION,
        run_failure_key(run.job_name, run.tags.get("dagster/partition")),
        AlertSettings.from_env(),
        now=utc_now(),
        reason=f"run {run.run_id} of {run.job_name} succeeded",
    )
    if outcome.incident is not None:
        context.log.info(f"resolved alert {outcome.incident.dedupe_key} ({outcome.incident.id})")


@dg.sensor(
    description="Sends the alert-path heartbeat to every configured channel when it is due "
    "(SYNC_ALERT_HEARTBEAT_INTERVAL_S); a failing channel is recorded and logged as an error, "
    "and alert_path_health reports it.",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
@observed
def alert_heartbeat_sensor(
    context: dg.SensorEvaluationContext, store: SyncStoreResource
) -> dg.SkipReason:
    settings, now = AlertSettings.from_env(), utc_now()
    if not settings.channels:
        return dg.SkipReason("no alert channel configured")
    sync_store = store.get_store()
    with sync_store.connect() as conn:
        due = heartbeat_due(conn, settings, now=now)
    if not due:
        return dg.SkipReason("heartbeat not due yet")
    deliveries = send_heartbeat(sync_store, settings, now=now)
    failed = [d for d in deliveries if not d.ok]
    for d in failed:
        context.log.error(f"alert heartbeat to channel {d.channel} failed: {d.error_message}")
    return dg.SkipReason(
        f"heartbeat sent to {len(deliveries) - len(failed)} of {len(deliveries)} channel(s)"
    )


ALERT_SENSORS = [
    alert_evaluation_sensor,
    check_failure_alert_sensor,
    run_success_alert_resolver,
    alert_heartbeat_sensor,
]
