"""The alert sensors, ticked through Dagster's sensor contexts against a test instance, with the
channels configured the production way (environment variables) at the real local sink:
the check-failure sensor (one test per cursor scenario, asserting the new cursor), the
evaluation sensor, the heartbeat sensor, and the run-success resolver of failed-run alerts."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest

from sync_pipelines.alerts.check_results import CheckPosition
from sync_pipelines.alerts.rules import CHECK_FAILED, RUN_FAILED
from sync_pipelines.clock import utc_now
from sync_pipelines.defs.alert_sensors import (
    alert_evaluation_sensor,
    alert_heartbeat_sensor,
    check_failure_alert_sensor,
    run_success_alert_resolver,
)
from sync_pipelines.defs.failure_sensors import run_failure_recorder
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.store.alerts import list_incidents
from sync_pipelines.store.event_failures import SYSTEM_ORGANIZATION

from .alert_data import add_calls, add_check_result, add_integration


@pytest.fixture
def channel_env(sink, monkeypatch):
    monkeypatch.setenv("SYNC_ALERT_WEBHOOK_URL", sink.webhook_url)
    monkeypatch.setenv("SYNC_ALERT_MAX_ATTEMPTS", "1")
    return sink


def _resources(store):
    return {"store": SyncStoreResource(database_url=store.url)}


def _tick(sensor, store, instance, cursor=None):
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=_resources(store)
    ) as context:
        return sensor(context)


def _incidents(store, organization_id="org-a"):
    with store.connect() as conn:
        return list_incidents(conn, organization_id)


# -- check_failure_alert_sensor ----------------------------------------------------------------


def test_a_failed_check_becomes_an_alert_and_its_position_the_cursor(store, instance, channel_env):
    integration = add_integration(store)
    add_check_result(
        store, integration, "freshness", passed=True, created_at=utc_now() - timedelta(seconds=2)
    )
    failed = add_check_result(store, integration, "error_rate", passed=False, created_at=utc_now())

    result = _tick(check_failure_alert_sensor, store, instance)

    assert result.cursor == CheckPosition(failed.created_at, failed.id).to_cursor()
    assert result.skip_reason.skip_message == "2 check result(s): 1 failed, 0 incident(s) resolved"
    [incident] = _incidents(store)
    assert (incident.rule, incident.dedupe_key, incident.severity) == (
        CHECK_FAILED,
        "check_failed:golioth-a:error_rate",
        "critical",
    )
    assert incident.run_id == "run-check" and "error rate 12.0% above 10%" in incident.summary
    [firing] = channel_env.accepted()
    assert firing["kind"] == "firing" and firing["incident"]["rule"] == CHECK_FAILED


def test_one_cause_opens_one_incident_not_one_per_check_that_sees_it(store, instance, channel_env):
    """The health check summarizes the others, and the call-failure and streak checks are judged
    by alert rules at the same thresholds: their failures open no incident of their own."""
    integration = add_integration(store)
    now = utc_now()
    for name in (
        "integration_health",
        "call_failure_rate_below_threshold",
        "failure_streak_below_threshold",
        "dead_letters_below_threshold",
    ):
        add_check_result(store, integration, name, passed=False, created_at=now)

    _tick(check_failure_alert_sensor, store, instance)

    assert [i.dedupe_key for i in _incidents(store)] == [
        "check_failed:golioth-a:dead_letters_below_threshold"
    ]
    assert len(channel_env.accepted()) == 1


def test_a_check_result_read_again_is_not_a_second_sighting(store, instance, channel_env):
    """A sensor without a cursor reads the last hour again (the daemon's first tick after the
    demo alerted in-process): the same result is one sighting, a new failing result another."""
    integration = add_integration(store)
    add_check_result(
        store, integration, "dead_letters_below_threshold", passed=False, created_at=utc_now()
    )
    _tick(check_failure_alert_sensor, store, instance)
    _tick(check_failure_alert_sensor, store, instance)  # no cursor again: the same hour re-read
    [incident] = _incidents(store)
    assert incident.occurrences == 1
    add_check_result(
        store, integration, "dead_letters_below_threshold", passed=False, created_at=utc_now()
    )
    _tick(check_failure_alert_sensor, store, instance)
    [incident] = _incidents(store)
    assert incident.occurrences == 2


def test_nothing_new_skips_the_tick_and_keeps_the_cursor(store, instance, channel_env):
    integration = add_integration(store)
    failed = add_check_result(store, integration, "error_rate", passed=False, created_at=utc_now())
    cursor = CheckPosition(failed.created_at, failed.id).to_cursor()

    result = _tick(check_failure_alert_sensor, store, instance, cursor=cursor)

    assert result.skip_reason.skip_message == "no new check results"
    assert result.cursor == cursor
    assert _incidents(store) == [] and channel_env.received == []


def test_only_results_after_the_cursor_are_read(store, instance, channel_env):
    integration = add_integration(store)
    now = utc_now()
    seen = add_check_result(
        store, integration, "error_rate", passed=False, created_at=now - timedelta(seconds=1)
    )
    new = add_check_result(
        store, integration, "p95_latency", passed=False, created_at=now, severity="WARN"
    )

    result = _tick(
        check_failure_alert_sensor,
        store,
        instance,
        cursor=CheckPosition(seen.created_at, seen.id).to_cursor(),
    )

    assert result.cursor == CheckPosition(new.created_at, new.id).to_cursor()
    [incident] = _incidents(store)
    assert (incident.dedupe_key, incident.severity) == (
        "check_failed:golioth-a:p95_latency",
        "warning",
    )


def test_a_passing_check_resolves_its_incident(store, instance, channel_env):
    integration = add_integration(store)
    add_check_result(
        store, integration, "error_rate", passed=False, created_at=utc_now() - timedelta(seconds=1)
    )
    cursor = _tick(check_failure_alert_sensor, store, instance).cursor
    add_check_result(store, integration, "error_rate", passed=True, created_at=utc_now())

    result = _tick(check_failure_alert_sensor, store, instance, cursor=cursor)

    assert result.skip_reason.skip_message == "1 check result(s): 0 failed, 1 incident(s) resolved"
    [incident] = _incidents(store)
    assert incident.status == "resolved"
    assert [m["kind"] for m in channel_env.accepted()] == ["firing", "resolved"]


def test_without_a_cursor_only_recent_results_are_alerted(store, instance, channel_env):
    integration = add_integration(store)
    add_check_result(
        store, integration, "error_rate", passed=False, created_at=utc_now() - timedelta(hours=2)
    )
    result = _tick(check_failure_alert_sensor, store, instance)
    assert result.skip_reason.skip_message == "no new check results" and result.cursor is None


def test_an_unreadable_cursor_is_a_clear_error(sqlite_store, instance):
    with pytest.raises(ValueError, match="check-result cursor 'garbage'"):
        _tick(check_failure_alert_sensor, sqlite_store, instance, cursor="garbage")


# -- alert_evaluation_sensor, alert_heartbeat_sensor -----------------------------------------


def test_the_evaluation_sensor_raises_and_reports_the_alerts(sqlite_store, instance, channel_env):
    integration = add_integration(sqlite_store)
    now = utc_now()
    add_calls(
        sqlite_store, integration, 40, start=now - timedelta(seconds=60), end=now, status_code=502
    )

    result = _tick(alert_evaluation_sensor, sqlite_store, instance)

    assert isinstance(result, dg.SkipReason)
    assert result.skip_message.startswith("1 integration(s) evaluated: 1 active condition(s)")
    assert "1 firing" in result.skip_message
    assert [m["incident"]["rule"] for m in channel_env.accepted()] == ["provider_api_failures"]


def test_the_heartbeat_sensor_sends_when_due_and_skips_otherwise(
    sqlite_store, instance, sink, monkeypatch
):
    assert (
        _tick(alert_heartbeat_sensor, sqlite_store, instance).skip_message
        == "no alert channel configured"
    )
    monkeypatch.setenv("SYNC_ALERT_WEBHOOK_URL", sink.webhook_url)

    assert (
        _tick(alert_heartbeat_sensor, sqlite_store, instance).skip_message
        == "heartbeat sent to 1 of 1 channel(s)"
    )
    assert (
        _tick(alert_heartbeat_sensor, sqlite_store, instance).skip_message
        == "heartbeat not due yet"
    )
    assert [m["kind"] for m in sink.accepted()] == ["heartbeat"]


def test_a_failing_heartbeat_does_not_fail_the_tick(sqlite_store, instance, sink, monkeypatch):
    monkeypatch.setenv("SYNC_ALERT_WEBHOOK_URL", sink.webhook_url)
    monkeypatch.setenv("SYNC_ALERT_MAX_ATTEMPTS", "1")
    sink.fail(503)
    assert (
        _tick(alert_heartbeat_sensor, sqlite_store, instance).skip_message
        == "heartbeat sent to 0 of 1 channel(s)"
    )


# -- run_failure_recorder + run_success_alert_resolver -----------------------------------------


@dg.op(config_schema={"fail": bool})
def flaky_op(context) -> None:
    if context.op_config["fail"]:
        raise RuntimeError("the flaky op failed on purpose")


@dg.job
def flaky_job() -> None:
    flaky_op()


def _run(instance, *, fail: bool) -> tuple[dg.DagsterRun, dg.DagsterEvent]:
    result = flaky_job.execute_in_process(
        run_config={"ops": {"flaky_op": {"config": {"fail": fail}}}},
        instance=instance,
        raise_on_error=False,
    )
    event_type = dg.DagsterEventType.RUN_FAILURE if fail else dg.DagsterEventType.RUN_SUCCESS
    [record] = instance.get_records_for_run(result.run_id, of_type=event_type).records
    return instance.get_run_by_id(result.run_id), record.event_log_entry.dagster_event


def _status_context(sensor, store, instance, run, event):
    return dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=run,
        resources=_resources(store),
    )


def test_a_failed_run_raises_an_alert_that_the_next_success_resolves(store, instance, channel_env):
    for _ in range(2):  # the job fails twice: one incident, its repeat counted
        run, event = _run(instance, fail=True)
        run_failure_recorder(
            _status_context(run_failure_recorder, store, instance, run, event).for_run_failure()
        )
    [incident] = _incidents(store, SYSTEM_ORGANIZATION)
    assert (incident.rule, incident.dedupe_key, incident.occurrences) == (
        RUN_FAILED,
        "run_failed:flaky_job:-",
        2,
    )
    assert "RuntimeError: the flaky op failed on purpose" in incident.summary
    assert incident.run_id == run.run_id

    run, event = _run(instance, fail=False)
    run_success_alert_resolver(
        _status_context(run_success_alert_resolver, store, instance, run, event)
    )

    [resolved] = _incidents(store, SYSTEM_ORGANIZATION)
    assert resolved.status == "resolved"
    assert resolved.details["resolution"] == f"run {run.run_id} of flaky_job succeeded"
    assert [m["kind"] for m in channel_env.accepted()] == ["firing", "resolved"]
