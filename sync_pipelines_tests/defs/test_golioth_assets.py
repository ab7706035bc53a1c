"""The Golioth assets materialized in-process by Dagster, partition = integration id, against
the real emulator, on SQLite and PostgreSQL."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipelines.defs.partitions import golioth_integrations
from sync_pipelines.defs.provider_assets import PROVIDER_DEFS
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.devices import count_device_states, get_device
from sync_pipelines.store.stream_tables import (
    DESIRED_CHANGES,
    DEVICE_STATES,
    DEVICE_TELEMETRY,
    DEVICES,
)

golioth_devices = PROVIDER_DEFS["golioth"].devices
golioth_device_states = PROVIDER_DEFS["golioth"].device_states

DEVICE_COUNT = 30
FIGURES = (
    "fetched",
    "created",
    "updated",
    "unchanged",
    "failed",
    "record_failure_rate",
    "duration_s",
    "p95_latency_ms",
)


@pytest.fixture
def small_golioth(golioth_factory):
    """A small inventory: three pages at per_page=10, so paging is still exercised."""
    return golioth_factory(device_count=DEVICE_COUNT)


def _materialize(store, instance, integration_id: str) -> dg.ExecuteInJobResult:
    instance.add_dynamic_partitions(golioth_integrations.name, [integration_id])
    return dg.materialize(
        [golioth_devices, golioth_device_states],
        partition_key=integration_id,
        instance=instance,
        resources={"store": SyncStoreResource(database_url=store.url)},
        raise_on_error=False,
    )


def _latest_metadata(instance, asset: str, partition: str) -> dict[str, object]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    assert records, f"no materialization of {asset} for partition {partition}"
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def _stored_device_ids(store, integ) -> set[str]:
    with store.connect() as conn:
        return set(
            conn.execute(
                sa.text(
                    "SELECT external_id FROM devices WHERE organization_id = :o AND integration_id = :i"
                ),
                {"o": integ.organization_id, "i": integ.integration_id},
            ).scalars()
        )


def test_materializing_both_assets_succeeds_and_stores_the_emulator_inventory(
    store, instance, small_golioth, register_golioth
):
    integ = register_golioth(store, small_golioth, per_page=10)
    result = _materialize(store, instance, integ.integration_id)
    assert result.success
    assert _stored_device_ids(store, integ) == set(small_golioth.emulator.device_ids())
    with store.connect() as conn:
        assert (
            count_device_states(conn, integ.organization_id, integ.integration_id) == DEVICE_COUNT
        )


@pytest.mark.parametrize("asset", ["golioth_devices", "golioth_device_states"])
def test_materialization_metadata_carries_numeric_sync_figures(
    store, instance, small_golioth, register_golioth, asset
):
    integ = register_golioth(store, small_golioth, per_page=10)
    assert _materialize(store, instance, integ.integration_id).success
    metadata = _latest_metadata(instance, asset, integ.integration_id)
    figures = FIGURES
    if asset == "golioth_device_states":
        # the states came with the device list the devices step read, in this same run: this
        # step made no call, so it has no latency to report
        assert metadata["http_requests"] == 0 and "p95_latency_ms" not in metadata
        figures = tuple(f for f in FIGURES if f != "p95_latency_ms")
    for figure in figures:
        assert isinstance(metadata.get(figure), int | float) and not isinstance(
            metadata[figure], bool
        ), figure
    assert (metadata["fetched"], metadata["created"], metadata["failed"]) == (
        DEVICE_COUNT,
        DEVICE_COUNT,
        0,
    )
    assert metadata["record_failure_rate"] == 0


@pytest.mark.parametrize(
    ("asset", "table"), [("golioth_devices", DEVICES), ("golioth_device_states", DEVICE_STATES)]
)
def test_materializations_carry_dagsters_table_metadata_scoped_to_the_integration(
    store, instance, small_golioth, register_golioth, asset, table
):
    integ = register_golioth(store, small_golioth, per_page=10)
    other = register_golioth(
        store, small_golioth, organization_id="org-b", integration_id="golioth-b"
    )
    assert _materialize(store, instance, other.integration_id).success
    assert _materialize(store, instance, integ.integration_id).success

    metadata = _latest_metadata(instance, asset, integ.integration_id)

    assert metadata["dagster/table_name"] == table.name
    # the other organization's rows in the same table are not counted
    assert metadata["dagster/row_count"] == DEVICE_COUNT
    assert metadata["dagster/partition_row_count"] == DEVICE_COUNT
    schema = metadata["dagster/column_schema"]
    assert isinstance(schema, dg.TableSchema)
    assert tuple(c.name for c in schema.columns) == table.column_names
    assert metadata["fetched"] == DEVICE_COUNT  # the sync's own figures are still there


def test_the_catalogue_shows_each_sync_assets_table_before_any_materialization():
    for asset, table in (
        (golioth_devices, DEVICES),
        (golioth_device_states, DEVICE_STATES),
        (PROVIDER_DEFS["golioth"].desired_exports, DESIRED_CHANGES),
        (PROVIDER_DEFS["mqtt"].telemetry, DEVICE_TELEMETRY),
    ):
        spec = next(iter(asset.specs))
        assert spec.metadata["dagster/table_name"] == table.name
        columns = spec.metadata["dagster/column_schema"].columns
        assert tuple(c.name for c in columns) == table.column_names


def test_activity_rows_carry_the_dagster_run_id_and_step_key(
    store, instance, small_golioth, register_golioth
):
    integ = register_golioth(store, small_golioth, per_page=10)
    result = _materialize(store, instance, integ.integration_id)
    with store.connect() as conn:
        rows = activity_rows(conn, integ.organization_id, run_id=result.run_id)
    devices_rows = [r for r in rows if r["step_key"] == "golioth_devices"]
    assert {r["activity_type"] for r in devices_rows} == {"import", "http_request"}
    assert {r["step_key"] for r in rows} == {"golioth_devices", "golioth_device_states"}
    # the keys Dagster's own event log uses for those steps
    assert {r["step_key"] for r in rows} == {e.step_key for e in result.get_step_success_events()}
    (op,) = [r for r in devices_rows if r["activity_type"] == "import"]
    assert op["status"] == "success"


def test_stored_devices_name_the_dagster_run_that_wrote_them(
    store, instance, small_golioth, register_golioth
):
    integ = register_golioth(store, small_golioth, per_page=10)
    result = _materialize(store, instance, integ.integration_id)
    with store.connect() as conn:
        device = get_device(
            conn,
            integ.organization_id,
            integ.integration_id,
            next(small_golioth.emulator.device_ids()),
        )
    assert device["last_run_id"] == result.run_id


def test_rejected_credentials_fail_the_run_and_leave_a_failed_import_row(
    store, instance, small_golioth, register_golioth
):
    integ = register_golioth(store, small_golioth)
    small_golioth.emulator.add_faults({"kind": "auth_failure"})
    result = _materialize(store, instance, integ.integration_id)
    assert not result.success
    with store.connect() as conn:
        (op,) = activity_rows(
            conn, integ.organization_id, run_id=result.run_id, activity_type="import"
        )
    assert op["status"] == "failed"
    assert op["step_key"] == "golioth_devices"
    assert "401" in op["error_message"]
    assert _stored_device_ids(store, integ) == set()


def test_a_poison_record_leaves_the_run_successful_with_one_failed_record(
    store, instance, small_golioth, register_golioth
):
    integ = register_golioth(store, small_golioth, per_page=10)
    small_golioth.emulator.add_faults({"kind": "poison_record", "device_index": 3})
    result = _materialize(store, instance, integ.integration_id)
    assert result.success
    metadata = _latest_metadata(instance, "golioth_devices", integ.integration_id)
    assert (metadata["fetched"], metadata["created"], metadata["failed"]) == (
        DEVICE_COUNT,
        DEVICE_COUNT - 1,
        1,
    )
    assert metadata["record_failure_rate"] == pytest.approx(1 / DEVICE_COUNT, abs=1e-6)
