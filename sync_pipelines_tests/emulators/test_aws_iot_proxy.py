"""The fault-injecting proxy in front of moto: transparent when no fault is asked for, and
failing the way AWS IoT does (PROVIDERS.md §2.4, §2.7) when one is."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from sync_pipelines_peers.emulators.faults import FaultSpec
from sync_pipelines_peers.emulators.moto_server import MotoServer
from sync_pipelines_peers.launchers.aws_iot import AwsIotPeer


@pytest.fixture(scope="module")
def running_peer() -> Iterator[AwsIotPeer]:
    with AwsIotPeer() as peer:
        peer.seed(5)
        yield peer


@pytest.fixture
def peer(running_peer: AwsIotPeer) -> AwsIotPeer:
    running_peer.clear_faults()
    running_peer.proxy.clear_requests()
    return running_peer


def _signed_headers(
    peer: AwsIotPeer, service: str = "iot", key: str | None = None
) -> dict[str, str]:
    """A SigV4-shaped Authorization header (moto does not check the signature; the proxy
    reads the key id)."""
    return {
        "Authorization": f"AWS4-HMAC-SHA256 Credential={key or peer.access_key_id}/20261122/{peer.region}/"
        f"{service}/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
        "X-Amz-Date": "20261122T000000Z",
        "X-Request-ID": "req-under-test",
    }


def _get(peer: AwsIotPeer, path: str, service: str = "iot", **kwargs) -> httpx.Response:
    return httpx.get(
        f"{peer.url}{path}", headers=_signed_headers(peer, service, **kwargs), timeout=10
    )


def _boto(peer: AwsIotPeer, service: str, attempts: int) -> object:
    return boto3.client(
        service,
        region_name=peer.region,
        endpoint_url=peer.url,
        aws_access_key_id=peer.access_key_id,
        aws_secret_access_key=peer.secret_access_key,
        config=Config(retries={"total_max_attempts": attempts, "mode": "standard"}),
    )


def test_requests_and_answers_pass_through_unchanged(peer):
    response = _get(peer, "/things?maxResults=2")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.headers["x-amzn-requestid"]
    body = response.json()
    assert [t["thingName"] for t in body["things"]] == ["thing-00000", "thing-00001"] and body[
        "nextToken"
    ]
    (logged,) = peer.proxy.requests()
    assert (logged.method, logged.path, logged.query, logged.status) == (
        "GET",
        "/things",
        "maxResults=2",
        200,
    )
    assert logged.request_id == "req-under-test" and logged.headers["authorization"].endswith(
        "[REDACTED]"
    )


def test_a_shadow_update_reaches_moto_and_its_answer_comes_back(peer):
    client = _boto(peer, "iot-data", 1)
    answer = client.update_thing_shadow(
        thingName="thing-00004", payload=json.dumps({"state": {"desired": {"x": 1}}}).encode()
    )
    assert json.loads(answer["payload"].read())["version"] == 2
    assert peer.desired_state("thing-00004") == {"interval_s": 60, "x": 1}


def test_control_plane_throttling_is_a_400_with_the_throttling_error_type(peer):
    peer.proxy.add_faults(FaultSpec("rate_limit", times=1, retry_after_s=3))
    response = _get(peer, "/things")
    assert response.status_code == 400 and response.json() == {"message": "Rate exceeded"}
    assert response.headers["x-amzn-errortype"] == "ThrottlingException"
    assert response.headers["x-amz-retry-after"] == "3000" and "retry-after" not in response.headers
    assert _get(peer, "/things").status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/things/thing-00000/shadow", "/api/things/shadow/ListNamedShadowsForThing/thing-00000"],
)
def test_data_plane_throttling_is_a_429_with_the_throttling_error_type(peer, path):
    peer.inject_fault("rate_limit")
    response = _get(peer, path, service="iotdata")
    assert (
        response.status_code == 429
        and response.headers["x-amzn-errortype"] == "ThrottlingException"
    )
    assert response.headers["x-amz-retry-after"] == "2000"


def test_botocore_retries_the_shaped_throttle_but_not_a_plain_400(peer):
    peer.proxy.add_faults(FaultSpec("rate_limit", times=1, retry_after_s=0))
    assert _boto(peer, "iot", 2).list_things()["things"]
    peer.proxy.add_faults(FaultSpec("server_error", status=400, times=1))
    with pytest.raises(ClientError, match="InvalidRequestException"):
        _boto(peer, "iot", 2).list_things()
    attempts = [r.headers["amz-sdk-request"].split("attempt=")[1][0] for r in peer.proxy.requests()]
    assert attempts == ["1", "2", "1"]


def test_an_auth_failure_is_a_403_unrecognized_client(peer):
    peer.inject_fault("auth_failure")
    response = _get(peer, "/things")
    assert (
        response.status_code == 403
        and response.headers["x-amzn-errortype"] == "UnrecognizedClientException"
    )
    assert response.json() == {"message": "The security token included in the request is invalid."}


def test_only_the_accepted_access_key_gets_through(peer):
    assert _get(peer, "/things", key="AKIAOTHEROTHEROTHER0").status_code == 403
    assert httpx.get(f"{peer.url}/things", timeout=10).status_code == 403  # unsigned
    assert _get(peer, "/things").status_code == 200


def test_a_server_error_is_a_503_service_unavailable(peer):
    peer.inject_fault("server_error")
    response = _get(peer, "/things")
    assert (
        response.status_code == 503
        and response.headers["x-amzn-errortype"] == "ServiceUnavailableException"
    )


def test_a_malformed_answer_is_a_200_that_is_not_json(peer):
    peer.inject_fault("malformed")
    response = _get(peer, "/things/thing-00000/shadow", service="iotdata")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_faults_are_set_over_http_and_never_hit_the_control_routes(peer):
    added = httpx.post(
        f"{peer.url}/_emulator/faults", json={"kind": "server_error", "times": 5}, timeout=10
    )
    assert added.status_code == 201
    assert (
        httpx.get(f"{peer.url}/_emulator/faults", timeout=10).json()["faults"][0]["remaining"] == 5
    )
    assert _get(peer, "/things").status_code == 503
    httpx.delete(f"{peer.url}/_emulator/faults", timeout=10)
    assert _get(peer, "/things").status_code == 200
    logged = httpx.get(f"{peer.url}/_emulator/requests", timeout=10).json()
    assert [r["status"] for r in logged["requests"]] == [503, 200]


def test_moto_server_binds_a_free_loopback_port_of_its_own():
    with MotoServer() as first, MotoServer() as second:
        assert first.port != second.port and first.port > 0
        assert httpx.get(f"{first.url}/moto-api/", timeout=10).status_code == 200
