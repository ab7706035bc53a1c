"""Sensors: keep each provider's dynamic partitions equal to its enabled integrations."""

import dagster as dg

from sync_pipelines.defs.observed_sensors import observed
from sync_pipelines.defs.partitions import PROVIDER_PARTITIONS
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.store.integrations import list_enabled_integrations


@dg.sensor(
    description="Adds a partition for every enabled integration and removes those of disabled or deleted ones.",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
@observed
def integration_partitions_sensor(
    context: dg.SensorEvaluationContext, store: SyncStoreResource
) -> dg.SensorResult:
    with store.get_store().connect() as conn:
        enabled = list_enabled_integrations(conn)
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    summary = []
    for provider, partitions in PROVIDER_PARTITIONS.items():
        wanted = {i.integration_id for i in enabled if i.provider == provider}
        current = set(context.instance.get_dynamic_partitions(partitions.name))
        added, removed = sorted(wanted - current), sorted(current - wanted)
        if added:
            requests.append(partitions.build_add_request(added))
        if removed:
            requests.append(partitions.build_delete_request(removed))
        if added or removed:
            summary.append(f"{provider}: +{len(added)} -{len(removed)}")
    if summary:
        context.log.info("integration partitions changed: " + "; ".join(summary))
    return dg.SensorResult(dynamic_partitions_requests=requests)
