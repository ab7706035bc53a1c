"""MQTT CONNECT retries under the integration's RetryPolicy, against the peer's real broker:
each attempt an `mqtt_request` row (`retrying` until the last, one request id), a broker that
comes back is reached, and a refused password is never tried twice."""

from __future__ import annotations

import threading

import pytest
from sync_pipelines_peers.launchers.contract import AUTH_FAILURE, SERVER_ERROR
from sync_pipelines_peers.launchers.mqtt import MqttPeer

from sync_pipelines.errors import AuthError
from sync_pipelines.observability.activity import ActivityRecorder, ActivityScope, MemorySink
from sync_pipelines.providers.contract import IntegrationConfig
from sync_pipelines.sync.integration_config import open_provider

FAST = {"retry_base_backoff_s": 0.05, "retry_max_backoff_s": 0.2, "retry_jitter_s": 0.01}


@pytest.fixture(scope="module")
def peer():
    running = MqttPeer()
    running.start()
    running.seed(3)
    yield running
    running.stop()


@pytest.fixture
def recorder() -> ActivityRecorder:
    return ActivityRecorder(
        MemorySink(), ActivityScope(organization_id="org-mr", integration_id="m-r"), flush_every=1
    )


def _provider(peer, recorder, password=None, **settings):
    config = IntegrationConfig(
        integration_id="m-r",
        organization_id="org-mr",
        provider="mqtt",
        settings={**peer.integration_settings(), **FAST, **settings},
        secrets={"username": peer.username, "password": password or peer.password},
    )
    return open_provider(config, recorder, timeout_s=3)


def _connects(recorder):
    rows = [r for r in recorder.sink.rows.values() if r.method == "CONNECT"]
    return sorted(rows, key=lambda r: (r.created_at, r.attempt))


def test_a_stopped_broker_is_tried_max_attempts_times(peer, recorder):
    peer.inject_fault(SERVER_ERROR)
    try:
        with _provider(peer, recorder, retry_max_attempts=3) as provider:
            result = provider.test_connection()
    finally:
        peer.clear_faults()
    rows = _connects(recorder)
    assert not result.ok and result.details["category"] == "transient"
    assert [(r.attempt, r.status, r.error_type) for r in rows] == [
        (1, "retrying", "transient"),
        (2, "retrying", "transient"),
        (3, "failed", "transient"),
    ]
    assert len({r.request_id for r in rows}) == 1
    assert all(r.metadata["retry_in_s"] > 0 for r in rows[:2])


def test_a_broker_back_within_the_budget_is_reached(peer, recorder):
    peer.inject_fault(SERVER_ERROR)
    restart = threading.Timer(0.4, peer.clear_faults)
    restart.start()
    try:
        with _provider(peer, recorder, retry_max_attempts=30) as provider:
            pages = list(provider.list_devices())
    finally:
        restart.join()
    assert sum(len(p.devices) for p in pages) == 3
    rows = _connects(recorder)
    assert len(rows) >= 2
    assert {r.status for r in rows[:-1]} == {"retrying"} and rows[-1].status == "success"
    assert [r.attempt for r in rows] == list(range(1, len(rows) + 1))


def test_refused_credentials_are_one_connect_and_never_retried(peer, recorder):
    peer.inject_fault(AUTH_FAILURE)
    try:
        with _provider(peer, recorder) as provider, pytest.raises(AuthError):
            list(provider.list_devices())
    finally:
        peer.clear_faults()
    assert [(r.attempt, r.status, r.error_type) for r in _connects(recorder)] == [
        (1, "failed", "auth")
    ]
