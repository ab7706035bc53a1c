"""Golioth assets: the device inventory and device state of each Golioth integration."""


import dagster as dg

from sync_pipelines.defs.partitions import golioth_integrations
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.run_context import run_context_of
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.sync.session import integration_session

_COMMON = dict(
    partitions_def=golioth_integrations,
    group_name="golioth",
    kinds={"golioth", "python"},
    owners=["team:data-platform"],
)


@dg.asset(
    description=(
        "Devices of one Golioth integration (partition = integration id), imported page by page "
        "from the Golioth Management API into the `devices` table. Every HTTP call is an "
        "activity-log row; counts and error rate are plotted from this asset's metadata."
    ),
    **_COMMON,
)
def golioth_devices(context: dg.AssetExecutionContext, store: SyncStoreResource) -> dg.MaterializeResult:
    with integration_session(store.get_store(), context.partition_key, run_context_of(context)) as session:
        result = sync_devices(session)
    return dg.MaterializeResult(metadata=result.metadata())


@dg.asset(
    deps=[golioth_devices],
    description=(
        "Reported and desired LightDB State of every device of one Golioth integration, read "
        "with bounded concurrency into the `device_states` table."
    ),
    **_COMMON,
)
def golioth_device_states(context: dg.AssetExecutionContext, store: SyncStoreResource) -> dg.MaterializeResult:
    with integration_session(store.get_store(), context.partition_key, run_context_of(context)) as session:
        result = sync_device_states(session)
    return dg.MaterializeResult(metadata=result.metadata())


sync_golioth_integration = dg.define_asset_job(
    "sync_golioth_integration",
    selection=[golioth_devices, golioth_device_states],
    description="Import one Golioth integration's devices, then their state.",
    tags={"provider": "golioth"},
)
