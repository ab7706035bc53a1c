"""OpenTelemetry over the boto3 client: each attempt is a CLIENT span whose ids its activity row
carries, and the request that reached AWS (moto behind the peer's proxy) carries its
`traceparent` next to the X-Request-ID."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from sync_pipelines_peers.emulators.faults import FaultSpec
from sync_pipelines_peers.launchers.aws_iot import AwsIotPeer

from sync_pipelines.observability import otel
from sync_pipelines.observability.activity import ActivityRecorder, ActivityScope, MemorySink
from sync_pipelines.observability.boto_recording import build_boto_client


@pytest.fixture(scope="module")
def peer() -> Iterator[AwsIotPeer]:
    with AwsIotPeer() as peer:
        peer.seed(2)
        yield peer


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    otel.configure_tracing(exporter)
    yield exporter
    otel.shutdown_tracing()


def _client_and_recorder(peer: AwsIotPeer, **kwargs):
    recorder = ActivityRecorder(
        MemorySink(), ActivityScope(organization_id="org-b", integration_id="aws-b"), flush_every=1
    )
    client = build_boto_client(
        recorder,
        "iot",
        timeout_s=5.0,
        region_name=peer.region,
        endpoint_url=peer.url,
        aws_access_key_id=peer.access_key_id,
        aws_secret_access_key=peer.secret_access_key,
        **kwargs,
    )
    return client, recorder


def test_each_boto_attempt_is_a_span_matching_its_row_and_its_traceparent(peer, spans):
    peer.clear_faults()
    peer.proxy.clear_requests()
    peer.proxy.add_faults(FaultSpec("rate_limit", times=1, retry_after_s=0))
    client, recorder = _client_and_recorder(peer, total_max_attempts=2)
    with otel.span("sync"):
        client.list_things(maxResults=2)

    rows = sorted(recorder.sink.rows.values(), key=lambda r: r.attempt)
    calls = [s for s in spans.get_finished_spans() if s.name == "POST" or s.name == "GET"]
    assert len(rows) == len(calls) == 2
    by_span_id = {format(s.context.span_id, "016x"): s for s in calls}
    for row in rows:
        span = by_span_id[row.span_id]
        assert span.attributes["sync_pipelines.request_id"] == row.request_id
        assert span.attributes["http.response.status_code"] == row.status_code
    first = by_span_id[rows[0].span_id]
    assert first.attributes["error.type"] == "400" and first.status.status_code is StatusCode.ERROR
    assert by_span_id[rows[1].span_id].attributes["http.request.resend_count"] == 1
    sent = {r.headers["traceparent"].split("-")[2] for r in peer.proxy.requests()}
    assert sent == {row.span_id for row in rows}


def test_a_refused_aws_call_is_an_error_span(peer, spans):
    peer.clear_faults()
    peer.proxy.add_faults(FaultSpec("server_error", times=1, status=403))
    client, recorder = _client_and_recorder(peer)
    with pytest.raises(ClientError):
        client.list_things()
    (row,) = recorder.sink.rows.values()
    (span,) = [
        s for s in spans.get_finished_spans() if format(s.context.span_id, "016x") == row.span_id
    ]
    assert span.attributes["error.type"] == "403"
