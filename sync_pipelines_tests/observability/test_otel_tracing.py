"""OpenTelemetry: one trace per sync run, an HTTP span per provider call matching its activity row,
batch writes as spans, `traceparent` on the wire, trace ids in log lines — and nothing at all
when no OTLP endpoint is configured."""

from __future__ import annotations

import contextlib
import json
import uuid

import dagster as dg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from sync_pipelines.defs.provider_assets import PROVIDER_DEFS
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.errors import AuthError
from sync_pipelines.observability import otel
from sync_pipelines.observability.logging import configure_logging
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines_tests.metrics.test_provider_call_metrics import REQUESTS, Figures
from sync_pipelines_tests.observability.backend_sinks import BackendSink


@pytest.fixture
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    otel.configure_tracing(exporter)
    yield exporter
    otel.shutdown_tracing()


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def _json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
    return lines


def _sync(store, integ, open_session, run_id: str):
    with open_session(store, integ.integration_id, run_id=run_id) as session:
        return sync_devices(session, batch_size=100)


def test_a_sync_is_one_trace_whose_http_spans_match_the_activity_rows(
    store, golioth, register_golioth, open_session, spans
):
    integ = register_golioth(store, golioth)
    run_id = str(uuid.uuid4())
    _sync(store, integ, open_session, run_id)

    finished = spans.get_finished_spans()
    trace_id = otel.run_trace_id(run_id)
    assert {s.context.trace_id for s in finished} == {trace_id}
    (root,) = [s for s in finished if s.parent is None]
    assert root.attributes["sync_pipelines.run_id"] == run_id
    assert root.attributes["sync_pipelines.integration_id"] == integ.integration_id

    with store.connect() as conn:
        calls = activity_rows(
            conn, integ.organization_id, run_id=run_id, activity_type="http_request"
        )
        every_row = activity_rows(conn, integ.organization_id, run_id=run_id)
    http_spans = [s for s in finished if s.kind is SpanKind.CLIENT]
    assert len(calls) == len(http_spans) == 3  # 250 devices, pages of 100
    assert {(r["request_id"], r["span_id"]) for r in calls} == {
        (s.attributes["sync_pipelines.request_id"], _hex(s.context.span_id, 16)) for s in http_spans
    }
    assert {r["trace_id"] for r in every_row} == {_hex(trace_id, 32)}


def test_http_spans_follow_the_http_client_conventions_without_secrets(
    sqlite_store, golioth, register_golioth, open_session, spans
):
    integ = register_golioth(sqlite_store, golioth)
    _sync(sqlite_store, integ, open_session, str(uuid.uuid4()))

    span = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT)
    assert span.name == "GET"
    assert span.attributes["http.request.method"] == "GET"
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["server.address"] == "127.0.0.1"
    assert span.attributes["url.full"].startswith(golioth.url)
    assert "error.type" not in span.attributes
    exported = json.dumps([dict(s.attributes) for s in spans.get_finished_spans()])
    assert golioth.api_key not in exported


