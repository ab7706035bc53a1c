"""The one Definitions object of the code location: it only assembles."""

import os

import dagster as dg

from sync_pipelines.defs.alert_sensors import ALERT_SENSORS
from sync_pipelines.defs.dead_letters import dead_letter_replay_sensor, replay_dead_letters
from sync_pipelines.defs.executors import executor_from_env
from sync_pipelines.defs.failure_sensors import run_failure_recorder
from sync_pipelines.defs.integration_checks import INTEGRATION_CHECKS, failed_or_stale_syncs_sensor
from sync_pipelines.defs.jobs import test_integration_connection
from sync_pipelines.defs.observed_sensors import observed_sensors
from sync_pipelines.defs.organization_sync import organization_sync_sensor, sync_organization
from sync_pipelines.defs.provider_assets import PROVIDER_DEFS
from sync_pipelines.defs.reports import REPORT_ASSETS, REPORT_JOBS, REPORT_SCHEDULES
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.retention import RETENTION_JOBS, RETENTION_SCHEDULES
from sync_pipelines.defs.schedules import POLL_SCHEDULES
from sync_pipelines.defs.sensors import integration_partitions_sensor
from sync_pipelines.defs.webhook_inbox import process_webhook_inbox, webhook_inbox_sensor
from sync_pipelines.observability.logging import configure_logging
from sync_pipelines.observability.otel import configure_tracing
from sync_pipelines.observability.sentry import configure_sentry

configure_logging()
configure_sentry()  # both no-ops unless SENTRY_DSN / an OTLP endpoint is set
configure_tracing()

defs = dg.Definitions(
    assets=[asset for p in PROVIDER_DEFS.values() for asset in p.assets] + REPORT_ASSETS,
    jobs=[job for p in PROVIDER_DEFS.values() for job in (p.sync_job, p.export_job)]
    + [test_integration_connection, replay_dead_letters, process_webhook_inbox, sync_organization]
    + RETENTION_JOBS
    + REPORT_JOBS,
    asset_checks=INTEGRATION_CHECKS,
    schedules=list(POLL_SCHEDULES.values()) + RETENTION_SCHEDULES + REPORT_SCHEDULES,
    sensors=observed_sensors(
        [
            integration_partitions_sensor,
            run_failure_recorder,
            dead_letter_replay_sensor,
            webhook_inbox_sensor,
            failed_or_stale_syncs_sensor,
            organization_sync_sensor,
        ]
        + ALERT_SENSORS
    ),
    resources={"store": SyncStoreResource()},
    executor=executor_from_env(os.environ),
)
