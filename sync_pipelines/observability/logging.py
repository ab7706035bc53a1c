"""Structured logging, configured here and nowhere else.

structlog renders each event to one JSON line (or a coloured console line in a terminal) and
hands it to the stdlib logger `sync_pipelines`, so the same line reaches stdout and — when the
Dagster instance lists `sync_pipelines` under `python_logs.managed_python_loggers` — the run's
event log. Context (run_id, job, step, organization_id, integration_id, request_id) is bound
with contextvars, never formatted into messages; redaction is the last step before rendering.
With OpenTelemetry on (observability/otel.py) every line also carries the current span's
`trace_id` and `span_id`, the same ids as the activity rows recorded in that span.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import traceback
from typing import Any

import structlog

from sync_pipelines.observability import otel
from sync_pipelines.observability.redaction import redact

SERVICE = "sync_pipelines"
LOG_FORMAT_ENV = "SYNC_LOG_FORMAT"  # json | console
LOG_LEVEL_ENV = "SYNC_LOG_LEVEL"
#: "dagster": inside a Dagster run, leave printing to the run's own console logger. It already
#: prints every line the run captures (ours, through `managed_python_loggers`, and Dagster's),
#: on stderr; a terminal showing stdout and stderr together (`dagster dev`, `make ui` sets this)
#: would otherwise show each line twice. Unset: our JSON lines on stdout as everywhere else.
LOG_IN_RUNS_ENV = "SYNC_LOG_IN_RUNS"
ROOT_LOGGER = "sync_pipelines"

_configured = False


def _add_service(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    event.setdefault("service", SERVICE)
    return event


def _add_trace_context(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """trace_id / span_id of the current OpenTelemetry span, so a line joins its trace and its
    activity rows; one flag check when tracing is off."""
    if otel.tracing_enabled():
        trace_id, span_id = otel.current_ids()
        if trace_id:
            event.setdefault("trace_id", trace_id)
            event.setdefault("span_id", span_id)
    return event


def _structure_error(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """`exc_info` → an `error` object with type, message and stack."""
    exc_info = event.pop("exc_info", None)
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        elif isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        if exc_info and exc_info[0] is not None:
            event["error"] = {
                "type": exc_info[0].__name__,
                "message": str(exc_info[1]),
                "stack": "".join(traceback.format_exception(*exc_info)),
            }
    return event


def _redact_event(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    return redact(event)


def _json_renderer() -> structlog.processors.JSONRenderer:
    return structlog.processors.JSONRenderer(default=str, separators=(",", ":"))


def configure_logging(
    fmt: str | None = None, level: str | None = None, *, force: bool = False
) -> None:
    """Idempotent; call from every entry point (CLI, Dagster definitions, tests)."""
    global _configured
    if _configured and not force:
        return
    fmt = fmt or os.environ.get(LOG_FORMAT_ENV) or ("console" if sys.stdout.isatty() else "json")
    level_name = (level or os.environ.get(LOG_LEVEL_ENV) or "INFO").upper()
    renderer = structlog.dev.ConsoleRenderer(colors=True) if fmt == "console" else _json_renderer()
    structlog.configure(
        processors=[
            # first, so a debug call below the level costs a level check, not the whole chain
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            _add_service,
            _add_trace_context,
            _structure_error,
            _redact_event,
            renderer,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger(ROOT_LOGGER)
    root.setLevel(level_name)
    root.handlers = [h for h in root.handlers if not getattr(h, "_sync_pipelines_stdout", False)]
    handler = _CurrentStdoutHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._sync_pipelines_stdout = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.propagate = False
    _configured = True


class _CurrentStdoutHandler(logging.StreamHandler):
    """Writes to whatever `sys.stdout` is at emit time, so output redirection by Dagster's
    compute-log capture (or pytest) after configuration still sees our lines."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        if _left_to_dagster() and _captured_by_a_run():
            return
        super().emit(record)


def _left_to_dagster() -> bool:
    return os.environ.get(LOG_IN_RUNS_ENV) == "dagster"


def _captured_by_a_run() -> bool:
    """A Dagster run is capturing our loggers (its handler is on `sync_pipelines` while it
    runs): the record reaches the run's console and event log through it."""
    return any(
        type(h).__name__ == "DagsterLogHandler" for h in logging.getLogger(ROOT_LOGGER).handlers
    )


def get_logger(component: str) -> structlog.stdlib.BoundLogger:
    """A logger for one component (e.g. "sync.inventory", "http"); its lines carry `component`."""
    configure_logging()
    return structlog.get_logger(f"{ROOT_LOGGER}.{component}").bind(component=component)


#: set on an exception once a line has logged it with its stack
_LOGGED = "_sync_pipelines_logged"


def mark_logged(exc: BaseException) -> None:
    """`exc` has had its line (with its stack): code it passes through on its way up logs
    nothing more about it (`was_logged`), so each failure is logged once."""
    # an exception type without a __dict__ cannot be marked: at worst it is logged twice
    with contextlib.suppress(AttributeError):
        setattr(exc, _LOGGED, True)


def was_logged(exc: BaseException) -> bool:
    return bool(getattr(exc, _LOGGED, False))


def bind_context(**fields: Any) -> None:
    """Bind correlation fields (run_id, job, step, organization_id, integration_id, ...)."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in fields.items() if v is not None})


def bound_context(**fields: Any) -> Any:
    """`bind_context` for a block: the fields are restored when it ends, so a session's run and
    step never leak into later lines of the same thread (in-process runs, the demo, tests)."""
    return structlog.contextvars.bound_contextvars(
        **{k: v for k, v in fields.items() if v is not None}
    )


def clear_context() -> None:
    structlog.contextvars.clear_contextvars()


class DagsterJsonFormatter(logging.Formatter):
    """For the instance-wide `python_logs.dagster_handler_config` in dagster.yaml.

    Renders Dagster's own log records (context.log, framework events) as JSON lines in the same
    shape as ours, taking run_id/job/step from the record's `dagster_meta`. Records that came
    from `sync_pipelines` loggers are already printed as JSON by our own handler; the
    `SkipOwnRecords` filter keeps them from being printed twice.
    """

    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None) or {}
        message = meta.get("orig_message") or record.getMessage()
        line: dict[str, Any] = {
            "timestamp": meta.get("log_timestamp"),
            "level": record.levelname.lower(),
            "event": message,
            "service": SERVICE,
            "component": "dagster",
            "run_id": meta.get("run_id"),
            "job": meta.get("job_name"),
            "step": meta.get("step_key"),
        }
        event = meta.get("dagster_event")
        if event is not None:
            line["dagster_event_type"] = getattr(event, "event_type_value", None)
        if record.exc_info:
            line["error"] = {
                "type": record.exc_info[0].__name__ if record.exc_info[0] else None,
                "message": str(record.exc_info[1]),
                "stack": self.formatException(record.exc_info),
            }
        return json.dumps(redact({k: v for k, v in line.items() if v is not None}), default=str)


class SkipOwnRecords(logging.Filter):
    """Our records are printed by our own handler; with SYNC_LOG_IN_RUNS=dagster the run's
    console prints Dagster's records too, so this JSON copy prints nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(ROOT_LOGGER) and not _left_to_dagster()
