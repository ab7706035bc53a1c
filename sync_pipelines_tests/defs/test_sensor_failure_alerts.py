"""A sensor tick that errors raises an alert (Dagster OSS has none): through `@observed`, one
incident per sensor and cause however many ticks fail, the error still failing the tick, no
secret in what is stored or sent; the next clean tick resolves it. Ticked through Dagster's
sensor evaluation against a test instance, the channel being the real local alert sink."""

from __future__ import annotations

import json
import logging

import dagster as dg
import pytest
from sync_pipelines_peers.alert_sink import AlertSink

from sync_pipelines.alerts.rules import SENSOR_FAILED
from sync_pipelines.defs.alert_sensors import alert_evaluation_sensor
from sync_pipelines.defs.observed_sensors import observed
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.observability.redaction import register_secret
from sync_pipelines.store.alerts import Incident, list_incidents
from sync_pipelines.store.event_failures import SYSTEM_ORGANIZATION

#: what the flaky sensor raises, chosen by the cursor it is ticked with (none: a clean tick)
FAILURES: dict[str, type[Exception]] = {
    "timeout": TimeoutError,
    "refused": ConnectionRefusedError,
}
STORE_PASSWORD = "hunter2-in-the-url"
API_KEY = "k3y-9f8e7d6c5b4a-registered"


@dg.sensor(minimum_interval_seconds=30)
@observed
def flaky_sensor(context: dg.SensorEvaluationContext, store: SyncStoreResource) -> dg.SkipReason:
    store.get_store()
    failure = FAILURES.get(context.cursor or "")
    if failure is not None:
        raise failure(
            f"store postgresql://sync:{STORE_PASSWORD}@db:5432/sync did not answer "
            f"(api key {API_KEY})"
        )
    return dg.SkipReason("nothing to do")


@pytest.fixture
def sink(monkeypatch):
    with AlertSink() as running:
        monkeypatch.setenv("SYNC_ALERT_WEBHOOK_URL", running.webhook_url)
        monkeypatch.setenv("SYNC_ALERT_MAX_ATTEMPTS", "1")
        yield running


def _tick(sensor, database_url, instance, cursor=None):
    resources = {"store": SyncStoreResource(database_url=database_url)}
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as ctx:
        return sensor.evaluate_tick(ctx)


def _sensor_incidents(store) -> list[Incident]:
    with store.connect() as conn:
        incidents = list_incidents(conn, SYSTEM_ORGANIZATION)
    return sorted((i for i in incidents if i.rule == SENSOR_FAILED), key=lambda i: i.dedupe_key)


def test_ten_failing_ticks_of_one_cause_are_one_incident_and_one_message(store, instance, sink):
    register_secret(API_KEY)
    for _ in range(10):
        with pytest.raises(TimeoutError):  # Dagster still sees the tick's own error
            _tick(flaky_sensor, store.url, instance, cursor="timeout")
    [incident] = _sensor_incidents(store)
    assert incident.dedupe_key == "sensor_failed:flaky_sensor:TimeoutError"
    assert (incident.status, incident.severity, incident.occurrences) == ("open", "critical", 10)
    assert incident.details["sensor"] == "flaky_sensor"
    assert incident.summary.startswith("sensor flaky_sensor failed: TimeoutError: store ")
    [message] = sink.accepted()
    assert (message["kind"], message["incident"]["id"]) == ("firing", incident.id)
    for text in (incident.summary, str(message)):
        assert STORE_PASSWORD not in text and API_KEY not in text


def test_another_cause_is_another_incident_and_a_clean_tick_resolves_both(store, instance, sink):
    for cursor in ("timeout", "refused", "timeout"):
        with pytest.raises(FAILURES[cursor]):
            _tick(flaky_sensor, store.url, instance, cursor=cursor)
    refused, timeout = _sensor_incidents(store)
    assert refused.dedupe_key == "sensor_failed:flaky_sensor:ConnectionRefusedError"
    assert (refused.occurrences, timeout.occurrences) == (1, 2)

    result = _tick(flaky_sensor, store.url, instance)
    assert result.skip_message == "nothing to do"
    assert {(i.dedupe_key, i.status) for i in _sensor_incidents(store)} == {
        (refused.dedupe_key, "resolved"),
        (timeout.dedupe_key, "resolved"),
    }
    assert sorted(m["kind"] for m in sink.accepted()) == [
        "firing",
        "firing",
        "resolved",
        "resolved",
    ]
    _tick(flaky_sensor, store.url, instance)  # nothing left open: nothing more said
    assert len(sink.accepted()) == 4


def test_the_tick_still_fails_with_its_own_error_when_the_alert_cannot_be_stored(instance, caplog):
    @dg.sensor(minimum_interval_seconds=30)
    @observed
    def storeless_sensor(context: dg.SensorEvaluationContext, store: SyncStoreResource):
        raise TimeoutError("the provider did not answer")

    caplog.set_level(logging.ERROR, logger="sync_pipelines.defs.observed_sensors")
    unreachable = "postgresql://postgres@127.0.0.1:1/sync"  # nothing listens on port 1
    with pytest.raises(TimeoutError, match="did not answer"):
        _tick(storeless_sensor, unreachable, instance)
    logged = [json.loads(r.getMessage()) for r in caplog.records]
    assert [(line["event"], line["sensor"]) for line in logged] == [
        ("sensor_failed", "storeless_sensor"),
        ("sensor_failure_not_alerted", "storeless_sensor"),  # the unreachable store's error
    ]
    assert logged[1]["error"]["type"] == "sqlalchemy.exc.OperationalError"


def test_a_product_sensor_that_cannot_read_its_settings_is_alerted_and_recovers(
    store, instance, monkeypatch
):
    # the alert settings themselves are broken: the incident is still recorded in the store
    monkeypatch.setenv("SYNC_ALERT_COOLDOWN_S", "soon")
    with pytest.raises(ValueError, match="SYNC_ALERT_COOLDOWN_S"):
        _tick(alert_evaluation_sensor, store.url, instance)
    [incident] = _sensor_incidents(store)
    assert incident.dedupe_key == "sensor_failed:alert_evaluation_sensor:ValueError"
    assert "SYNC_ALERT_COOLDOWN_S must be a number" in incident.summary

    monkeypatch.delenv("SYNC_ALERT_COOLDOWN_S")
    _tick(alert_evaluation_sensor, store.url, instance)
    [resolved] = _sensor_incidents(store)
    assert (resolved.id, resolved.status) == (incident.id, "resolved")
    assert resolved.details["resolution"] == "sensor alert_evaluation_sensor completed a tick"
