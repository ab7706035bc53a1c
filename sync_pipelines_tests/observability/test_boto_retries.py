"""botocore's retries under the integration's RetryPolicy, against moto behind the AWS-shaped
fault proxy: `total_max_attempts` from the policy, one row per attempt (`retrying` until the
last), botocore's backoff honouring `x-amz-retry-after`, and the policy's time budget."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sync_pipelines_peers.emulators.faults import FaultSpec
from sync_pipelines_peers.launchers.aws_iot import AwsIotPeer

from sync_pipelines.errors import AuthError, RateLimitedError, TransientError
from sync_pipelines.observability.activity import ActivityRecorder, ActivityScope, MemorySink
from sync_pipelines.providers.contract import IntegrationConfig
from sync_pipelines.sync.integration_config import open_provider


@pytest.fixture(scope="module")
def running_peer() -> Iterator[AwsIotPeer]:
    with AwsIotPeer() as peer:
        peer.seed(3)
        yield peer


@pytest.fixture
def peer(running_peer: AwsIotPeer) -> AwsIotPeer:
    running_peer.clear_faults()
    running_peer.proxy.clear_requests()
    return running_peer


@pytest.fixture
def recorder() -> ActivityRecorder:
    return ActivityRecorder(
        MemorySink(),
        ActivityScope(organization_id="org-br", integration_id="aws-br"),
        flush_every=1,
    )


def _provider(peer, recorder, *, timeout_s=5.0, access_key_id=None, **settings):
    config = IntegrationConfig(
        integration_id="aws-br",
        organization_id="org-br",
        provider="aws_iot",
        settings={**peer.integration_settings(), **settings},
        secrets={
            "access_key_id": access_key_id or peer.access_key_id,
            "secret_access_key": peer.secret_access_key,
        },
    )
    return open_provider(config, recorder, timeout_s=timeout_s)


def _rows(recorder):
    return sorted(recorder.sink.rows.values(), key=lambda r: (r.created_at, r.attempt))


def _summary(rows):
    return [(r.attempt, r.status, r.status_code, r.error_type) for r in rows]


def test_a_throttle_with_retry_after_is_waited_out_then_succeeds(peer, recorder):
    peer.proxy.add_faults(FaultSpec("rate_limit", times=1, retry_after_s=1))
    with _provider(peer, recorder) as provider:
        (page,) = provider.list_devices()
    assert len(page.devices) == 3
    rows = _rows(recorder)
    # the control plane throttles with a 400 ThrottlingException, as AWS does
    assert _summary(rows) == [(1, "retrying", 400, "rate_limited"), (2, "success", 200, None)]
    seen = peer.proxy.requests()
    assert seen[1].received_at - seen[0].received_at >= 1.0  # x-amz-retry-after: 1000 ms
    assert {r.request_id for r in rows} == {s.request_id for s in seen} and len(seen) == 2
    assert page.request_id == rows[-1].request_id


def test_a_burst_of_two_503s_is_three_rows_and_a_success(peer, recorder):
    peer.inject_fault("server_error", times=2)
    with _provider(peer, recorder) as provider:
        (page,) = provider.list_devices()
    assert len(page.devices) == 3
    assert _summary(_rows(recorder)) == [
        (1, "retrying", 503, "transient"),
        (2, "retrying", 503, "transient"),
        (3, "success", 200, None),
    ]
    assert [r.headers["amz-sdk-request"].split("; ")[-2] for r in peer.proxy.requests()] == [
        "attempt=1",
        "attempt=2",
        "attempt=3",
    ]


def test_an_auth_failure_is_one_row_and_never_retried(peer, recorder):
    with (
        _provider(peer, recorder, access_key_id="AKIANOTTHEPEERSKEY00") as provider,
        pytest.raises(AuthError),
    ):
        list(provider.list_devices())
    assert _summary(_rows(recorder)) == [(1, "failed", 403, "auth")]
    assert len(peer.proxy.requests()) == 1


def test_attempts_follow_the_integrations_setting(peer, recorder):
    peer.inject_fault("server_error", times=50)
    with (
        _provider(peer, recorder, retry_max_attempts=3) as provider,
        pytest.raises(TransientError) as raised,
    ):
        list(provider.list_devices())
    rows = _rows(recorder)
    assert [(r.attempt, r.status) for r in rows] == [
        (1, "retrying"),
        (2, "retrying"),
        (3, "failed"),
    ]
    assert raised.value.request_id == rows[-1].request_id
    assert len(peer.proxy.requests()) == 3


def test_a_retry_after_longer_than_the_budget_left_stops_at_once(peer, recorder):
    peer.proxy.add_faults(FaultSpec("rate_limit", times=50, retry_after_s=5))
    with _provider(peer, recorder, retry_max_total_s=2) as provider:
        started = time.monotonic()
        with pytest.raises(RateLimitedError) as raised:
            list(provider.list_devices())
        elapsed = time.monotonic() - started
    assert raised.value.retry_after_s == 5
    rows = _rows(recorder)
    assert _summary(rows) == [(1, "failed", 400, "rate_limited")]
    # no wait at all: apart from the one call itself, far less than the 2 s budget it would
    # have slept (the call's own duration is taken out, so a slow machine cannot fail this)
    assert elapsed - rows[0].response_time_ms / 1000 < 1.0


def test_state_reads_survive_a_read_timeout_and_a_shadow_503(peer, recorder):
    thing = sorted(peer.inventory())[0]
    peer.proxy.add_faults(
        FaultSpec("timeout", path="/shadow$", times=1, latency_ms=3000),
        FaultSpec("server_error", path="/shadow$", times=1, status=503),
    )
    with _provider(peer, recorder, timeout_s=0.5) as provider:
        states, failures = provider.get_states([thing])
    assert failures == [] and [s.external_id for s in states] == [thing]
    shadow_rows = [r for r in _rows(recorder) if r.metadata.get("operation") == "GetThingShadow"]
    assert _summary(shadow_rows) == [
        (1, "retrying", None, "transient"),
        (2, "retrying", 503, "transient"),
        (3, "success", 200, None),
    ]
    assert "ReadTimeoutError" in shadow_rows[0].error_message
