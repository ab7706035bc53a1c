"""A poll schedule never starts a second sync of an integration whose sync is still queued or
running (a run held by the queued run coordinator past a poll interval), says so in its skip
reason, and polls the integration again once that run has finished — or once the store knows
its sync dead (a run whose worker died stays STARTED: the default run launcher has no health
check). The runs are real runs of the sync job in a test instance with production's
QueuedRunCoordinator; a queued one got there through the coordinator's own submit."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.definitions.repository_definition import SINGLETON_REPOSITORY_NAME
from dagster._core.remote_origin import (
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.run_coordinator import SubmitRunContext
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from sync_pipelines.clock import utc_now
from sync_pipelines.definitions import defs
from sync_pipelines.defs.integration_checks import failed_or_stale_syncs_sensor
from sync_pipelines.defs.provider_assets import PROVIDER_DEFS
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.schedules import golioth_poll_schedule
from sync_pipelines.store.integrations import Integration, ensure_organization, save_integration
from sync_pipelines.store.sync_leases import LeaseHolder, take_lease
from sync_pipelines.store.sync_state import start_sync_log, sync_log_rows
from sync_pipelines.sync.stream_lease import close_abandoned_syncs

PARTITIONS = "golioth_integrations"
TICK = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
SYNC_JOB = PROVIDER_DEFS["golioth"].sync_job.name
EXPORT_JOB = PROVIDER_DEFS["golioth"].export_job.name
#: the code location as workspace.yaml declares it (a queued run must name where it comes from)
CODE_LOCATION = ManagedGrpcPythonEnvCodeLocationOrigin(
    LoadableTargetOrigin(executable_path=sys.executable, module_name="sync_pipelines.definitions"),
    location_name="sync_pipelines",
)


@pytest.fixture(scope="module")
def module_instance() -> Iterator[dg.DagsterInstance]:
    """The run coordinator of deploy/dagster.yaml: submitted runs wait in QUEUED."""
    overrides = {"run_coordinator": {"module": "dagster", "class": "QueuedRunCoordinator"}}
    with dg.instance_for_test(overrides=overrides) as instance:
        yield instance


@pytest.fixture
def due(sqlite_store, instance):
    """golioth-a and golioth-b: enabled, never synced (so due), with their partitions."""
    for integration_id in ("golioth-a", "golioth-b"):
        with sqlite_store.transaction() as conn:
            ensure_organization(conn, "org-a")
            save_integration(
                conn,
                Integration(
                    integration_id=integration_id,
                    organization_id="org-a",
                    provider="golioth",
                    name=integration_id,
                    settings={"base_url": "http://127.0.0.1:9", "project_id": "p"},
                    secret_refs={"api_key": "UNUSED_KEY_ENV"},
                ),
            )
    instance.add_dynamic_partitions(PARTITIONS, ["golioth-a", "golioth-b"])
    return sqlite_store


def _run_of(
    instance: dg.DagsterInstance, integration_id: str, status: dg.DagsterRunStatus, job=SYNC_JOB
) -> dg.DagsterRun:
    """A run of `job` for the integration's partition in `status`, tagged as Dagster tags a
    launched partition run (the job's tags plus `dagster/partition`)."""
    job_def = defs.resolve_job_def(job)
    tags = {
        **job_def.run_tags,
        **job_def.get_tags_for_partition_key(integration_id, selected_asset_keys=None),
    }
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(CODE_LOCATION, SINGLETON_REPOSITORY_NAME), job)
    if status != dg.DagsterRunStatus.QUEUED:
        return instance.create_run_for_job(
            job_def, tags=tags, status=status, remote_job_origin=origin
        )
    run = instance.create_run_for_job(job_def, tags=tags, remote_job_origin=origin)
    # workspace is only read for request headers, which a programmatic submit has none of
    queued = instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))
    assert queued.status == dg.DagsterRunStatus.QUEUED
    return queued


def _tick(store, instance):
    with dg.build_schedule_context(
        instance=instance,
        resources={"store": SyncStoreResource(database_url=store.url)},
        scheduled_execution_time=TICK,
    ) as context:
        return golioth_poll_schedule(context)


def _requested(result) -> list[str]:
    assert isinstance(result, list), f"expected run requests, got {result!r}"
    return [request.partition_key for request in result]


def test_an_integration_with_a_queued_sync_is_not_requested_but_the_others_due_are(due, instance):
    _run_of(instance, "golioth-a", dg.DagsterRunStatus.QUEUED)
    assert _requested(_tick(due, instance)) == ["golioth-b"]


@pytest.mark.parametrize(
    "status",
    [
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
    ],
)
def test_a_sync_not_started_starting_or_running_also_holds_its_integration(due, instance, status):
    _run_of(instance, "golioth-a", status)
    assert _requested(_tick(due, instance)) == ["golioth-b"]


def test_the_skip_reason_names_the_integrations_whose_sync_is_in_flight(due, instance):
    _run_of(instance, "golioth-a", dg.DagsterRunStatus.QUEUED)
    _run_of(instance, "golioth-b", dg.DagsterRunStatus.STARTED)
    result = _tick(due, instance)
    assert isinstance(result, dg.SkipReason)
    assert result.skip_message == (
        "no Golioth integration to start "
        "(due, but a sync is still queued or running: golioth-a, golioth-b)"
    )


