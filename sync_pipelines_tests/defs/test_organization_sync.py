"""`sync_organization` and `organization_sync_sensor`, against the real Golioth emulator on SQLite
and PostgreSQL: an organization run lists the integrations, the sensor answers its success with
one provider sync run per integration, and those runs — launched as Dagster launches a sensor's
run requests — carry the provider and partition tags, run the integration's checks and fail
alone."""

from __future__ import annotations

import dagster as dg
import pytest

from sync_pipelines.defs.organization_sync import (
    ORGANIZATION_RUN_TAG,
    organization_sync_sensor,
    sync_organization,
)
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.store.devices import count_devices
from sync_pipelines.store.integrations import Integration
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines_tests.conftest import GOLIOTH_KEY_ENV

DEVICE_COUNT = 12
SYNC_JOB = "sync_golioth_integration"


@pytest.fixture
def small_golioth(golioth_factory):
    return golioth_factory(device_count=DEVICE_COUNT)


@pytest.fixture
def resources(store, monkeypatch):
    # the code location's own resource resolves the store from the environment, as in a deployment
    monkeypatch.setenv("SYNC_DATABASE_URL", store.url)
    return {"store": SyncStoreResource(database_url=store.url)}


def _golioth_integration(
    running, integration_id: str, *, key_env: str = GOLIOTH_KEY_ENV, enabled: bool = True
) -> Integration:
    return Integration(
        integration_id=integration_id,
        organization_id="org-a",
        provider="golioth",
        name=integration_id,
        settings={"base_url": running.url, "project_id": running.emulator.config.project_id},
        secret_refs={"api_key": key_env},
        enabled=enabled,
    )


def _organization_run(instance, resources, organization_id: str, **config) -> dg.DagsterRun:
    result = sync_organization.execute_in_process(
        run_config={
            "ops": {
                "list_organization_integrations": {
                    "config": {"organization_id": organization_id, **config}
                }
            }
        },
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    assert result.success
    return result.dagster_run


def _sensor_answer(instance, resources, run: dg.DagsterRun) -> dg.SensorResult | dg.SkipReason:
    success = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS
    ).records[0]
    context = dg.build_run_status_sensor_context(
        sensor_name=organization_sync_sensor.name,
        dagster_event=success.event_log_entry.dagster_event,
        dagster_instance=instance,
        dagster_run=run,
        resources=resources,
    )
    return organization_sync_sensor(context)


def _launch(instance, answer: dg.SensorResult) -> dict[str, dg.ExecuteInProcessResult]:
    """What the daemon does with the sensor's result: add the partitions, then run each request
    as a run of its job (the code location's job, so its checks and tags are the real ones)."""
    from sync_pipelines.definitions import defs

    for request in answer.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    results = {}
    for request in answer.run_requests or []:
        job = defs.resolve_job_def(request.job_name)
        results[request.partition_key] = job.execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            tags=request.tags,
            raise_on_error=False,
        )
    return results


def _devices(store, integration_id: str, organization_id: str = "org-a") -> int:
    with store.connect() as conn:
        return count_devices(conn, organization_id, integration_id)


def test_the_sensor_requests_one_provider_sync_run_per_enabled_integration(
    store, instance, resources, small_golioth, register_golioth
):
    for name in ("golioth-a", "golioth-b"):
        register_golioth(store, small_golioth, integration_id=name)
    register_integration(store, _golioth_integration(small_golioth, "golioth-off", enabled=False))
    register_golioth(
        store, small_golioth, organization_id="org-b", integration_id="golioth-other-org"
    )
    run = _organization_run(instance, resources, "org-a")

    answer = _sensor_answer(instance, resources, run)

    assert {(r.job_name, r.partition_key) for r in answer.run_requests} == {
        (SYNC_JOB, "golioth-a"),
        (SYNC_JOB, "golioth-b"),
    }
    assert all(r.tags[ORGANIZATION_RUN_TAG] == run.run_id for r in answer.run_requests)
    # the same organization run evaluated twice launches nothing twice
    assert {r.run_key for r in answer.run_requests} == {
        r.run_key for r in _sensor_answer(instance, resources, run).run_requests
    }
    # partitions the partitions sensor has not added yet are added with the requests
    (added,) = answer.dynamic_partitions_requests
    assert set(added.partition_keys) == {"golioth-a", "golioth-b"}


def test_each_launched_run_carries_the_limits_tags_and_runs_the_integrations_checks(
    store, instance, resources, small_golioth, register_golioth
):
    register_golioth(store, small_golioth, integration_id="golioth-a")
    run = _organization_run(instance, resources, "org-a")

    (result,) = _launch(instance, _sensor_answer(instance, resources, run)).values()

    assert result.success
    tags = result.dagster_run.tags
    assert tags["provider"] == "golioth"  # the run queue's per-provider limit
    assert tags["dagster/partition"] == "golioth-a"  # one run per integration at a time
    assert tags[ORGANIZATION_RUN_TAG] == run.run_id
    checks = {e.check_name for e in result.get_asset_check_evaluations()}
    assert "call_failure_rate_below_threshold" in checks
    assert _devices(store, "golioth-a") == DEVICE_COUNT


def test_a_failing_integration_fails_only_its_own_run(
    store, instance, resources, small_golioth, register_golioth, monkeypatch
):
    register_golioth(store, small_golioth, integration_id="golioth-good")
    monkeypatch.setenv("TEST_GOLIOTH_WRONG_KEY", "not-the-key")
    register_integration(
        store,
        _golioth_integration(small_golioth, "golioth-bad-key", key_env="TEST_GOLIOTH_WRONG_KEY"),
    )
    run = _organization_run(instance, resources, "org-a")

    results = _launch(instance, _sensor_answer(instance, resources, run))

    assert {k: r.success for k, r in results.items()} == {
        "golioth-good": True,
        "golioth-bad-key": False,
    }
    assert _devices(store, "golioth-good") == DEVICE_COUNT
    assert _devices(store, "golioth-bad-key") == 0


def test_the_providers_option_limits_the_runs_to_those_providers(
    store, instance, resources, small_golioth, register_golioth
):
    register_golioth(store, small_golioth, integration_id="golioth-a")
    run = _organization_run(instance, resources, "org-a", providers=["mqtt"])

    answer = _sensor_answer(instance, resources, run)

    assert isinstance(answer, dg.SkipReason)
    assert "org-a" in (answer.skip_message or "")


def test_an_unknown_provider_fails_the_organization_run_naming_the_choices(
    store, instance, resources
):
    result = sync_organization.execute_in_process(
        run_config={
            "ops": {
                "list_organization_integrations": {
                    "config": {"organization_id": "org-a", "providers": ["gollioth"]}
                }
            }
        },
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "gollioth" in str(failure.step_failure_data.error)


def test_the_job_and_its_sensor_are_in_the_code_location():
    from sync_pipelines.definitions import defs

    job = defs.resolve_job_def("sync_organization")
    assert job.description and "organization" in job.description
    sensor = defs.resolve_sensor_def("organization_sync_sensor")
    assert sensor.name == "organization_sync_sensor"
