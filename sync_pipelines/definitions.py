"""The one Definitions object of the code location: it only assembles."""

import dagster as dg

from sync_pipelines.defs.failure_sensors import run_failure_recorder
from sync_pipelines.defs.jobs import test_integration_connection
from sync_pipelines.defs.provider_assets import PROVIDER_DEFS
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.schedules import POLL_SCHEDULES
from sync_pipelines.defs.sensors import integration_partitions_sensor
from sync_pipelines.observability.logging import configure_logging

configure_logging()

defs = dg.Definitions(
    assets=[asset for p in PROVIDER_DEFS.values() for asset in p.assets],
    jobs=[job for p in PROVIDER_DEFS.values() for job in (p.sync_job, p.export_job)]
    + [test_integration_connection],
    schedules=list(POLL_SCHEDULES.values()),
    sensors=[integration_partitions_sensor, run_failure_recorder],
    resources={"store": SyncStoreResource()},
)
