"""The one Definitions object of the code location: it only assembles."""

import dagster as dg

from sync_pipelines.defs.golioth import (
    golioth_device_states,
    golioth_devices,
    sync_golioth_integration,
)
from sync_pipelines.defs.jobs import test_integration_connection
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.schedules import golioth_poll_schedule
from sync_pipelines.defs.sensors import integration_partitions_sensor
from sync_pipelines.observability.logging import configure_logging

configure_logging()

defs = dg.Definitions(
    assets=[golioth_devices, golioth_device_states],
    jobs=[sync_golioth_integration, test_integration_connection],
    schedules=[golioth_poll_schedule],
    sensors=[integration_partitions_sensor],
    resources={"store": SyncStoreResource()},
)
