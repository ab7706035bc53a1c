"""Per-provider assets and jobs, built the same way for every registered provider.

For provider `p`: `p_devices` (inventory) → `p_device_states` (reported/desired) →
`p_desired_exports` (pushes of pending desired changes, with conflict detection), plus
`mqtt_telemetry` for providers that stream telemetry; each partitioned by integration, in the
group `p`, with a sync job (`sync_p_integration`) and an export job
(`export_p_desired_states`). Adding a provider adds its assets here without a code change.

Limits, the ways Dagster users expect them: every step that calls provider `p` takes a slot of
the concurrency pool `p` (limits in dagster.yaml / `dagster instance concurrency set`), every
run carries the tag `provider: p` (the run queue's per-provider limits, deploy/dagster.yaml) and,
being one partition, `dagster/partition` (one run per integration at a time). A backfill runs one
partition per run, so one integration's failure fails only its own run.

Every materialization carries Dagster's table metadata — `dagster/table_name`,
`dagster/column_schema`, `dagster/row_count` (the integration's rows in that table) — besides
the sync's own figures.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import dagster as dg

from sync_pipelines.defs.partitions import PROVIDER_PARTITIONS
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.retry import SYNC_RETRY_POLICY, fail_fast_unless_retryable
from sync_pipelines.defs.run_context import run_context_of
from sync_pipelines.defs.sentry_hooks import SENTRY_HOOKS
from sync_pipelines.store.integrations import DEFAULT_POLL_INTERVAL_S
from sync_pipelines.store.stream_tables import (
    DESIRED_CHANGES,
    DEVICE_STATES,
    DEVICE_TELEMETRY,
    DEVICES,
    STREAM_TABLES,
    StreamTable,
    count_integration_rows,
)
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.export import export_desired_states
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.sync.results import SyncResult
from sync_pipelines.sync.session import IntegrationSession, integration_session

#: how each provider is named and badged in the UI; an unlisted provider gets its own name
PROVIDER_LABELS = {
    "golioth": ("Golioth", "golioth"),
    "aws_iot": ("AWS IoT Core", "aws"),
    "azure_iot": ("Azure IoT Hub", "azure"),
    "mqtt": ("MQTT", "mqtt"),
}
#: providers that stream telemetry (Provider.supports_telemetry); read without importing
#: the provider modules, so loading the code location stays cheap
TELEMETRY_PROVIDERS = frozenset({"mqtt"})
#: a backfill launches one run per integration: a failing one holds back none of the others
ONE_PARTITION_PER_RUN = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)


def provider_pool(provider: str) -> str:
    """The concurrency pool every step calling `provider` draws a slot from."""
    return provider


@dataclass(frozen=True)
class ProviderDefs:
    provider: str
    devices: dg.AssetsDefinition
    device_states: dg.AssetsDefinition
    desired_exports: dg.AssetsDefinition
    telemetry: dg.AssetsDefinition | None
    sync_job: Any  # UnresolvedAssetJobDefinition (not exported by dagster)
    export_job: Any

    @property
    def assets(self) -> list[dg.AssetsDefinition]:
        extra = [self.telemetry] if self.telemetry is not None else []
        return [self.devices, self.device_states, self.desired_exports, *extra]

    @property
    def sync_assets(self) -> list[dg.AssetsDefinition]:
        """What one sync run materializes (export is its own job: it writes to the provider)."""
        extra = [self.telemetry] if self.telemetry is not None else []
        return [self.devices, self.device_states, *extra]


#: Dagster's freshness view of a polled asset, from the default poll interval: warn after two
#: polls without a materialization, fail after three (the freshness check's default SLA).
#: Dagster judges an asset, not a partition, so this says "some integration of the provider
#: synced lately"; each integration's own `synced_within_freshness_sla` check, on its partition
#: and with its own poll interval, stays the source of truth.
POLLED_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(seconds=3 * DEFAULT_POLL_INTERVAL_S),
    warn_window=timedelta(seconds=2 * DEFAULT_POLL_INTERVAL_S),
)


def build_provider_defs(provider: str) -> ProviderDefs:
    with warnings.catch_warnings():
        # `backfill_policy` is "beta" in dagster 1.13; we rely on it on purpose (one partition per
        # run), and its warning would print at every load of the code location
        warnings.filterwarnings(
            "ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning
        )
        return _build_provider_defs(provider)


def _build_provider_defs(provider: str) -> ProviderDefs:
    label, kind = PROVIDER_LABELS.get(provider, (provider, provider))
    common = dict(
        partitions_def=PROVIDER_PARTITIONS[provider],
        group_name=provider,
        kinds={kind, "python"},
        owners=["team:data-platform"],
        tags={"provider": provider},
        retry_policy=SYNC_RETRY_POLICY,
        pool=provider_pool(provider),
        backfill_policy=ONE_PARTITION_PER_RUN,
    )

    @dg.asset(
        name=f"{provider}_devices",
        freshness_policy=POLLED_FRESHNESS,
        metadata=table_definition_metadata(DEVICES),
        description=(
            f"Devices of one {label} integration (partition = integration id), streamed page by page "
            "into the `devices` table. Every provider call is an activity-log row; counts, record and "
            "call failure rates and p95 latency are in this asset's metadata and plotted over time."
        ),
        **common,
    )
    def devices(
        context: dg.AssetExecutionContext, store: SyncStoreResource
    ) -> dg.MaterializeResult:
        return _run_stream(context, store, sync_devices)

    @dg.asset(
        name=f"{provider}_device_states",
        freshness_policy=POLLED_FRESHNESS,
        metadata=table_definition_metadata(DEVICE_STATES),
        deps=[devices],
        description=(
            f"Reported and desired state (with the provider's version/etag) of every device of one "
            f"{label} integration, read with bounded concurrency into `device_states`."
        ),
        **common,
    )
    def device_states(
        context: dg.AssetExecutionContext, store: SyncStoreResource
    ) -> dg.MaterializeResult:
        return _run_stream(context, store, sync_device_states)

    @dg.asset(
        name=f"{provider}_desired_exports",
        metadata=table_definition_metadata(DESIRED_CHANGES),
        deps=[device_states],
        description=(
            f"Desired-state changes made on our side, pushed to {label} with optimistic concurrency. "
            "Conflicts (both sides changed since the last sync) are recorded in `sync_conflicts` and "
            "resolved by the integration's `conflict_resolution` (provider_wins by default)."
        ),
        **common,
    )
    def desired_exports(
        context: dg.AssetExecutionContext, store: SyncStoreResource
    ) -> dg.MaterializeResult:
        return _run_stream(context, store, export_desired_states)

    telemetry = (
        _telemetry_asset(provider, label, common) if provider in TELEMETRY_PROVIDERS else None
    )
    sync_selection = [devices, device_states] + ([telemetry] if telemetry is not None else [])
    return ProviderDefs(
        provider=provider,
        devices=devices,
        device_states=device_states,
        desired_exports=desired_exports,
        telemetry=telemetry,
        sync_job=dg.define_asset_job(
            f"sync_{provider}_integration",
            selection=sync_selection,
            description=f"Import one {label} integration: devices, then their state"
            + (", and drain its telemetry." if provider in TELEMETRY_PROVIDERS else "."),
            tags={"provider": provider},
            hooks=SENTRY_HOOKS,
        ),
        export_job=dg.define_asset_job(
            f"export_{provider}_desired_states",
            selection=[desired_exports],
            description=f"Push pending desired-state changes of one {label} integration.",
            tags={"provider": provider},
            hooks=SENTRY_HOOKS,
        ),
    )


def _telemetry_asset(provider: str, label: str, common: dict) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{provider}_telemetry",
        freshness_policy=POLLED_FRESHNESS,
        metadata=table_definition_metadata(DEVICE_TELEMETRY),
        description=(
            f"Telemetry of one {label} integration, drained from the broker's persistent session for "
            "a bounded window and appended to `device_telemetry` (deduplicated; acknowledged only after "
            "commit, so nothing is lost). Sequence gaps are reported, never silent."
        ),
        **common,
    )
    def telemetry(
        context: dg.AssetExecutionContext, store: SyncStoreResource
    ) -> dg.MaterializeResult:
        from sync_pipelines.sync.telemetry import sync_telemetry

        return _run_stream(context, store, sync_telemetry)

    return telemetry


def _run_stream(
    context: dg.AssetExecutionContext,
    store: SyncStoreResource,
    stream: Callable[[IntegrationSession], SyncResult],
) -> dg.MaterializeResult:
    """One stream for the partition's integration; its figures become the materialization's
    metadata. A non-retryable failure skips Dagster's retry policy."""
    sync_store = store.get_store()
    with (
        fail_fast_unless_retryable(),
        integration_session(sync_store, context.partition_key, run_context_of(context)) as session,
    ):
        result = stream(session)
    table = STREAM_TABLES[result.stream]
    with session.store.connect() as conn:
        rows = count_integration_rows(conn, table, result.organization_id, result.integration_id)
    return dg.MaterializeResult(metadata={**result.metadata(), **table_metadata(table, rows)})