def test_a_queued_run_of_another_job_for_the_partition_does_not_hold_the_poll(due, instance):
    _run_of(instance, "golioth-a", dg.DagsterRunStatus.QUEUED, job=EXPORT_JOB)
    assert _requested(_tick(due, instance)) == ["golioth-a", "golioth-b"]


def test_a_failed_queued_sync_lets_the_integration_be_polled_again(due, instance):
    run = _run_of(instance, "golioth-a", dg.DagsterRunStatus.QUEUED)
    assert _requested(_tick(due, instance)) == ["golioth-b"]

    instance.report_run_failed(run, message="worker lost")

    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    assert _requested(_tick(due, instance)) == ["golioth-a", "golioth-b"]


def test_a_succeeded_sync_lets_the_integration_be_polled_again_when_due(due, instance):
    run = _run_of(instance, "golioth-a", dg.DagsterRunStatus.STARTED)
    assert _requested(_tick(due, instance)) == ["golioth-b"]

    instance.report_dagster_event(
        dg.DagsterEvent(event_type_value=dg.DagsterEventType.RUN_SUCCESS.value, job_name=SYNC_JOB),
        run_id=run.run_id,
    )

    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
    # no sync log row was written, so golioth-a is still due: it is requested again
    assert _requested(_tick(due, instance)) == ["golioth-a", "golioth-b"]


def _syncing(store, run: dg.DagsterRun, *, renewed_ago: timedelta, ttl_s: float = 120) -> None:
    """The run's devices sync as its worker left it: started ten minutes ago (two poll intervals:
    golioth-a is due again), its lease held in the run's name (on another host, so nobody can see
    its process) and last renewed `renewed_ago`."""
    with store.transaction() as conn:
        sync_id = start_sync_log(conn, "org-a", "golioth-a", "devices", run.run_id, None)
        conn.execute(
            sa.text("UPDATE integration_sync_log SET started_at = :t WHERE id = :id"),
            {"t": utc_now() - timedelta(minutes=10), "id": sync_id},
        )
        holder = LeaseHolder(run_id=run.run_id, host="worker-7", pid=4242, process="1")
        took = take_lease(
            conn,
            "org-a",
            "golioth-a",
            "devices",
            holder,
            seen=None,
            now=utc_now() - renewed_ago,
            ttl_s=ttl_s,
        )
        assert took == 1


def test_a_started_sync_whose_lease_expired_no_longer_holds_its_integration(due, instance):
    run = _run_of(instance, "golioth-a", dg.DagsterRunStatus.STARTED)
    _syncing(due, run, renewed_ago=timedelta(seconds=121))  # no heartbeat for a TTL: dead

    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
    assert _requested(_tick(due, instance)) == ["golioth-a", "golioth-b"]


def test_a_started_sync_whose_lease_is_live_still_holds_its_integration(due, instance):
    run = _run_of(instance, "golioth-a", dg.DagsterRunStatus.STARTED)
    _syncing(due, run, renewed_ago=timedelta(seconds=30))
    assert _requested(_tick(due, instance)) == ["golioth-b"]


def test_a_started_sync_the_stale_sync_sensor_closed_abandoned_no_longer_holds_it(due, instance):
    run = _run_of(instance, "golioth-a", dg.DagsterRunStatus.STARTED)
    _syncing(due, run, renewed_ago=timedelta(seconds=121))
    # the sensor takes the expired lease over, closes the sync `abandoned` and releases the lease:
    # nothing is held in the run's name any more, its abandoned sync says it is dead
    assert len(close_abandoned_syncs(due)) == 1
    assert _requested(_tick(due, instance)) == ["golioth-a", "golioth-b"]


def test_a_queued_sync_is_never_judged_dead_by_the_store(due, instance):
    run = _run_of(instance, "golioth-a", dg.DagsterRunStatus.QUEUED)
    _syncing(due, run, renewed_ago=timedelta(seconds=121))
    assert _requested(_tick(due, instance)) == ["golioth-b"]


def test_the_stale_sync_sensor_reports_a_dead_started_run_failed_and_leaves_a_live_one(
    due, instance
):
    dead = _run_of(instance, "golioth-a", dg.DagsterRunStatus.STARTED)
    _syncing(due, dead, renewed_ago=timedelta(seconds=121))  # no heartbeat for a TTL
    live = _run_of(instance, "golioth-b", dg.DagsterRunStatus.STARTED)  # holds no lease

    with dg.build_sensor_context(
        instance=instance, resources={"store": SyncStoreResource(database_url=due.url)}
    ) as context:
        failed_or_stale_syncs_sensor(context)

    # the dead run frees its partition's slot in the run queue now, not at its max runtime
    assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(live.run_id).status == dg.DagsterRunStatus.STARTED
    with due.connect() as conn:
        rows = sync_log_rows(conn, "org-a", "golioth-a")
    assert [r["status"] for r in rows if r["run_id"] == dead.run_id] == ["abandoned"]
