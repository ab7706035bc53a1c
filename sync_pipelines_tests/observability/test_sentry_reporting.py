"""Sentry: with the DSN pointing at a loopback sink, what the real SDK sends — one event per
failure, tagged with who was acting and the error taxonomy, fingerprinted per integration and
error class, and scrubbed by the logs' redaction rules."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import dagster as dg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.defs.observed_sensors import observed, observed_sensors
from sync_pipelines.defs.provider_assets import PROVIDER_DEFS
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.errors import AuthError
from sync_pipelines.observability import sentry
from sync_pipelines.observability.redaction import REDACTED
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.webhooks.observed_requests import ObservedRequests
from sync_pipelines_tests.observability.backend_sinks import BackendSink

RUN_TAGS = ("provider", "integration_id", "organization_id", "run_id", "job", "step", "request_id")


@pytest.fixture
def sentry_sink():
    with BackendSink() as sink:
        assert sentry.configure_sentry(sink.sentry_dsn)
        try:
            yield sink
        finally:
            sentry.shutdown_sentry()


def _sent(sink: BackendSink) -> list[dict]:
    import sentry_sdk

    sentry_sdk.flush()
    return sink.sentry_events()


def test_an_injected_provider_failure_in_a_run_is_one_event_with_the_tags(
    sqlite_store, golioth, register_golioth, sentry_sink
):
    integ = register_golioth(sqlite_store, golioth)
    golioth.emulator.faults.add([{"kind": "auth_failure"}])
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("golioth_integrations", [integ.integration_id])
        result = dg.materialize(
            [PROVIDER_DEFS["golioth"].devices],
            partition_key=integ.integration_id,
            instance=instance,
            resources={"store": SyncStoreResource(database_url=sqlite_store.url)},
            raise_on_error=False,
        )
    assert not result.success

    (event,) = _sent(sentry_sink)
    tags = event["tags"]
    assert {tag: tags.get(tag) for tag in RUN_TAGS} == {
        "provider": "golioth",
        "integration_id": integ.integration_id,
        "organization_id": integ.organization_id,
        "run_id": result.run_id,
        "job": result.dagster_run.job_name,
        "step": "golioth_devices",
        "request_id": golioth.emulator.request_log.entries()[0].request_id,
    }
    assert (tags["error.category"], tags["error.class"]) == ("auth", "AuthError")
    assert event["fingerprint"] == ["sync-error", integ.integration_id, "AuthError"]


def test_no_secret_reaches_any_envelope(
    sqlite_store, golioth, register_golioth, open_session, sentry_sink
):
    integ = register_golioth(sqlite_store, golioth)
    golioth.emulator.faults.add([{"kind": "auth_failure"}])
    with pytest.raises(AuthError), open_session(sqlite_store, integ.integration_id) as session:
        sync_devices(session)

    assert _sent(sentry_sink)
    for envelope in sentry_sink.sentry_envelopes():
        assert golioth.api_key.encode() not in envelope.body
    # the frames' locals were sent, with the key's header masked by the redaction rules
    assert REDACTED.encode() in b"".join(e.body for e in sentry_sink.sentry_envelopes())


def test_the_same_failure_of_an_integration_groups_into_one_issue(
    sqlite_store, golioth, register_golioth, open_session, sentry_sink
):
    integ = register_golioth(sqlite_store, golioth)
    golioth.emulator.faults.add([{"kind": "auth_failure"}])
    for _ in range(2):
        with pytest.raises(AuthError), open_session(sqlite_store, integ.integration_id) as session:
            sync_devices(session)

    events = _sent(sentry_sink)
    assert len(events) == 2
    assert {tuple(e["fingerprint"]) for e in events} == {
        ("sync-error", integ.integration_id, "AuthError")
    }


def test_before_send_masks_cookies_authorization_and_secret_values():
    event = {
        "request": {
            "headers": {
                "Authorization": "Bearer abc.def.ghi",
                "Cookie": "session=s3cret",
                "Accept": "*/*",
            },
            "cookies": {"session": "s3cret"},
            "url": "https://hub.example/devices?sig=abcdef123&api-version=2021",
        },
        "extra": {"connection_string": "HostName=h;SharedAccessKey=topsecret=="},
        "breadcrumbs": {"values": [{"message": "calling with Bearer tok-123456"}]},
    }
    scrubbed = sentry.scrub_event(event, {})
    text = repr(scrubbed)
    for secret in ("abc.def.ghi", "s3cret", "abcdef123", "topsecret", "tok-123456"):
        assert secret not in text
    assert "cookies" not in scrubbed["request"]
    assert scrubbed["request"]["headers"]["Accept"] == "*/*"


def test_a_failing_sensor_evaluation_is_reported_with_the_sensor(sentry_sink):
    @dg.sensor(job_name="some_job")
    @observed
    def exploding_sensor(_context):
        raise RuntimeError("inbox table missing")

    (sensor,) = observed_sensors([exploding_sensor])
    with pytest.raises(RuntimeError), dg.instance_for_test() as instance:
        sensor.evaluate_tick(dg.build_sensor_context(instance=instance))

    (event,) = _sent(sentry_sink)
    assert event["tags"]["sensor"] == "exploding_sensor"
    assert event["tags"]["error.class"] == "RuntimeError"


def test_a_sensor_without_observation_is_refused_where_the_sensors_are_assembled():
    @dg.sensor(job_name="some_job")
    def forgotten_sensor(_context):
        return dg.SkipReason("nothing")

    with pytest.raises(ValueError, match="forgotten_sensor"):
        observed_sensors([forgotten_sensor])


def test_an_error_escaping_the_receiver_is_reported_with_the_delivery(sentry_sink):
    def broken(_request):
        raise RuntimeError("unexpected")

    app = Starlette(
        routes=[Route("/webhooks/{provider}/{integration_id}", broken, methods=["POST"])]
    )
    app.add_middleware(ObservedRequests)
    with EmulatorServer(app) as server:
        response = httpx.post(
            f"{server.url}/webhooks/golioth/gw-1", headers={"X-Request-ID": "req-9"}, content=b"{}"
        )
    assert response.status_code == 500

    (event,) = _sent(sentry_sink)
    assert {k: event["tags"].get(k) for k in ("provider", "integration_id", "request_id")} == {
        "provider": "golioth",
        "integration_id": "gw-1",
        "request_id": "req-9",
    }


def test_an_unhandled_cli_error_is_reported_with_the_command(tmp_path):
    with BackendSink() as sink:
        env = {
            **os.environ,
            "SENTRY_DSN": sink.sentry_dsn,
            "SYNC_DATABASE_URL": f"sqlite:///{tmp_path}/store.db",
            "SYNC_HOME": str(tmp_path),
        }
        missing = f"missing-{uuid.uuid4().hex[:6]}"
        done = subprocess.run(
            [sys.executable, "-m", "sync_pipelines.cli", "sync", missing],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode != 0
        events = sink.sentry_events()

    (event,) = events
    assert event["tags"]["cli.command"] == "sync"
    assert (event["tags"]["error.category"], event["tags"]["error.class"]) == (
        "config",
        "ConfigError",
    )


def test_nothing_is_configured_without_a_dsn(monkeypatch):
    monkeypatch.delenv(sentry.DSN_ENV, raising=False)
    assert not sentry.configure_sentry()
    sentry.capture_failure(RuntimeError("not sent"))  # a no-op, not an error
