"""The production queue really holds runs back: Dagster's own dequeue selection
(QueuedRunCoordinatorDaemon) over runs of the real sync/export jobs, submitted through the
instance's QueuedRunCoordinator into the real Postgres run storage. No daemon process runs:
one daemon iteration's selection is computed in-process, and "launching" a run is the
PIPELINE_STARTING event the daemon itself reports before handing the run to the launcher."""

import sys
from collections import Counter

import dagster as dg
from dagster._core.definitions.repository_definition import SINGLETON_REPOSITORY_NAME
from dagster._core.remote_origin import (
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.run_coordinator import SubmitRunContext
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from sync_pipelines.definitions import defs

#: the code location as workspace.yaml declares it (a queued run must name where it comes from)
CODE_LOCATION = ManagedGrpcPythonEnvCodeLocationOrigin(
    LoadableTargetOrigin(executable_path=sys.executable, module_name="sync_pipelines.definitions"),
    location_name="sync_pipelines",
)


def _submit(instance: dg.DagsterInstance, job_name: str, integration_id: str) -> dg.DagsterRun:
    """Queue one partitioned run tagged the way Dagster tags a launched partition run:
    the job's tags plus `dagster/partition`."""
    job = defs.resolve_job_def(job_name)
    tags = {
        **job.run_tags,
        **job.get_tags_for_partition_key(integration_id, selected_asset_keys=None),
    }
    origin = RemoteJobOrigin(
        RemoteRepositoryOrigin(CODE_LOCATION, SINGLETON_REPOSITORY_NAME), job_name
    )
    run = instance.create_run_for_job(job, tags=tags, remote_job_origin=origin)
    # workspace is only read for request headers, which a programmatic submit has none of
    return instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))


def _next_batch(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """What one daemon iteration would dequeue now, given the runs already in progress."""
    daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
    return daemon._get_runs_to_dequeue(
        instance, instance.get_concurrency_config(), fixed_iteration_time=None
    )


def _launch(instance: dg.DagsterInstance, runs: list[dg.DagsterRun]) -> None:
    for run in runs:
        instance.report_dagster_event(
            dg.DagsterEvent(
                event_type_value=dg.DagsterEventType.PIPELINE_STARTING.value, job_name=run.job_name
            ),
            run_id=run.run_id,
        )


def _finish(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    instance.report_dagster_event(
        dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.PIPELINE_SUCCESS.value, job_name=run.job_name
        ),
        run_id=run.run_id,
    )


def _by_provider(runs: list[dg.DagsterRun]) -> Counter:
    return Counter(run.tags["provider"] for run in runs)


def test_a_provider_never_exceeds_its_limit(deploy_instance: dg.DagsterInstance) -> None:
    golioth = [_submit(deploy_instance, "sync_golioth_integration", f"g{i}") for i in range(5)]
    mqtt = [_submit(deploy_instance, "sync_mqtt_integration", f"m{i}") for i in range(3)]
    assert all(run.status == dg.DagsterRunStatus.QUEUED for run in golioth + mqtt)
    assert golioth[0].tags["provider"] == "golioth" and golioth[0].tags["dagster/partition"] == "g0"

    first = _next_batch(deploy_instance)
    assert _by_provider(first) == {"golioth": 3, "mqtt": 2}  # the limits, first in first out
    assert [run.run_id for run in first if run.tags["provider"] == "golioth"] == [
        r.run_id for r in golioth[:3]
    ]
    _launch(deploy_instance, first)

    # every slot taken: nothing more leaves the queue while those runs are in progress
    assert _next_batch(deploy_instance) == []

    # one golioth run ends: exactly one golioth slot frees, the next in line gets it
    _finish(deploy_instance, golioth[0])
    second = _next_batch(deploy_instance)
    assert [run.run_id for run in second] == [golioth[3].run_id]
    _launch(deploy_instance, second)
    assert _next_batch(deploy_instance) == []

    in_progress = deploy_instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING]))
    assert _by_provider(in_progress) == {"golioth": 3, "mqtt": 2}


def test_two_runs_of_one_integration_never_overlap(deploy_instance: dg.DagsterInstance) -> None:
    # aws_iot allows 4 parallel runs, so only the per-integration limit holds the export back
    sync_a1 = _submit(deploy_instance, "sync_aws_iot_integration", "a1")
    export_a1 = _submit(deploy_instance, "export_aws_iot_desired_states", "a1")
    sync_a2 = _submit(deploy_instance, "sync_aws_iot_integration", "a2")

    first = _next_batch(deploy_instance)
    assert [run.run_id for run in first] == [sync_a1.run_id, sync_a2.run_id]
    _launch(deploy_instance, first)
    assert _next_batch(deploy_instance) == []

    _finish(deploy_instance, sync_a1)
    assert [run.run_id for run in _next_batch(deploy_instance)] == [export_a1.run_id]