def table_schema_of(table: StreamTable) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(c.name, c.type, description=c.description) for c in table.columns]
    )


#: Dagster's documented table metadata keys (what `TableMetadataSet` writes; that class is not
#: exported by `dagster` 1.13, only by its private modules)
TABLE_NAME_KEY = "dagster/table_name"
COLUMN_SCHEMA_KEY = "dagster/column_schema"
ROW_COUNT_KEY = "dagster/row_count"
PARTITION_ROW_COUNT_KEY = "dagster/partition_row_count"


def table_definition_metadata(table: StreamTable) -> dict[str, Any]:
    """What the catalogue shows before any materialization: the table and its columns."""
    return {TABLE_NAME_KEY: table.name, COLUMN_SCHEMA_KEY: table_schema_of(table)}


def table_metadata(table: StreamTable, integration_rows: int) -> dict[str, Any]:
    """Dagster's table metadata of one materialization. The partition is the integration, so its
    rows are both the partition's and, as far as this asset reports, the table's: the table holds
    other tenants' rows too, which no asset of one integration may count."""
    return {
        **table_definition_metadata(table),
        ROW_COUNT_KEY: integration_rows,
        PARTITION_ROW_COUNT_KEY: integration_rows,
    }


#: provider name -> its Dagster objects, for every registered provider
PROVIDER_DEFS: dict[str, ProviderDefs] = {p: build_provider_defs(p) for p in PROVIDER_PARTITIONS}
