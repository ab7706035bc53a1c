"""OpenTelemetry in the webhook receiver (under uvicorn on a loopback port): each delivery is a
SERVER span, continuing the sender's trace when it sent a `traceparent`, and the delivery's
activity row carries the span's ids."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.observability import otel
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.webhooks.app import WEBHOOK_RECEIVED, create_receiver_app
from sync_pipelines.webhooks.verification import STANDARD_WEBHOOKS
from sync_pipelines_tests.webhook_support import register_webhook_integration, signed

SENDER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SENDER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    otel.configure_tracing(exporter)
    yield exporter
    otel.shutdown_tracing()


def test_a_delivery_is_a_server_span_in_the_senders_trace_and_its_row_joins_it(
    sqlite_store, monkeypatch, spans
):
    _, secret = register_webhook_integration(
        sqlite_store,
        monkeypatch,
        provider="golioth",
        integration_id="gw-t",
        scheme=STANDARD_WEBHOOKS,
    )
    body, headers = signed(secret, {"temp": 1}, ce_source="dev-1", ce_type="io.golioth.data.v1")
    headers["traceparent"] = f"00-{SENDER_TRACE}-{SENDER_SPAN}-01"
    with EmulatorServer(create_receiver_app(sqlite_store)) as server:
        response = httpx.post(f"{server.url}/webhooks/golioth/gw-t", content=body, headers=headers)
        refused = httpx.post(f"{server.url}/webhooks/golioth/gw-t", content=b"{}")
    assert (response.status_code, refused.status_code) == (202, 401)

    accepted, rejected = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert accepted.name == "POST /webhooks/{provider}/{integration_id}"
    assert format(accepted.context.trace_id, "032x") == SENDER_TRACE
    assert format(accepted.parent.span_id, "016x") == SENDER_SPAN
    assert accepted.attributes["http.response.status_code"] == 202
    assert accepted.attributes["sync_pipelines.integration_id"] == "gw-t"
    # a refused delivery is the sender's error: recorded on the span, not an error of ours
    assert rejected.attributes["http.response.status_code"] == 401
    assert rejected.status.status_code is not StatusCode.ERROR

    with sqlite_store.connect() as conn:
        rows = activity_rows(conn, "org-a", integration_id="gw-t", activity_type=WEBHOOK_RECEIVED)
    assert {(r["status_code"], r["trace_id"], r["span_id"]) for r in rows} == {
        (s.attributes["http.response.status_code"], *otel.ids_of(s)) for s in (accepted, rejected)
    }
