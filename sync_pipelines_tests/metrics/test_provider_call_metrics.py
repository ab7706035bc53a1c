"""Every provider call attempt is counted by the client it goes through — HTTP (httpx), AWS
(botocore), MQTT — by provider, operation and status class, with its latency and, when it
failed, its error type. These read this process's own values (the default registry); the
cross-process exposition is tested in test_metrics_endpoint.py."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from botocore.exceptions import ClientError
from prometheus_client import REGISTRY
from sync_pipelines_peers.launchers.aws_iot import AwsIotPeer

from sync_pipelines.observability.activity import ActivityRecorder, ActivityScope, MemorySink
from sync_pipelines.observability.boto_recording import build_boto_client
from sync_pipelines.observability.http_recording import build_http_client
from sync_pipelines.observability.mqtt_recording import build_mqtt_connection
from sync_pipelines.observability.retrying import RetryPolicy
from sync_pipelines.providers.mqtt_client import BrokerEndpoint

REQUESTS = "sync_pipelines_provider_requests_total"
DURATIONS = "sync_pipelines_provider_request_duration_seconds_count"
ERRORS = "sync_pipelines_provider_errors_total"


class Figures:
    """The provider-call samples of this process, read before and after the calls."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.before = self._read()

    def _read(self) -> dict[tuple[str, ...], float]:
        values: dict[tuple[str, ...], float] = {}
        for family in REGISTRY.collect():
            for sample in family.samples:
                if sample.labels.get("provider") != self.provider:
                    continue
                if sample.name in (REQUESTS, DURATIONS):
                    key = (sample.name, sample.labels["operation"], sample.labels["status_class"])
                elif sample.name == ERRORS:
                    key = (sample.name, sample.labels["error_type"])
                else:
                    continue
                values[key] = sample.value
        return values

    def added(self) -> dict[tuple[str, ...], float]:
        after = self._read()
        return {
            k: v - self.before.get(k, 0.0) for k, v in after.items() if v != self.before.get(k, 0.0)
        }


def _recorder() -> ActivityRecorder:
    return ActivityRecorder(
        MemorySink(), ActivityScope(organization_id="org-m", integration_id="m-1")
    )


def _closed_port() -> int:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_http_attempts_are_counted_by_method_status_class_and_error_type(golioth_factory):
    running = golioth_factory(device_count=3)
    path = f"/v1/projects/{running.emulator.config.project_id}/devices"
    figures = Figures("golioth")
    with build_http_client(
        _recorder(),
        base_url=running.url,
        headers={"x-api-key": running.api_key},
        provider="golioth",
    ) as client:
        assert client.get(path).status_code == 200
    with build_http_client(_recorder(), base_url=running.url, provider="golioth") as client:
        assert client.get(path).status_code == 401  # no key
    with (
        build_http_client(
            _recorder(), base_url=f"http://127.0.0.1:{_closed_port()}", provider="golioth"
        ) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.get(path)
    assert figures.added() == {
        (REQUESTS, "GET", "2xx"): 1,
        (DURATIONS, "GET", "2xx"): 1,
        (REQUESTS, "GET", "4xx"): 1,
        (DURATIONS, "GET", "4xx"): 1,
        (ERRORS, "auth"): 1,
        (REQUESTS, "GET", "error"): 1,
        (DURATIONS, "GET", "error"): 1,
        (ERRORS, "transient"): 1,
    }


def test_each_retried_attempt_counts_once(golioth_factory):
    running = golioth_factory(device_count=3)
    running.emulator.add_faults({"kind": "server_error", "status": 503, "times": 2})
    policy = RetryPolicy(max_attempts=4, base_backoff_s=0.01, max_backoff_s=0.01, jitter_s=0)
    figures = Figures("golioth")
    with build_http_client(
        _recorder(),
        base_url=running.url,
        headers={"x-api-key": running.api_key},
        retry_policy=policy,
        provider="golioth",
    ) as client:
        response = client.get(f"/v1/projects/{running.emulator.config.project_id}/devices")
    assert response.status_code == 200
    added = figures.added()
    assert (added[(REQUESTS, "GET", "5xx")], added[(REQUESTS, "GET", "2xx")]) == (2, 1)
    assert added[(ERRORS, "transient")] == 2


@pytest.fixture(scope="module")
def aws_peer() -> Iterator[AwsIotPeer]:
    with AwsIotPeer() as peer:
        peer.seed(2)
        yield peer


def test_aws_attempts_are_counted_by_api_operation(aws_peer):
    figures = Figures("aws_iot")
    client = build_boto_client(
        _recorder(),
        "iot",
        timeout_s=5.0,
        provider="aws_iot",
        region_name=aws_peer.region,
        endpoint_url=aws_peer.url,
        aws_access_key_id=aws_peer.access_key_id,
        aws_secret_access_key=aws_peer.secret_access_key,
    )
    client.list_things(maxResults=2)
    with pytest.raises(ClientError):
        client.describe_thing(thingName="ghost")
    assert figures.added() == {
        (REQUESTS, "ListThings", "2xx"): 1,
        (DURATIONS, "ListThings", "2xx"): 1,
        (REQUESTS, "DescribeThing", "4xx"): 1,
        (DURATIONS, "DescribeThing", "4xx"): 1,
        (ERRORS, "permanent"): 1,
    }


def test_an_mqtt_connect_nobody_answers_counts_as_an_error_of_the_endpoints_provider():
    figures = Figures("mqtt")
    endpoint = BrokerEndpoint(host="127.0.0.1", port=_closed_port(), timeout_s=2.0)
    connection = build_mqtt_connection(_recorder(), endpoint, "metrics-test")
    with pytest.raises(Exception) as failed:
        connection.open()
    connection.close()
    assert "broker" in str(failed.value)
    assert figures.added() == {
        (REQUESTS, "CONNECT", "error"): 1,
        (DURATIONS, "CONNECT", "error"): 1,
        (ERRORS, "transient"): 1,
    }
