"""OpenTelemetry traces: on when an OTLP endpoint is configured, otherwise nothing at all.

`configure_tracing()` reads the standard variables (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
`OTEL_EXPORTER_OTLP_ENDPOINT`; `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it
off; headers, timeout and `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` as the SDK reads
them) and exports spans over OTLP/HTTP in batches. Unset, the opentelemetry packages are not
even imported and every helper here is one flag check: callers ask `tracing_enabled()` before
building a span, so a sync without a collector pays nothing.

One trace per run: a span opened by `run_span(run_id, ...)` that has no parent takes its trace
id from the run id (a Dagster run id is a UUID: its 128 bits *are* the trace id; any other id
is hashed), so every step of a run — in one process or spread over Celery workers — lands in
the same trace without passing a context between processes. Each step's span is a root of
that trace; the HTTP, batch-write and activity spans of the step hang below it.

The provider this module installs is its own (also made the global one when configured from
the environment), so tests can swap in an in-memory exporter with `configure_tracing(exporter)`.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the packages are imported only once tracing is on
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
SERVICE_NAME = "sync_pipelines"
TRACEPARENT_HEADER = "traceparent"

_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_configured = False
#: the trace id a root span opened now must take (set by `run_span` for its run)
_run_trace_id: ContextVar[int | None] = ContextVar("sync_run_trace_id", default=None)


def tracing_enabled() -> bool:
    return _tracer is not None


def otlp_endpoint(environ: Mapping[str, str] | None = None) -> str | None:
    """The configured OTLP endpoint, or None when tracing is off by configuration."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    return next((env[name] for name in ENDPOINT_ENVS if env.get(name, "").strip()), None)


def configure_tracing(exporter: SpanExporter | None = None, *, force: bool = False) -> bool:
    """Idempotent; True when tracing is on. With `exporter` (tests, benchmarks) spans go to it
    synchronously instead of to the OTLP endpoint of the environment."""
    global _configured, _tracer, _provider
    if _configured and not force and exporter is None:
        return _tracer is not None
    _configured = True
    if exporter is None and otlp_endpoint() is None:
        return _tracer is not None  # a tracer installed earlier (tests) stays until shutdown
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME", SERVICE_NAME)}
        ),
        id_generator=_run_trace_ids(),
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)  # for libraries that trace through the global API
    previous, _provider = _provider, provider
    _tracer = provider.get_tracer("sync_pipelines")
    if previous is not None:
        previous.shutdown()
    return True


def shutdown_tracing() -> None:
    """Flush and stop (tests, and the end of a process that must not lose its last spans)."""
    global _tracer, _provider, _configured
    provider, _provider, _tracer = _provider, None, None
    _configured = False
    if provider is not None:
        provider.shutdown()


def run_trace_id(run_id: str) -> int:
    """The trace id of every span of a run: the run id's UUID bits, else a hash of it."""
    try:
        value = uuid.UUID(run_id).int
    except ValueError:
        value = int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:16], "big")
    return value or 1  # 0 is the invalid trace id


def _run_trace_ids() -> Any:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class RunTraceIds(RandomIdGenerator):
        def generate_trace_id(self) -> int:
            return _run_trace_id.get() or super().generate_trace_id()

    return RunTraceIds()


# -- spans --------------------------------------------------------------------------------------


def run_span(
    run_id: str | None, name: str, attributes: Mapping[str, Any]
) -> AbstractContextManager[Any]:
    """A span for one step of a run (a sync, an export, a replay), in the run's trace."""
    if _tracer is None:
        return nullcontext()
    return _run_span(run_id, name, attributes)


@contextmanager
def _run_span(run_id: str | None, name: str, attributes: Mapping[str, Any]) -> Iterator[Span]:
    token = _run_trace_id.set(run_trace_id(run_id) if run_id else None)
    try:
        with _span(name, {"sync_pipelines.run_id": run_id, **attributes}) as span:
            _run_trace_id.reset(token)  # only this root span takes the run's id
            token = None
            yield span
    finally:
        if token is not None:
            _run_trace_id.reset(token)


