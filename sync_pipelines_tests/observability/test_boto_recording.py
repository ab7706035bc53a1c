"""The recording boto3 client: one activity row per HTTP attempt — answered, refused or timed
out — and botocore's retries and the rows agree."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from sync_pipelines_peers.emulators.faults import FaultSpec
from sync_pipelines_peers.launchers.aws_iot import AwsIotPeer

from sync_pipelines.observability.activity import ActivityRecorder, ActivityScope, MemorySink
from sync_pipelines.observability.boto_recording import build_boto_client, request_id_of


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
        MemorySink(), ActivityScope(organization_id="org-b", integration_id="aws-b"), flush_every=1
    )


def _client(recorder, peer, service="iot", *, url=None, timeout_s=5.0, **kwargs):
    return build_boto_client(
        recorder,
        service,
        timeout_s=timeout_s,
        region_name=peer.region,
        endpoint_url=url or peer.url,
        aws_access_key_id=peer.access_key_id,
        aws_secret_access_key=peer.secret_access_key,
        **kwargs,
    )


def _rows(recorder):
    return sorted(recorder.sink.rows.values(), key=lambda r: (r.created_at, r.attempt))


def test_a_call_is_one_row_whose_request_id_reached_the_server(peer, recorder):
    response = _client(recorder, peer).list_things(maxResults=2)
    (row,) = _rows(recorder)
    assert (row.activity_type, row.direction, row.status, row.status_code, row.attempt) == (
        "http_request",
        "outgoing",
        "success",
        200,
        1,
    )
    assert (row.method, row.endpoint) == ("GET", "/things?maxResults=2")
    assert row.metadata["operation"] == "ListThings" and row.metadata["aws_request_id"]
    assert request_id_of(response) == row.request_id == peer.proxy.requests()[0].request_id


def test_an_error_row_carries_the_status_the_aws_code_and_its_category(peer, recorder):
    with pytest.raises(ClientError) as err:
        _client(recorder, peer).describe_thing(thingName="ghost")
    (row,) = _rows(recorder)
    assert (row.status, row.status_code, row.error_type) == ("failed", 404, "permanent")
    assert row.metadata["aws_error_code"] == "ResourceNotFoundException"
    assert request_id_of(err.value) == row.request_id


def test_a_call_about_a_thing_names_it_on_its_row_and_a_listing_names_none(peer, recorder):
    client = _client(recorder, peer)
    client.list_things(maxResults=2)
    with pytest.raises(ClientError):
        client.describe_thing(thingName="ghost")
    assert [(r.endpoint.split("?")[0], r.external_id) for r in _rows(recorder)] == [
        ("/things", None),
        ("/things/ghost", "ghost"),
    ]


def test_by_default_a_client_makes_exactly_one_attempt(peer, recorder):
    peer.inject_fault("server_error", times=3)  # botocore's own default would retry a 503 twice
    with pytest.raises(ClientError):
        _client(recorder, peer).list_things()
    assert [(r.attempt, r.status_code, r.error_type) for r in _rows(recorder)] == [
        (1, 503, "transient")
    ]


def test_three_attempts_of_a_throttled_call_are_three_rows_of_one_request(peer, recorder):
    peer.proxy.add_faults(FaultSpec("rate_limit", times=3, retry_after_s=0))
    with pytest.raises(ClientError, match="reached max retries: 2"):
        _client(recorder, peer, total_max_attempts=3).list_things()
    rows = _rows(recorder)
    assert [(r.attempt, r.status_code, r.error_type) for r in rows] == [
        (a, 400, "rate_limited") for a in (1, 2, 3)
    ]
    assert len({r.request_id for r in rows}) == 1
    assert [r.headers["amz-sdk-request"].split("; ")[-2] for r in peer.proxy.requests()] == [
        "attempt=1",
        "attempt=2",
        "attempt=3",
    ]


def test_a_refused_connection_is_a_failed_transient_row(peer, recorder):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(EndpointConnectionError) as err:
        _client(recorder, peer, url=url).list_things()
    (row,) = _rows(recorder)
    assert (row.status, row.status_code, row.error_type) == ("failed", None, "transient")
    assert (
        "EndpointConnectionError" in row.error_message
        and request_id_of(err.value) == row.request_id
    )


def test_a_read_timeout_is_a_failed_transient_row(peer, recorder):
    peer.proxy.add_faults(FaultSpec("timeout", times=1, latency_ms=5000))
    with pytest.raises(ReadTimeoutError):
        _client(recorder, peer, "iot-data", timeout_s=0.3).get_thing_shadow(thingName="thing-00000")
    (row,) = _rows(recorder)
    assert (row.status, row.error_type, row.metadata["operation"]) == (
        "failed",
        "transient",
        "GetThingShadow",
    )
    assert 250 < row.response_time_ms < 2000


def test_no_credential_reaches_a_row(peer, recorder):
    session_token = "FwoGZXIvYXdzEXAMPLEsessionTOKEN0123456789"
    _client(recorder, peer, aws_session_token=session_token).list_things()
    (row,) = _rows(recorder)
    assert row.request_headers["Authorization"] == "[REDACTED]"
    assert row.request_headers["X-Amz-Security-Token"] == "[REDACTED]"
    text = repr(row)
    assert (
        peer.access_key_id not in text
        and peer.secret_access_key not in text
        and session_token not in text
    )
