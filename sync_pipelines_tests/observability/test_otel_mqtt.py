"""OpenTelemetry over MQTT: each broker operation (against the MQTT peer's Mosquitto) is a CLIENT
span under the caller's span, and its activity row carries the span's ids."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sync_pipelines_peers.launchers.mqtt import MqttPeer

from sync_pipelines.observability import otel
from sync_pipelines.observability.activity import (
    MQTT_REQUEST,
    ActivityRecorder,
    ActivityScope,
    MemorySink,
)
from sync_pipelines.providers.contract import IntegrationConfig
from sync_pipelines.sync.integration_config import open_provider


@pytest.fixture(scope="module")
def peer() -> Iterator[MqttPeer]:
    running = MqttPeer()
    running.start()
    running.seed(3)
    yield running
    running.stop()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    otel.configure_tracing(exporter)
    yield exporter
    otel.shutdown_tracing()


def test_each_broker_operation_is_a_span_matching_its_row(peer, spans):
    recorder = ActivityRecorder(
        MemorySink(), ActivityScope(organization_id="org-r", integration_id="m-r")
    )
    config = IntegrationConfig(
        integration_id="m-r",
        organization_id="org-r",
        provider="mqtt",
        settings=peer.integration_settings(),
        secrets={"username": peer.username, "password": peer.password},
    )
    with otel.span("sync") as root, open_provider(config, recorder, timeout_s=3) as provider:
        assert sum(len(page.devices) for page in provider.list_devices()) == 3
    recorder.flush()

    rows = [r for r in recorder.sink.rows.values() if r.activity_type == MQTT_REQUEST]
    calls = {
        format(s.context.span_id, "016x"): s
        for s in spans.get_finished_spans()
        if s.kind is SpanKind.CLIENT
    }
    assert rows and {r.span_id for r in rows} == set(calls)
    for row in rows:
        span = calls[row.span_id]
        assert span.name == row.method
        assert span.attributes["sync_pipelines.request_id"] == row.request_id
        assert span.attributes["messaging.system"] == "mqtt"
        assert span.parent.span_id == root.get_span_context().span_id
    assert peer.password not in repr([dict(s.attributes) for s in calls.values()])
