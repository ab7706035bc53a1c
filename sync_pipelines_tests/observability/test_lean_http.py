"""The lean client of per-device state reads (observability/lean_http.py), against the real
Golioth emulator with injected faults: every attempt a row carrying the device, one
X-Request-ID per call on the wire, Retry-After honoured and reported to the rate budget, dropped
connections and timeouts retried, the outbound guard refusing a forbidden destination, spans
when tracing is on — the same guarantees as the httpx transport, by the same `CallRecorder`."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sync_pipelines.errors import ConfigError
from sync_pipelines.observability import otel
from sync_pipelines.observability.activity import ActivityRecorder, ActivityScope, MemorySink
from sync_pipelines.observability.lean_http import USER_AGENT, LeanHttpClient, lean_serves
from sync_pipelines.observability.retrying import RetryPolicy
from sync_pipelines.outbound import ALLOW_ENV, DestinationGuard, OutboundRefused
from sync_pipelines.providers.contract import IntegrationConfig
from sync_pipelines.sync.integration_config import open_provider

FAST = {"retry_base_backoff_s": 0.01, "retry_max_backoff_s": 0.05, "retry_jitter_s": 0.01}
STATE_PATH = r"/devices/[^/]+/data$"


@pytest.fixture
def recorder() -> ActivityRecorder:
    return ActivityRecorder(
        MemorySink(), ActivityScope(organization_id="org-l", integration_id="g-l"), flush_every=1
    )


def _golioth(running, recorder, *, timeout_s=10.0, **settings):
    config = IntegrationConfig(
        integration_id="g-l",
        organization_id="org-l",
        provider="golioth",
        settings={
            "base_url": running.url,
            "project_id": running.emulator.config.project_id,
            "state_source": "device",
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


def _state_reads(running):
    return [r for r in running.emulator.requests() if r.path.endswith("/data")]


def test_each_attempt_is_a_row_with_the_device_and_one_request_id(golioth_factory, recorder):
    running = golioth_factory(device_count=2)
    device = next(running.emulator.device_ids())
    running.emulator.add_faults(
        {"kind": "server_error", "status": 502, "times": 2, "path": STATE_PATH}
    )
    with _golioth(running, recorder) as provider:
        states, failures = provider.get_states([device])
    assert failures == [] and [s.external_id for s in states] == [device]
    rows = _rows(recorder)
    assert _summary(rows) == [
        (1, "retrying", 502, "transient"),
        (2, "retrying", 502, "transient"),
        (3, "success", 200, None),
    ]
    assert {r.external_id for r in rows} == {device}
    # the lean client made them (its user agent), the key masked in the rows
    assert all(r.request_headers["user-agent"] == USER_AGENT for r in rows)
    assert all(r.request_headers["x-api-key"] == "[REDACTED]" for r in rows)
    assert all(running.api_key not in str(r.request_headers) for r in rows)
    seen = _state_reads(running)
    assert [s.status for s in seen] == [502, 502, 200]
    # one logical call: one X-Request-ID on the wire and in the rows, and on the state read
    assert {s.request_id for s in seen} == {r.request_id for r in rows} == {states[0].request_id}
    assert recorder.counts["http_requests"] == 3 and recorder.counts["http_failed"] == 0


class _Budget:
    """Stands in for the account's RateBudget: counts slots and keeps the 429s reported."""

    def __init__(self) -> None:
        self.acquired = 0
        self.throttles: list[float | None] = []

    def acquire(self) -> float:
        self.acquired += 1
        return time.time()

    def throttled(self, sent_at: float, retry_after_s: float | None) -> None:
        self.throttles.append(retry_after_s)


def _lean(
    running, recorder, *, budget=None, policy=None, timeout_s=10.0, base_url=None
) -> LeanHttpClient:
    return LeanHttpClient(
        recorder,
        base_url=base_url or running.url,
        headers={"x-api-key": running.api_key},
        timeout_s=timeout_s,
        retry_policy=policy or RetryPolicy(**{k[6:]: v for k, v in FAST.items()}),
        provider="golioth",
        budget=budget,  # type: ignore[arg-type]
    )


def _data_path(running, device: str) -> str:
    return f"/v1/projects/{running.emulator.config.project_id}/devices/{device}/data"


def test_a_429_waits_its_retry_after_and_pauses_the_budget(golioth_factory, recorder):
    running = golioth_factory(device_count=1)
    device = next(running.emulator.device_ids())
    running.emulator.add_faults({"kind": "rate_limit", "retry_after_s": 1, "times": 1})
    budget = _Budget()
    client = _lean(running, recorder, budget=budget)
    try:
        response = client.get(_data_path(running, device), device_id=device)
    finally:
        client.close()
    assert response.status_code == 200
    rows = _rows(recorder)
    assert _summary(rows) == [(1, "retrying", 429, "rate_limited"), (2, "success", 200, None)]
    assert rows[0].metadata["retry_in_s"] >= 1.0
    seen = _state_reads(running)
    assert seen[1].received_at - seen[0].received_at >= 1.0  # the server's wait, kept
    # every attempt took a slot of the account's budget, and the 429 paused it for everyone
    assert budget.acquired == 2 and budget.throttles == [1.0]
    assert response.request_id == rows[0].request_id == rows[1].request_id