def test_a_failed_call_is_an_error_span_with_its_status_as_error_type(
    sqlite_store, golioth, register_golioth, open_session, spans
):
    integ = register_golioth(sqlite_store, golioth)
    golioth.emulator.faults.add([{"kind": "auth_failure"}])
    with pytest.raises(AuthError):
        _sync(sqlite_store, integ, open_session, str(uuid.uuid4()))

    (call,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert call.attributes["http.response.status_code"] == 401
    assert call.attributes["error.type"] == "401"
    assert call.status.status_code is StatusCode.ERROR
    root = next(s for s in spans.get_finished_spans() if s.parent is None)
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes["error.type"] == "AuthError"


def test_traceparent_goes_out_next_to_the_request_id(
    sqlite_store, golioth, register_golioth, open_session, spans
):
    integ = register_golioth(sqlite_store, golioth)
    _sync(sqlite_store, integ, open_session, str(uuid.uuid4()))

    by_span = {
        _hex(s.context.span_id, 16): s
        for s in spans.get_finished_spans()
        if s.kind is SpanKind.CLIENT
    }
    received = [r for r in golioth.emulator.request_log.entries() if r.path.startswith("/v1")]
    assert received
    for request in received:
        version, trace_id, span_id, flags = request.headers["traceparent"].split("-")
        assert version == "00" and int(flags, 16) & 1  # sampled
        assert by_span[span_id].attributes["sync_pipelines.request_id"] == request.request_id
        assert int(trace_id, 16) == by_span[span_id].context.trace_id


def test_each_batch_write_is_a_span_under_the_sync(
    sqlite_store, golioth, register_golioth, open_session, spans
):
    integ = register_golioth(sqlite_store, golioth)
    _sync(sqlite_store, integ, open_session, str(uuid.uuid4()))

    finished = spans.get_finished_spans()
    root = next(s for s in finished if s.parent is None)
    writes = [s for s in finished if s.name == "batch_write devices"]
    assert sum(s.attributes["sync_pipelines.rows"] for s in writes) == 250
    assert {s.parent.span_id for s in writes} == {root.context.span_id}


def test_the_log_lines_of_a_sync_carry_its_trace_id(
    sqlite_store, golioth, register_golioth, open_session, spans, capfd
):
    configure_logging("json", "DEBUG", force=True)  # batch_committed is a debug line
    integ = register_golioth(sqlite_store, golioth)
    run_id = str(uuid.uuid4())
    _sync(sqlite_store, integ, open_session, run_id)

    lines = [line for line in _json_lines(capfd.readouterr().out) if line.get("run_id") == run_id]
    assert {"sync_started", "sync_completed", "batch_committed"} <= {
        line["event"] for line in lines
    }
    assert {line.get("trace_id") for line in lines} == {_hex(otel.run_trace_id(run_id), 32)}
    assert all(len(line["span_id"]) == 16 for line in lines)


def test_every_step_of_a_dagster_run_joins_the_run_trace(
    sqlite_store, golioth, register_golioth, spans
):
    integ = register_golioth(sqlite_store, golioth)
    golioth_defs = PROVIDER_DEFS["golioth"]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("golioth_integrations", [integ.integration_id])
        result = dg.materialize(
            [golioth_defs.devices, golioth_defs.device_states],
            partition_key=integ.integration_id,
            instance=instance,
            resources={"store": SyncStoreResource(database_url=sqlite_store.url)},
        )
    roots = [s for s in spans.get_finished_spans() if s.parent is None]
    assert sorted(s.attributes["sync_pipelines.step"] for s in roots) == [
        "golioth_device_states",
        "golioth_devices",
    ]
    assert {s.context.trace_id for s in spans.get_finished_spans()} == {
        otel.run_trace_id(result.run_id)
    }


def test_spans_reach_an_otlp_http_collector(
    sqlite_store, golioth, register_golioth, open_session, monkeypatch
):
    with BackendSink() as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        assert otel.configure_tracing(force=True)
        integ = register_golioth(sqlite_store, golioth)
        run_id = str(uuid.uuid4())
        try:
            _sync(sqlite_store, integ, open_session, run_id)
        finally:
            otel.shutdown_tracing()  # flushes the batch processor
        exported = collector.otlp_spans()

    assert {s.trace_id.hex() for s in exported} == {_hex(otel.run_trace_id(run_id), 32)}
    client = [s for s in exported if s.kind == s.SPAN_KIND_CLIENT]
    assert len(client) == 3
    attributes = {a.key: a.value for a in client[0].attributes}
    assert attributes["http.request.method"].string_value == "GET"
    assert attributes["http.response.status_code"].int_value == 200


def test_nothing_is_traced_without_an_endpoint(
    sqlite_store, golioth, register_golioth, open_session, monkeypatch
):
    for name in otel.ENDPOINT_ENVS:
        monkeypatch.delenv(name, raising=False)
    assert not otel.configure_tracing(force=True)
    integ = register_golioth(sqlite_store, golioth)
    run_id = str(uuid.uuid4())
    _sync(sqlite_store, integ, open_session, run_id)

    with sqlite_store.connect() as conn:
        rows = activity_rows(conn, integ.organization_id, run_id=run_id)
    assert rows and all(r["trace_id"] is None and r["span_id"] is None for r in rows)
    assert all("traceparent" not in r.headers for r in golioth.emulator.request_log.entries())


def test_endpoint_switches_follow_the_standard_variables():
    assert otel.otlp_endpoint({}) is None
    assert otel.otlp_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == "http://c:4318"
    assert otel.otlp_endpoint({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert (
        otel.otlp_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_SDK_DISABLED": "true"})
        is None
    )
    assert (
        otel.otlp_endpoint(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_TRACES_EXPORTER": "none"}
        )
        is None
    )


def test_a_run_id_that_is_not_a_uuid_still_names_one_trace():
    assert (
        otel.run_trace_id("cli-abc") == otel.run_trace_id("cli-abc") != otel.run_trace_id("cli-abd")
    )
    run_id = str(uuid.uuid4())
    assert _hex(otel.run_trace_id(run_id), 32) == run_id.replace("-", "")


def test_prometheus_metrics_keep_counting_with_tracing_on(
    sqlite_store, golioth, register_golioth, open_session, spans
):
    integ = register_golioth(sqlite_store, golioth)
    figures = Figures("golioth")
    _sync(sqlite_store, integ, open_session, str(uuid.uuid4()))

    added = figures.added()
    assert added[(REQUESTS, "GET", "2xx")] == 3
    assert len([s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]) == 3
