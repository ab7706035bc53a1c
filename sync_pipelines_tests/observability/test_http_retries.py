"""Retries in the recording httpx transport, against the real Golioth and Azure IoT Hub
emulators with injected faults: every attempt a row (`retrying` until the last), one
X-Request-ID per logical call, Retry-After honoured, both bounds kept, nothing stored twice."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
import sqlalchemy as sa
from sync_pipelines_peers.launchers.azure_iot import AzureIotPeer

from sync_pipelines.errors import AuthError, RateLimitedError, TransientError
from sync_pipelines.observability.activity import ActivityRecorder, ActivityScope, MemorySink
from sync_pipelines.observability.http_recording import IDEMPOTENT_EXTENSION, build_http_client
from sync_pipelines.observability.retrying import RetryPolicy
from sync_pipelines.providers.contract import IntegrationConfig
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.devices import count_devices
from sync_pipelines.sync.integration_config import open_provider
from sync_pipelines.sync.inventory import sync_devices

#: small backoffs so the suite stays fast; Retry-After waits stay real
FAST = {"retry_base_backoff_s": 0.01, "retry_max_backoff_s": 0.05, "retry_jitter_s": 0.01}


@pytest.fixture
def recorder() -> ActivityRecorder:
    return ActivityRecorder(
        MemorySink(), ActivityScope(organization_id="org-h", integration_id="g-h"), flush_every=1
    )


def _golioth(running, recorder, *, timeout_s=10.0, **settings):
    config = IntegrationConfig(
        integration_id="g-h",
        organization_id="org-h",
        provider="golioth",
        settings={
            "base_url": running.url,
            "project_id": running.emulator.config.project_id,
            **FAST,
            **settings,
        },
        secrets={"api_key": running.api_key},
    )
    return open_provider(config, recorder, timeout_s=timeout_s)


def _rows(recorder):
    return sorted(recorder.sink.rows.values(), key=lambda r: (r.created_at, r.attempt))


def _summary(rows):
    return [(r.attempt, r.status, r.status_code, r.error_type) for r in rows]


def _project_path(running) -> str:
    return f"/v1/projects/{running.emulator.config.project_id}"


def test_a_429_with_retry_after_is_waited_out_then_succeeds(golioth_factory, recorder):
    running = golioth_factory(device_count=3)
    running.emulator.add_faults({"kind": "rate_limit", "retry_after_s": 1, "times": 1})
    with _golioth(running, recorder) as provider:
        assert provider.test_connection().ok
    rows = _rows(recorder)
    assert _summary(rows) == [(1, "retrying", 429, "rate_limited"), (2, "success", 200, None)]
    assert rows[0].metadata["retry_in_s"] >= 1.0
    seen = running.emulator.requests()
    assert [r.status for r in seen] == [429, 200]
    assert seen[1].received_at - seen[0].received_at >= 1.0  # the server's wait, kept
    # one logical call: the same X-Request-ID on both attempts, in the rows and on the wire
    assert {r.request_id for r in rows} == {s.request_id for s in seen} and len(seen) == 2
    assert recorder.counts["http_failed"] == 0


def test_a_burst_of_two_5xx_is_three_rows_and_a_success(golioth_factory, recorder):
    running = golioth_factory(device_count=3)
    running.emulator.add_faults({"kind": "server_error", "status": 502, "times": 2})
    with _golioth(running, recorder) as provider:
        (page,) = provider.list_devices()
    assert len(page.devices) == 3
    assert _summary(_rows(recorder)) == [
        (1, "retrying", 502, "transient"),
        (2, "retrying", 502, "transient"),
        (3, "success", 200, None),
    ]
    assert page.request_id == _rows(recorder)[-1].request_id


def test_an_auth_failure_is_one_row_and_never_retried(golioth_factory, recorder):
    running = golioth_factory(device_count=3)
    running.emulator.add_faults({"kind": "auth_failure"})
    with _golioth(running, recorder) as provider, pytest.raises(AuthError):
        list(provider.list_devices())
    assert _summary(_rows(recorder)) == [(1, "failed", 401, "auth")]
    assert len(running.emulator.requests()) == 1


def test_attempts_are_bounded_and_the_provider_raises_on_the_last_answer(golioth_factory, recorder):
    running = golioth_factory(device_count=3)
    running.emulator.add_faults({"kind": "server_error", "status": 503})
    with (
        _golioth(running, recorder, retry_max_attempts=3) as provider,
        pytest.raises(TransientError) as raised,
    ):
        list(provider.list_devices())
    rows = _rows(recorder)
    assert [(r.attempt, r.status) for r in rows] == [
        (1, "retrying"),
        (2, "retrying"),
        (3, "failed"),
    ]
    assert raised.value.request_id == rows[-1].request_id and raised.value.status_code == 503
    assert recorder.counts["http_failed"] == 1  # one failed call, not three


def test_a_retry_after_longer_than_the_budget_left_stops_at_once(golioth_factory, recorder):
    running = golioth_factory(device_count=3)
    running.emulator.add_faults({"kind": "rate_limit", "retry_after_s": 5})
    with _golioth(running, recorder, retry_max_total_s=2) as provider:
        started = time.monotonic()
        with pytest.raises(RateLimitedError) as raised:
            list(provider.list_devices())
        elapsed = time.monotonic() - started
    assert raised.value.retry_after_s == 5
    rows = _rows(recorder)
    assert _summary(rows) == [(1, "failed", 429, "rate_limited")]
    # no wait at all: apart from the one call itself, far less than the 2 s budget it would
    # have slept (the call's own duration is taken out, so a slow machine cannot fail this)
    assert elapsed - rows[0].response_time_ms / 1000 < 1.0


def test_dropped_connections_and_timeouts_are_retried(golioth_factory, recorder):
    running = golioth_factory(device_count=3)
    running.emulator.add_faults(
        {"kind": "drop_connection", "times": 1},
        {"kind": "timeout", "latency_ms": 3000, "times": 1},
    )
    with _golioth(running, recorder, timeout_s=0.5) as provider:
        (page,) = provider.list_devices()
    assert len(page.devices) == 3
    rows = _rows(recorder)
    assert _summary(rows) == [
        (1, "retrying", None, "transient"),
        (2, "retrying", None, "transient"),
        (3, "success", 200, None),
    ]
    assert "RemoteProtocolError" in rows[0].error_message
    assert "ReadTimeout" in rows[1].error_message


def test_golioth_desired_post_is_marked_idempotent_and_lands_once(golioth_factory, recorder):
    running = golioth_factory(device_count=2)
    device = next(running.emulator.device_ids())
    running.emulator.add_faults(
        {
            "kind": "server_error",
            "status": 503,
            "method": "POST",
            "path": "/data/desired$",
            "times": 1,
        }
    )
    with _golioth(running, recorder) as provider:
        result = provider.push_desired(device, {"interval_s": 30}, expected_version=None)
    posts = [r for r in _rows(recorder) if r.method == "POST"]
    assert _summary(posts) == [(1, "retrying", 503, "transient"), (2, "success", 200, None)]
    assert result.desired["interval_s"] == 30
    assert running.emulator.read_state(device, "desired/interval_s") == 30


def test_a_post_is_repeated_only_when_a_repeat_is_safe_or_it_never_left(golioth_factory, recorder):
    """The idempotency rule, on the bare recording client (see `is_repeatable`)."""
    running = golioth_factory(device_count=1)
    device = next(running.emulator.device_ids())
    path = f"{_project_path(running)}/devices/{device}/data/desired"
    policy = RetryPolicy(max_attempts=3, base_backoff_s=0.01, jitter_s=0)
    client = build_http_client(
        recorder, base_url=running.url, headers={"x-api-key": running.api_key}, retry_policy=policy
    )
    cases = {
        "plain": {},
        "If-Match *": {"headers": {"If-Match": "*"}},
        "If-Match etag": {"headers": {"If-Match": '"v7"'}},
        "Idempotency-Key": {"headers": {"Idempotency-Key": "k-1"}},
        "extension": {"extensions": {IDEMPOTENT_EXTENSION: True}},
    }
    attempts = {}
    with client:
        for name, kwargs in cases.items():
            running.emulator.add_faults(
                {"kind": "server_error", "status": 503, "method": "POST", "times": 1}
            )
            before = len(recorder.sink.rows)
            response = client.post(path, json={"case": name}, **kwargs)
            attempts[name] = (len(recorder.sink.rows) - before, response.status_code)
            running.emulator.clear_faults()
    assert attempts == {
        "plain": (1, 503),
        "If-Match *": (1, 503),
        "If-Match etag": (2, 200),
        "Idempotency-Key": (2, 200),
        "extension": (2, 200),
    }
    with socket.socket() as sock:  # a port nobody listens on: the request never leaves
        sock.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{sock.getsockname()[1]}"
    before = len(recorder.sink.rows)
    with (
        build_http_client(recorder, base_url=refused, retry_policy=policy) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.post("/x", json={})
    refused_rows = _rows(recorder)[before:]
    assert [(r.attempt, r.status, r.error_type) for r in refused_rows] == [
        (1, "retrying", "transient"),
        (2, "retrying", "transient"),
        (3, "failed", "transient"),
    ]


def test_azure_conditional_patch_and_query_post_are_retried(recorder):
    peer = AzureIotPeer(device_count=3)
    peer.start()
    try:
        config = IntegrationConfig(
            integration_id="az-h",
            organization_id="org-h",
            provider="azure_iot",
            settings={**peer.integration_settings(), **FAST},
            secrets={"connection_string": peer.connection_string()},
        )
        with open_provider(config, recorder, timeout_s=5) as provider:
            peer.emulator.add_faults(
                {"kind": "server_error", "status": 503, "method": "POST", "times": 1}
            )
            (page,) = provider.list_devices()
            device = page.devices[0].external_id
            (state,), _ = provider.get_states([device])
            peer.emulator.add_faults(
                {"kind": "rate_limit", "retry_after_s": 1, "method": "PATCH", "times": 1}
            )
            result = provider.push_desired(device, {"mode": "eco"}, expected_version=state.version)
    finally:
        peer.stop()
    rows = _rows(recorder)
    by_method = {m: _summary([r for r in rows if r.method == m]) for m in ("POST", "PATCH")}
    assert by_method == {
        "POST": [(1, "retrying", 503, "transient"), (2, "success", 200, None)],
        "PATCH": [(1, "retrying", 429, "rate_limited"), (2, "success", 200, None)],
    }
    headers = {k.lower(): v for k, v in rows[-1].request_headers.items()}
    assert headers["if-match"] == f'"{state.version}"'
    assert result.desired["mode"] == "eco" and result.version != state.version


def test_a_full_sync_under_5xx_bursts_stores_every_device_exactly_once(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=1000)
    integration = register_golioth(store, running, **FAST)
    running.emulator.add_faults(
        {"kind": "server_error", "status": 503, "path": "/devices$", "after": 2, "times": 2},
        {"kind": "server_error", "status": 500, "path": "/devices$", "after": 6, "times": 2},
    )
    with open_session(store, integration.integration_id) as session:
        result = sync_devices(session)
    assert result.status == "success"
    assert (result.counts.fetched, result.counts.created, result.counts.pages) == (1000, 1000, 10)
    org, iid = integration.organization_id, integration.integration_id
    with store.connect() as conn:
        assert count_devices(conn, org, iid) == 1000
        duplicates = conn.execute(
            sa.text(
                "SELECT external_id FROM devices WHERE organization_id = :o AND integration_id = :i "
                "GROUP BY external_id HAVING COUNT(*) > 1"
            ),
            {"o": org, "i": iid},
        ).all()
        stored = set(
            conn.execute(
                sa.text(
                    "SELECT external_id FROM devices WHERE organization_id = :o AND integration_id = :i"
                ),
                {"o": org, "i": iid},
            ).scalars()
        )
        calls = activity_rows(conn, org, integration_id=iid, activity_type="http_request")
    assert duplicates == [] and stored == set(running.emulator.device_ids())
    retried = [r for r in calls if r["status"] == "retrying"]
    assert sorted(r["status_code"] for r in retried) == [500, 500, 503, 503]
    for row in retried:  # each retried attempt is followed, under its request id, by a success
        same_call = [r for r in calls if r["request_id"] == row["request_id"]]
        assert same_call[-1]["status"] == "success" and same_call[-1]["attempt"] > row["attempt"]
    assert sum(r["status"] == "success" for r in calls) == 10  # one per page, none twice