def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: str = "internal",
    fallback_parent: Any = None,
) -> AbstractContextManager[Any]:
    """A span of `kind` (internal, client, server) around a block; nothing when tracing is off.
    An exception escaping the block marks the span failed (status ERROR, `error.type`).
    `fallback_parent` (from `current_context()`) is the parent when this thread has no span of
    its own: a provider's worker threads do not inherit the caller's context."""
    if _tracer is None:
        return nullcontext()
    context = None
    if fallback_parent is not None:
        from opentelemetry.trace import get_current_span

        if not get_current_span().get_span_context().is_valid:
            context = fallback_parent
    return _span(name, attributes or {}, kind, context)


def current_context() -> Any:
    """The current OpenTelemetry context, to parent spans made later on other threads (None
    when tracing is off)."""
    if _tracer is None:
        return None
    from opentelemetry import context

    return context.get_current()


@contextmanager
def _span(
    name: str, attributes: Mapping[str, Any], kind: str = "internal", context: Any = None
) -> Iterator[Span]:
    from opentelemetry.trace import SpanKind, Status, StatusCode

    assert _tracer is not None
    with _tracer.start_as_current_span(
        name,
        context=context,
        kind=getattr(SpanKind, kind.upper()),
        attributes={k: v for k, v in attributes.items() if v is not None},
        record_exception=False,  # the exception's message is redacted below, not recorded raw
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            mark_failed(current, type(exc).__name__)
            current.set_status(Status(StatusCode.ERROR, _redacted(str(exc))[:500]))
            raise


def server_span(
    name: str, headers: Mapping[str, str], attributes: Mapping[str, Any]
) -> AbstractContextManager[Any]:
    """A SERVER span continuing the caller's trace when its request carried a `traceparent`."""
    if _tracer is None:
        return nullcontext()
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = TraceContextTextMapPropagator().extract(carrier=dict(headers))
    return _span(name, attributes, "server", parent)


def mark_failed(span: Any, error_type: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR))


def inject_traceparent(headers: Any, span: Any = None) -> None:
    """Set the W3C `traceparent` of `span` (default: the current one) on outgoing request
    headers, replacing any earlier attempt's."""
    if span is None:
        from opentelemetry.trace import get_current_span

        span = get_current_span()
    ctx = span.get_span_context()
    if ctx.is_valid:
        if TRACEPARENT_HEADER in headers:  # botocore's headers would add a second one
            del headers[TRACEPARENT_HEADER]
        flags = int(ctx.trace_flags)
        headers[TRACEPARENT_HEADER] = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{flags:02x}"


def start_client_span(name: str, attributes: Mapping[str, Any], fallback_parent: Any = None) -> Any:
    """A CLIENT span started now and ended by `end_client_span`, for calls whose start and end
    are separate callbacks (botocore's events); None when tracing is off. Not made current."""
    if _tracer is None:
        return None
    from opentelemetry.trace import SpanKind, get_current_span

    parent = None if get_current_span().get_span_context().is_valid else fallback_parent
    return _tracer.start_span(
        name,
        context=parent,
        kind=SpanKind.CLIENT,
        attributes={k: v for k, v in attributes.items() if v is not None},
    )


def end_client_span(span: Any, *, status_code: int | None, error_type: str | None) -> None:
    if status_code is not None:
        span.set_attribute("http.response.status_code", status_code)
    if error_type is not None:
        mark_failed(span, error_type)
    span.end()


def ids_of(span: Any) -> tuple[str, str]:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def current_ids() -> tuple[str | None, str | None]:
    """(trace_id, span_id) of the current span as lowercase hex (W3C form), or (None, None)."""
    if _tracer is None:
        return None, None
    from opentelemetry.trace import get_current_span

    ctx = get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def _redacted(text: str) -> str:
    from sync_pipelines.observability.redaction import redact_text

    return redact_text(text)
