"""Sensors on failure: every failed run is recorded in `event_failures`, exactly once, and raises
its alert incident (`run_failed:<job>:<partition>`) in the same transaction."""

import dagster as dg

from sync_pipelines.alerts.incidents import send_owed, sight
from sync_pipelines.alerts.run_failures import run_failure_condition
from sync_pipelines.alerts.settings import settings_or_store_only
from sync_pipelines.clock import utc_now
from sync_pipelines.defs.observed_sensors import observed
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.observability.redaction import redact_text
from sync_pipelines.store.database import use_organization
from sync_pipelines.store.event_failures import SYSTEM_ORGANIZATION, record_event_failure
from sync_pipelines.store.integrations import find_integration_owner
from sync_pipelines.store.migrations import ensure_migrated

_log = get_logger("defs.failure_sensors")
_WILL_RETRY = "dagster/will_retry"


@dg.run_failure_sensor(
    description=(
        "Records every failed run (job, partition, failed step, error and stack) in "
        "`event_failures`, once per run, and raises its alert; runs Dagster is about to retry "
        "are skipped."
    ),
    monitor_all_code_locations=False,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
@observed
def run_failure_recorder(context: dg.RunFailureSensorContext, store: SyncStoreResource) -> None:
    run = context.dagster_run
    if run.tags.get(_WILL_RETRY) == "true":
        context.log.info(
            f"run {run.run_id} will be retried by Dagster; not recorded as a failure yet"
        )
        return
    integration_id = integration_of(run)
    step_failures = context.get_step_failure_events()
    step_key = step_failures[0].step_key if step_failures else None
    error = step_failures[0].event_specific_data.error if step_failures else None
    if error is None and context.failure_event.event_specific_data is not None:
        error = getattr(context.failure_event.event_specific_data, "error", None)
    while error is not None and error.cause is not None and _wraps_the_real_error(error.cls_name):
        error = error.cause  # Dagster's "error occurred while executing op" wraps the real one
    message = error.message.strip() if error else (context.failure_event.message or "run failed")
    stack = "".join(error.stack) if error else None
    error_type = error.cls_name if error else None
    sync_store = store.get_store()
    ensure_migrated(sync_store)
    alert_settings, now, owed = settings_or_store_only(), utc_now(), None
    with sync_store.transaction() as conn:
        owner = find_integration_owner(conn, integration_id) if integration_id else None
        use_organization(conn, owner.organization_id if owner else SYSTEM_ORGANIZATION)
        failure = dict(
            organization_id=owner.organization_id if owner else SYSTEM_ORGANIZATION,
            # an id no integration has now (removed, or never one) is not keyed to anybody's:
            # the failure is the system's, the id stays in its partition key
            integration_id=owner.integration_id if owner else None,
            run_id=run.run_id,
            job_name=run.job_name,
            partition_key=run.tags.get("dagster/partition"),
            step_key=step_key,
            error_type=error_type,
            error_message=redact_text(message)[:4000],
        )
        new = record_event_failure(
            conn, **failure, error_stack=redact_text(stack) if stack else None
        )
        if new:  # a re-evaluated tick must not count the same run twice
            _incident, owed = sight(
                conn, run_failure_condition(**failure), now=now, settings=alert_settings
            )
    if new:
        _log.error(
            "run_failed",
            run_id=run.run_id,
            job=run.job_name,
            step=step_key,
            integration_id=integration_id,
            error={"type": error_type, "message": redact_text(message)},
        )
    if owed is not None:  # a channel failure is recorded in the alert history, never raised
        send_owed(sync_store, owed, alert_settings, now=now)


def _wraps_the_real_error(cls_name: str) -> bool:
    # Dagster's own wrappers, and the dg.Failure that defs.retry raises from a taxonomy error
    return cls_name.startswith("Dagster") or cls_name == "Failure"


def integration_of(run: dg.DagsterRun) -> str | None:
    """The integration a run worked on: its partition, or the `integration_id` in its config."""
    partition = run.tags.get("dagster/partition")
    if partition:
        return partition
    for op_config in (run.run_config or {}).get("ops", {}).values():
        config = op_config.get("config") if isinstance(op_config, dict) else None
        if isinstance(config, dict) and config.get("integration_id"):
            return str(config["integration_id"])
    return None
