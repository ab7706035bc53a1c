"""The checks in Dagster: in a provider's sync job (as the code location assembles it) they run
after the devices step for the run's integration, report every evaluation under its partition
with numeric metadata, and write them to the store with the run id; a failed sync is judged by
`failed_or_stale_syncs_sensor` instead, without a run."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from sync_pipelines.checks.integration_checks import CHECKS
from sync_pipelines.defs.integration_checks import INTEGRATION_CHECKS, failed_or_stale_syncs_sensor
from sync_pipelines.defs.partitions import golioth_integrations
from sync_pipelines.defs.provider_assets import PROVIDER_DEFS
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.store.check_results import check_results
from sync_pipelines.store.sync_state import start_sync_log, sync_log_rows

CHECK_NAMES = [c.name for c in CHECKS]
DEVICES = dg.AssetKey("golioth_devices")
EVALUATED = {AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED}


@pytest.fixture(scope="module")
def module_instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def instance(module_instance) -> dg.DagsterInstance:
    module_instance.wipe()
    return module_instance


def _defs(store) -> dg.Definitions:
    """The code location's assets and jobs with the checks added, as definitions.py will."""
    return dg.Definitions(
        assets=[a for p in PROVIDER_DEFS.values() for a in p.assets],
        asset_checks=INTEGRATION_CHECKS,
        jobs=[j for p in PROVIDER_DEFS.values() for j in (p.sync_job, p.export_job)],
        sensors=[failed_or_stale_syncs_sensor],
        resources={"store": SyncStoreResource(database_url=store.url)},
    )


def _sync(store, instance, integration_id: str) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions(golioth_integrations.name, [integration_id])
    job = _defs(store).resolve_job_def("sync_golioth_integration")
    return job.execute_in_process(
        partition_key=integration_id, instance=instance, raise_on_error=False
    )


def _tick_as_the_daemon(store, instance) -> dg.SensorResult | dg.SkipReason:
    """Evaluate the sensor, then store what it returns the way Dagster's sensor daemon does
    (dagster/_daemon/sensor.py: each of `asset_events` through `report_runless_asset_event`)."""
    resources = {"store": SyncStoreResource(database_url=store.url)}
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        tick = failed_or_stale_syncs_sensor(context)
    for event in tick.asset_events if isinstance(tick, dg.SensorResult) else []:
        instance.report_runless_asset_event(event)
    return tick


def _latest_evaluations(instance, partition: str) -> dict[str, dg.AssetCheckEvaluation]:
    """Check name -> the partition's latest evaluation, as Dagster reads it back."""
    keys = [dg.AssetCheckKey(DEVICES, name) for name in CHECK_NAMES]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        keys, partition_filter=PartitionKeyFilter(key=partition)
    )
    return {k.name: r.event.dagster_event.event_specific_data for k, r in latest.items()}


def test_every_sync_job_includes_its_providers_checks(store):
    defs = _defs(store)
    dg.Definitions.validate_loadable(defs)
    for provider in PROVIDER_DEFS:
        job = defs.resolve_job_def(f"sync_{provider}_integration")
        keys = job.asset_layer.asset_graph.asset_check_keys
        assert {k.name for k in keys if k.asset_key == dg.AssetKey(f"{provider}_devices")} == set(
            CHECK_NAMES
        )


def test_a_sync_run_evaluates_its_integration_with_metadata_and_records_it(
    store, instance, golioth_factory, register_golioth
):
    integ = register_golioth(store, golioth_factory(device_count=30), per_page=10)
    result = _sync(store, instance, integ.integration_id)
    assert result.success
    started = [e.step_key for e in result.all_events if e.event_type_value == "STEP_START"]
    assert started.index("golioth_integration_checks") > started.index("golioth_devices")
    evaluations = result.get_asset_check_evaluations()
    assert sorted(e.check_name for e in evaluations) == sorted(CHECK_NAMES)
    assert all(e.asset_key == DEVICES and e.partition == integ.integration_id for e in evaluations)
    assert all(e.passed for e in evaluations), [e.description for e in evaluations if not e.passed]
    by_name = {e.check_name: e for e in evaluations}
    assert by_name["required_fields_present"].metadata["devices"].value == 30
    assert (
        by_name["call_failure_rate_below_threshold"].metadata["calls"].value >= 3
    )  # the listing's pages
    assert isinstance(by_name["synced_within_freshness_sla"].metadata["age_s"].value, float)
    with store.connect() as conn:
        rows = check_results(conn, integ.organization_id, integration_id=integ.integration_id)
    assert sorted(r.check_name for r in rows) == sorted(CHECK_NAMES)
    assert {r.run_id for r in rows} == {result.run_id}


