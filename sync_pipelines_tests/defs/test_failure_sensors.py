"""`run_failure_recorder`: a failed run is recorded in `event_failures` with its job, partition,
failed step and error, exactly once however often the sensor sees it, and raises one alert
incident (delivered to the channel configured in the environment); runs Dagster will retry are
not recorded yet."""

import dagster as dg
import pytest
from sync_pipelines_peers.alert_sink import AlertSink

from sync_pipelines.defs.failure_sensors import run_failure_recorder
from sync_pipelines.defs.partitions import golioth_integrations
from sync_pipelines.defs.provider_assets import PROVIDER_DEFS
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.store.alerts import list_incidents
from sync_pipelines.store.event_failures import event_failures

golioth_devices = PROVIDER_DEFS["golioth"].devices


@pytest.fixture
def alert_sink(monkeypatch):
    with AlertSink() as sink:
        monkeypatch.setenv("SYNC_ALERT_WEBHOOK_URL", sink.webhook_url)
        yield sink


def _failed_run(store, instance, golioth, register_golioth, monkeypatch, tags=None):
    integ = register_golioth(store, golioth, integration_id="golioth-failing")
    monkeypatch.setenv("TEST_GOLIOTH_API_KEY", "not-the-key")  # the provider refuses it
    instance.add_dynamic_partitions(golioth_integrations.name, [integ.integration_id])
    result = dg.materialize(
        [golioth_devices],
        partition_key=integ.integration_id,
        instance=instance,
        resources={"store": SyncStoreResource(database_url=store.url)},
        raise_on_error=False,
        tags=tags or {},
    )
    assert not result.success
    return integ, instance.get_run_by_id(result.run_id)


def _evaluate(store, instance, run) -> None:
    failure = next(
        r.event_log_entry.dagster_event
        for r in instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
        ).records
    )
    context = dg.build_run_status_sensor_context(
        sensor_name=run_failure_recorder.name,
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=run,
        resources={"store": SyncStoreResource(database_url=store.url)},
    ).for_run_failure()
    run_failure_recorder(context)


def test_a_failed_run_is_recorded_once_with_its_step_and_error(
    store, instance, golioth, register_golioth, monkeypatch, alert_sink
):
    integ, run = _failed_run(store, instance, golioth, register_golioth, monkeypatch)
    _evaluate(store, instance, run)
    _evaluate(store, instance, run)  # seen again (a re-evaluated tick): still one row
    with store.connect() as conn:
        (failure,) = event_failures(
            conn, integ.organization_id, integration_id=integ.integration_id
        )
    assert failure["run_id"] == run.run_id and failure["job_name"] == run.job_name
    assert failure["partition_key"] == integ.integration_id
    assert failure["step_key"] == "golioth_devices"
    assert failure["error_type"] == "AuthError" and "401" in failure["error_message"]
    assert "not-the-key" not in (failure["error_message"] + (failure["error_stack"] or ""))
    assert failure["status"] == "failed"
    with store.connect() as conn:
        [incident] = list_incidents(conn, integ.organization_id)
    assert (incident.rule, incident.integration_id, incident.occurrences) == (
        "run_failed",
        integ.integration_id,
        1,
    )
    assert incident.dedupe_key == f"run_failed:{run.job_name}:{integ.integration_id}"
    assert incident.run_id == run.run_id and "AuthError" in incident.summary
    assert "not-the-key" not in incident.summary
    [alert] = alert_sink.accepted()
    assert (alert["kind"], alert["incident"]["id"]) == ("firing", incident.id)


def test_a_run_dagster_will_retry_is_not_recorded(
    store, instance, golioth, register_golioth, monkeypatch, alert_sink
):
    integ, run = _failed_run(
        store, instance, golioth, register_golioth, monkeypatch, tags={"dagster/will_retry": "true"}
    )
    _evaluate(store, instance, run)
    with store.connect() as conn:
        assert event_failures(conn, integ.organization_id) == []
        assert list_incidents(conn, integ.organization_id) == []
    assert alert_sink.received == []
