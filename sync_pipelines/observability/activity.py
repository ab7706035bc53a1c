"""The activity recorder: one row per operation and per call, written in batches.

Operations (`recorder.operation("import")`) get a `started` row at once — so a killed run still
shows what it was doing — and have it completed when they end. Calls (HTTP requests, MQTT broker
operations) are recorded by the clients providers are handed, not by provider code, and
buffered: rows go to the store every `flush_every` rows, when an operation ends and on
`flush()`, so logging never dominates a sync. Every row is redacted before it is buffered.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime
from typing import Any

from sync_pipelines.clock import utc_now
from sync_pipelines.observability import otel
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.observability.redaction import redact, redact_text

# Activity types used across the product (SPEC §4.1).
TEST_CONNECTION = "test_connection"
IMPORT = "import"
STATE_IMPORT = "state_import"
HTTP_REQUEST = "http_request"
MQTT_REQUEST = "mqtt_request"
RECORD_REJECTED = "record_rejected"
EXPORT = "export"
DESIRED_PUSH = "desired_push"
CONFLICT = "conflict"
TELEMETRY_IMPORT = "telemetry_import"
MQTT_MESSAGE = "mqtt_message"
TELEMETRY_GAP = "telemetry_gap"
WEBHOOK_PROCESSING = "webhook_processing"
#: a dead-letter replay (the operation) and each letter's outcome (resolved, retrying, quarantined)
REPLAY = "replay"
#: an integration added, changed, enabled, disabled or removed (metadata names what, never values)
CONFIG_CHANGE = "config_change"
#: a scan's deletions held by the mass-deletion guard (sync/deletions.py)
DELETION_GUARD_TRIPPED = "deletion_guard_tripped"
#: held deletions an operator confirmed (`sync-pipelines devices confirm-deletions`)
DELETIONS_CONFIRMED = "deletions_confirmed"
#: the shape of the devices' attributes or state changed (sync/shape_drift.py): every difference
#: one sync saw, in one row
SHAPE_CHANGED = "shape_changed"
#: an operator accepted a shape change (`sync-pipelines integrations accept-shape`)
SHAPE_ACCEPTED = "shape_accepted"
#: a retention purge (system-level: organization `_system`)
RETENTION = "retention"

#: the row types that are calls to a provider: one per HTTP request or MQTT broker operation
PROVIDER_CALLS = frozenset({HTTP_REQUEST, MQTT_REQUEST})
#: the values a row's `status` and `direction` take (sql/001: integration_activity_log)
STATUSES = ("started", "success", "failed", "retrying")
DIRECTIONS = ("outgoing", "incoming", "internal")
#: activity statuses that count as a failed provider call: the final failure and every attempt
#: that failed and was retried (an API answering 503 twice then 200 failed twice)
ERROR_STATUSES = ("failed", "retrying")


@dataclass(frozen=True, slots=True)
class ActivityScope:
    """Who is acting: fixed for the life of a recorder."""

    organization_id: str
    integration_id: str | None = None
    run_id: str | None = None
    step_key: str | None = None
    job_name: str | None = None


@dataclass(slots=True)
class ActivityRow:
    id: str
    organization_id: str
    integration_id: str | None
    run_id: str | None
    step_key: str | None
    # the rest by name only, so the ones with defaults keep the table's column order
    _: KW_ONLY
    request_id: str | None = None
    parent_id: str | None = None
    direction: str = "internal"
    activity_type: str
    status: str = "started"
    attempt: int = 1
    created_at: datetime
    method: str | None = None
    endpoint: str | None = None
    status_code: int | None = None
    response_time_ms: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_stack: str | None = None
    request_headers: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    completed_at: datetime | None = None
    #: the OpenTelemetry span the row was recorded in (W3C hex), when tracing is on
    trace_id: str | None = None
    span_id: str | None = None
    #: the device the row is about (a state read, a push, a rejected record), when it is one
    external_id: str | None = None


def activity_row(
    scope: ActivityScope, activity_type: str, *, created_at: datetime, **fields: Any
) -> ActivityRow:
    """The one way an activity row is made: a new id, the scope's ids, and the OpenTelemetry span
    it is recorded in when tracing is on (joining it to the trace). `fields` are the row's other
    columns (direction, status, request_id, method, endpoint, metadata ...; ActivityRow has the
    defaults). A row whose metadata names a device (`external_id`) carries it in its column too.
    Redact it (`redact_row`) before it is stored; the recorder does."""
    if fields.get("external_id") is None:
        named = (fields.get("metadata") or {}).get("external_id")
        fields["external_id"] = named if isinstance(named, str) and named else None
    if otel.tracing_enabled():
        fields["trace_id"], fields["span_id"] = otel.current_ids()
    ids = (scope.organization_id, scope.integration_id, scope.run_id, scope.step_key)
    return ActivityRow(
        str(uuid.uuid4()), *ids, activity_type=activity_type, created_at=created_at, **fields
    )


class ActivitySink:
    """Where rows go. The sync layer supplies one backed by the store."""

    def insert(self, rows: Sequence[ActivityRow]) -> None:
        raise NotImplementedError

    def complete(self, row: ActivityRow) -> None:
        raise NotImplementedError

    def insert_within(self, conn: Any, rows: Sequence[ActivityRow]) -> None:
        """Insert rows as part of the caller's open store transaction `conn`, so they commit
        (or roll back) with the data they describe. Sinks not backed by the store just insert."""
        self.insert(rows)


class NullSink(ActivitySink):
    """Discards rows (`SYNC_ACTIVITY_LOG=off`, for measuring what the log costs); the recorder
    still counts calls and latencies for the run's metadata."""

    def insert(self, rows: Sequence[ActivityRow]) -> None:
        pass

    def complete(self, row: ActivityRow) -> None:
        pass