def test_dropped_connections_and_timeouts_are_retried(golioth_factory, recorder):
    running = golioth_factory(device_count=1)
    device = next(running.emulator.device_ids())
    running.emulator.add_faults(
        {"kind": "drop_connection", "times": 1},
        {"kind": "timeout", "latency_ms": 3000, "times": 1},
    )
    with _golioth(running, recorder, timeout_s=0.5) as provider:
        states, failures = provider.get_states([device])
    assert failures == [] and len(states) == 1
    rows = _rows(recorder)
    assert _summary(rows) == [
        (1, "retrying", None, "transient"),
        (2, "retrying", None, "transient"),
        (3, "success", 200, None),
    ]
    # the httpx client's exception types, so one code classifies both clients' failures
    assert "RemoteProtocolError" in rows[0].error_message
    assert "ReadTimeout" in rows[1].error_message
    assert len({r.request_id for r in rows}) == 1


def test_attempts_are_bounded_and_the_last_failure_is_the_state_failure(golioth_factory, recorder):
    running = golioth_factory(device_count=1)
    device = next(running.emulator.device_ids())
    running.emulator.add_faults({"kind": "server_error", "status": 503, "path": STATE_PATH})
    with _golioth(running, recorder, retry_max_attempts=3) as provider:
        states, failures = provider.get_states([device])
    assert states == []
    (failure,) = failures
    rows = _rows(recorder)
    assert [(r.attempt, r.status) for r in rows] == [
        (1, "retrying"),
        (2, "retrying"),
        (3, "failed"),
    ]
    assert failure.error_type == "transient" and failure.request_id == rows[-1].request_id


def test_the_guard_refuses_a_forbidden_destination_before_connecting(
    golioth_factory, recorder, monkeypatch
):
    running = golioth_factory(device_count=1)
    device = next(running.emulator.device_ids())
    # a name (not an IP literal, which configuration refuses), resolved when a connection opens
    named = running.url.replace("127.0.0.1", "localhost")
    monkeypatch.setenv(ALLOW_ENV, "")  # loopback is not allowed any more
    client = _lean(running, recorder, base_url=named)
    with pytest.raises(OutboundRefused, match="localhost resolves to .*loopback"):
        client.get(_data_path(running, device), device_id=device)
    assert _summary(_rows(recorder)) == [(1, "failed", None, "config")]  # never retried
    assert _state_reads(running) == []  # nothing reached the emulator
    # through the provider: a configuration error, as the httpx client's refusal is
    with (
        _golioth(running, recorder, base_url=named) as provider,
        pytest.raises(ConfigError, match="loopback"),
    ):
        provider.get_states([device])
    assert _state_reads(running) == []


def test_a_connection_goes_to_the_address_the_guard_checked(golioth_factory, recorder, monkeypatch):
    """DNS rebinding: the name resolves to a public address when checked and to loopback a
    moment later; the connection uses the checked address, never a second resolution."""
    running = golioth_factory(device_count=1)
    device = next(running.emulator.device_ids())
    connected: list[object] = []
    real_socket = socket.socket

    class _Socket(real_socket):
        def connect(self, address):
            connected.append(address)
            raise ConnectionRefusedError("test: not connecting anywhere")

    checked = [(socket.AF_INET, ("192.0.2.10", _port(running)))]  # TEST-NET-1 stands in
    monkeypatch.setattr(DestinationGuard, "resolve", lambda self, host, port: checked)
    monkeypatch.setattr(socket, "socket", _Socket)
    client = _lean(running, recorder, policy=RetryPolicy(max_attempts=1))
    with pytest.raises(httpx.ConnectError):
        client.get(_data_path(running, device), device_id=device)
    assert connected == [("192.0.2.10", _port(running))]


def test_connections_are_kept_alive_and_a_closed_one_is_not_reused(golioth_factory, recorder):
    running = golioth_factory(device_count=3)
    devices = list(running.emulator.device_ids())
    client = _lean(running, recorder)
    try:
        for device in devices:
            assert client.get(_data_path(running, device), device_id=device).status_code == 200
        connections = client._connections
        assert connections is not None and len(connections._idle) == 1  # one, reused
        ((conn, _),) = connections._idle
        conn.sock.shutdown(2)  # as a server closing an idle connection leaves it
        assert client.get(_data_path(running, devices[0])).status_code == 200
    finally:
        client.close()
    # no attempt failed: the closed connection was dropped, not tried
    assert [r.status for r in _rows(recorder)] == ["success"] * 4


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    otel.configure_tracing(exporter)
    yield exporter
    otel.shutdown_tracing()


def test_each_attempt_is_a_client_span_matching_its_row_and_traceparent(
    golioth_factory, recorder, spans
):
    running = golioth_factory(device_count=1)
    device = next(running.emulator.device_ids())
    running.emulator.add_faults({"kind": "server_error", "status": 503, "times": 1})
    client = _lean(running, recorder)
    try:
        client.get(_data_path(running, device), device_id=device)
    finally:
        client.close()
    finished = [s for s in spans.get_finished_spans() if s.name == "GET"]
    rows = _rows(recorder)
    assert len(finished) == len(rows) == 2
    for span, row, seen in zip(finished, rows, _state_reads(running), strict=True):
        assert row.span_id == format(span.context.span_id, "016x")
        assert seen.headers["traceparent"].split("-")[2] == row.span_id
        assert span.attributes["url.full"] == row.endpoint
    assert finished[0].attributes["http.response.status_code"] == 503
    assert finished[1].attributes["http.request.resend_count"] == 1


def test_a_proxy_for_the_host_leaves_reads_to_httpx(monkeypatch):
    assert lean_serves("https://api.golioth.io")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert not lean_serves("https://api.golioth.io")
    monkeypatch.setenv("NO_PROXY", "api.golioth.io")
    assert lean_serves("https://api.golioth.io")
    assert not lean_serves("ftp://api.golioth.io")


def _port(running) -> int:
    return int(running.url.rsplit(":", 1)[1])