def test_a_failed_sync_skips_the_run_checks_and_the_sensor_judges_it_once(
    store, instance, golioth_factory, register_golioth
):
    running = golioth_factory(device_count=5)
    integ = register_golioth(store, running)
    running.emulator.add_faults({"kind": "auth_failure"})
    for _ in range(2):  # two failed syncs in a row: a WARN streak
        result = _sync(store, instance, integ.integration_id)
        assert not result.success and result.get_asset_check_evaluations() == []
    tick = _tick_as_the_daemon(store, instance)
    assert "evaluated 1 integration(s)" in tick.skip_message
    events = _latest_evaluations(instance, integ.integration_id)
    assert set(events) == set(CHECK_NAMES)
    streak = events["failure_streak_below_threshold"]
    assert (streak.passed, streak.severity, streak.partition) == (
        False,
        dg.AssetCheckSeverity.WARN,
        integ.integration_id,
    )
    assert streak.metadata["streak"].value == 2
    with store.connect() as conn:
        failed = check_results(conn, integ.organization_id, failed_only=True)
    assert [(r.check_name, r.run_id) for r in failed] == [
        ("integration_health", None),  # the health model's verdict: degraded by the streak
        ("failure_streak_below_threshold", None),
    ]
    assert failed[0].severity == "ERROR" and "2 syncs failed in a row" in failed[0].description
    tick = _tick_as_the_daemon(store, instance)  # judged already: nothing new
    assert tick.skip_message.startswith("no integration")
    assert _latest_evaluations(instance, integ.integration_id) == events


def test_the_sensor_closes_a_sync_whose_process_died_and_judges_it_as_a_failure(
    store, instance, golioth, register_golioth
):
    integ = register_golioth(store, golioth)
    assert _sync(store, instance, integ.integration_id).success
    with store.transaction() as conn:  # a later sync whose process died: no lease, `running`
        dead = start_sync_log(
            conn, integ.organization_id, integ.integration_id, "devices", "run-killed", None
        )
    tick = _tick_as_the_daemon(store, instance)
    with store.connect() as conn:
        rows = {
            r["id"]: r for r in sync_log_rows(conn, integ.organization_id, integ.integration_id)
        }
    assert rows[dead]["status"] == "abandoned"
    assert "running" not in {r["status"] for r in rows.values()}
    assert "evaluated 1 integration(s)" in tick.skip_message  # the abandoned sync made them due
    streak = _latest_evaluations(instance, integ.integration_id)["failure_streak_below_threshold"]
    assert streak.metadata["streak"].value == 1


def test_a_partition_judged_outside_runs_again_and_again_keeps_every_evaluation(
    store, instance, golioth_factory, register_golioth
):
    # Dagster 1.13 stores a runless evaluation under run id "" and keys check executions by
    # (asset, check, run id, partition) UNIQUE: a partition's second runless evaluation used to
    # fail the tick with `UNIQUE constraint failed: asset_check_executions...`.
    running = golioth_factory(device_count=5)
    integ = register_golioth(store, running)
    running.emulator.add_faults({"kind": "auth_failure"})
    for _ in range(2):  # each failed sync makes the integration due again
        assert not _sync(store, instance, integ.integration_id).success
        _tick_as_the_daemon(store, instance)
    streak_key = dg.AssetCheckKey(DEVICES, "failure_streak_below_threshold")
    history = instance.event_log_storage.get_asset_check_execution_history(
        streak_key,
        limit=10,
        status=EVALUATED,  # the failed runs' planned executions, never evaluated, left out
        partition_filter=PartitionKeyFilter(key=integ.integration_id),
    )
    streaks = [r.event.dagster_event.event_specific_data.metadata["streak"].value for r in history]
    assert streaks == [2, 1]  # newest first: both evaluations kept
    assert len({r.run_id for r in history}) == 2  # each evaluation its own execution
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [streak_key], partition_filter=PartitionKeyFilter(key=integ.integration_id)
    )[streak_key]
    assert latest.id == history[0].id
    assert latest.status == AssetCheckExecutionRecordStatus.FAILED