class MemorySink(ActivitySink):
    """Keeps rows in memory (CLI dry runs, and the recorder when no store is wired)."""

    def __init__(self) -> None:
        self.rows: dict[str, ActivityRow] = {}

    def insert(self, rows: Sequence[ActivityRow]) -> None:
        for row in rows:
            self.rows[row.id] = row

    def complete(self, row: ActivityRow) -> None:
        self.rows[row.id] = row


@dataclass(slots=True)
class Operation:
    row: ActivityRow
    started: float
    metadata: dict[str, Any]

    @property
    def id(self) -> str:
        return self.row.id

    def annotate(self, **metadata: Any) -> None:
        """Attach figures to the operation's row (counts, cursor, ...)."""
        self.metadata.update(metadata)


class ActivityRecorder:
    """Records activity for one scope (an integration within a run). Thread-safe."""

    def __init__(
        self,
        sink: ActivitySink,
        scope: ActivityScope,
        *,
        flush_every: int = 500,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.sink = sink
        self.scope = scope
        self.flush_every = flush_every
        self._now = clock or utc_now
        self._buffer: list[ActivityRow] = []
        self._lock = threading.Lock()
        self._operations: list[Operation] = []
        self._log = get_logger("activity")
        self.counts = {
            "rows": 0,
            "failed": 0,
            "http_requests": 0,
            "http_failed": 0,
            "mqtt_requests": 0,
            "mqtt_failed": 0,
        }
        # per-call latencies of this recorder's provider calls (HTTP and MQTT rows), for p95
        # figures on the run
        self.call_latencies_ms: list[float] = []

    @property
    def http_latencies_ms(self) -> list[float]:
        """The former name of `call_latencies_ms` (which has MQTT operations' latencies too)."""
        return self.call_latencies_ms

    # -- rows -----------------------------------------------------------------------------

    def new_row(self, activity_type: str, **fields: Any) -> ActivityRow:
        """A row of this recorder's scope, under its current operation (`activity_row`)."""
        return activity_row(
            self.scope,
            activity_type,
            created_at=self._now(),
            parent_id=self.current_operation_id,
            **fields,
        )

    def record(self, row: ActivityRow) -> None:
        """Buffer a finished row; flushed in batches."""
        redact_row(row)
        with self._lock:
            self._buffer.append(row)
            self.counts["rows"] += 1
            if row.status == "failed":
                self.counts["failed"] += 1
            if row.activity_type in PROVIDER_CALLS:
                kind = "http" if row.activity_type == HTTP_REQUEST else "mqtt"
                self.counts[f"{kind}_requests"] += 1
                self.counts[f"{kind}_failed"] += row.status == "failed"
                if row.response_time_ms is not None:
                    self.call_latencies_ms.append(row.response_time_ms)
            full = len(self._buffer) >= self.flush_every
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            rows, self._buffer = self._buffer, []
        if rows:
            self.sink.insert(rows)

    def take_buffered(self) -> list[ActivityRow]:
        """Hand over the buffered rows for the caller to write within its own store transaction
        (`sink.insert_within`), saving them a transaction of their own. The caller must
        `put_back` them if that transaction fails, so the next `flush()` still writes them:
        rows of a failed transaction are never lost."""
        with self._lock:
            rows, self._buffer = self._buffer, []
        return rows

    def put_back(self, rows: Sequence[ActivityRow]) -> None:
        """Return rows from `take_buffered` whose transaction failed; they go first."""
        if rows:
            with self._lock:
                self._buffer[:0] = rows

    @property
    def current_operation_id(self) -> str | None:
        return self._operations[-1].id if self._operations else None

    # -- operations -----------------------------------------------------------------------

    @contextmanager
    def operation(self, activity_type: str, **metadata: Any) -> Iterator[Operation]:
        """A unit of work with a started row now and its outcome when it ends.

        The exception, if any, is recorded (type, message, stack) and re-raised.
        """
        # Which process did the work: with a distributed executor (Celery, k8s) the steps of one
        # run land on different hosts, and the on-call engineer needs to know which one.
        metadata = {**metadata, "worker": {"host": socket.gethostname(), "pid": os.getpid()}}
        row = self.new_row(activity_type, metadata=dict(metadata))
        redact_row(row)
        self.sink.insert([row])
        op = Operation(row=row, started=time.perf_counter(), metadata=dict(metadata))
        self._operations.append(op)
        try:
            yield op
        except BaseException as exc:
            self._finish(op, "failed", exc)
            raise
        else:
            self._finish(op, op.metadata.pop("_status", "success"), None)
        finally:
            self._operations.remove(op)

    def _finish(self, op: Operation, status: str, exc: BaseException | None) -> None:
        self.flush()  # the calls made inside land before the operation's outcome
        row = op.row
        row.status = status
        row.completed_at = self._now()
        row.response_time_ms = round((time.perf_counter() - op.started) * 1000, 3)
        row.metadata = op.metadata
        if exc is not None:
            row.error_type = type(exc).__name__
            row.error_message = str(exc)
            row.error_stack = "".join(traceback.format_exception(exc))
        redact_row(row)
        self.sink.complete(row)


def redact_row(row: ActivityRow) -> None:
    """Redact the row's free text and documents in place (every row, before it is stored)."""
    if row.endpoint:
        row.endpoint = redact_text(row.endpoint)
    if row.error_message:
        row.error_message = redact_text(row.error_message)
    if row.error_stack:
        row.error_stack = redact_text(row.error_stack)
    if row.request_headers:
        row.request_headers = redact(row.request_headers)
    if row.metadata:
        row.metadata = redact(row.metadata)
