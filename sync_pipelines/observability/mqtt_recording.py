"""MQTT broker operations as activity rows: the MQTT counterpart of `http_recording`.

Provider code gets its `MqttConnection` from `ProviderClients.mqtt`, which builds it with the
observer below, so every broker operation is recorded without the provider asking:

- one `mqtt_request` row per operation, `method` the packet type: CONNECT (until its CONNACK;
  `status_code` is the CONNACK reason code, `session_present` in metadata), SUBSCRIBE and
  UNSUBSCRIBE (until SUBACK/UNSUBACK, one row per packet; a multi-filter packet's status code is
  its highest reason code), PUBLISH at QoS >= 1 (until its PUBACK; topic, qos, retained flag and
  payload size — never the payload). A retained read is the SUBSCRIBE and UNSUBSCRIBE that make
  it, marked `purpose: retained_read`: it is not an operation of its own on the wire, and a row
  for it too would count each read three times among the run's provider calls;
- `endpoint` is `mqtt://host:port/<topic>` (the first filter of a packet, and how many more):
  no credentials; `request_id` a fresh uuid per operation (MQTT has no header to carry it),
  shared by the CONNECT attempts of one open;
- a CONNECT is retried per the integration's `RetryPolicy` (transient failures only): one row
  per attempt, `attempt` 1..N, `retrying` for an attempt another one follows (with
  `retry_in_s` in metadata), the last `success` or `failed`;
- failures carry the taxonomy category the connection raises: a CONNACK "bad user name or
  password" / "not authorized" is `auth`, an unreachable broker or a missing answer
  `transient`, a refused SUBSCRIBE `auth` (an ACL);
- received messages are not rows (the telemetry engine records batch summaries);
- with OpenTelemetry on, each operation is also a CLIENT span whose ids its row carries.

Rows are created in the calling thread (so they hang under the current operation) and finished
where the answer arrives, often paho's network thread: `ActivityRecorder.record` is thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import category_of
from sync_pipelines.observability import otel
from sync_pipelines.observability.activity import MQTT_REQUEST, ActivityRecorder, ActivityRow
from sync_pipelines.observability.http_recording import new_request_id
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.observability.metrics import ProviderCallMetrics
from sync_pipelines.observability.retrying import RetryPolicy
from sync_pipelines.providers.mqtt_client import BrokerEndpoint, MqttConnection

_log = get_logger("mqtt")


def mqtt_endpoint(host: str, port: int, topics: Sequence[str] = ()) -> str:
    """`mqtt://host:port/<first topic>`, `(+N more)` for a multi-filter packet."""
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if not topics:
        return f"mqtt://{netloc}"
    more = f" (+{len(topics) - 1} more)" if len(topics) > 1 else ""
    return f"mqtt://{netloc}/{topics[0]}{more}"


class MqttActivityObserver:
    """The `MqttObserver` that turns each broker operation of a connection into a row (and
    the provider-call metrics, labelled with the endpoint's provider)."""

    def __init__(self, recorder: ActivityRecorder) -> None:
        self._recorder = recorder
        self._connect_request_id: str | None = None
        self._metrics: ProviderCallMetrics | None = None
        # the session's span: the parent of operations begun on paho's threads
        self._trace_parent = otel.current_context()

    def begin(
        self, connection: MqttConnection, packet: str, topics: Sequence[str], **details: Any
    ) -> RecordedOperation:
        ep = connection.endpoint
        if self._metrics is None:
            self._metrics = ProviderCallMetrics(ep.provider)
        metadata: dict[str, Any] = {
            "client_id": connection.client_id,
            "protocol": connection.protocol,
        }
        if len(topics) > 1:
            metadata["topics"] = len(topics)
        attempt = int(details.pop("attempt", 1))
        metadata.update(details)
        request_id = new_request_id()
        if packet == "CONNECT":  # the attempts of one open share a request id, as HTTP's do
            if attempt > 1 and self._connect_request_id:
                request_id = self._connect_request_id
            self._connect_request_id = request_id
        row = self._recorder.new_row(
            MQTT_REQUEST,
            direction="outgoing",
            request_id=request_id,
            attempt=attempt,
            method=packet,
            endpoint=mqtt_endpoint(ep.host, ep.port, topics),
        )
        span = None
        if otel.tracing_enabled():  # a CLIENT span per broker operation, its ids on the row
            span = otel.start_client_span(
                packet,
                {
                    "messaging.system": "mqtt",
                    "messaging.operation.name": packet,
                    "messaging.destination.name": topics[0] if topics else None,
                    "server.address": ep.host,
                    "server.port": ep.port,
                    "sync_pipelines.request_id": request_id,
                },
                self._trace_parent,
            )
            row.trace_id, row.span_id = otel.ids_of(span)
        return RecordedOperation(self._recorder, row, metadata, self._metrics, span)


class RecordedOperation:
    """One operation's row, recorded when `finish` is first called (from any thread)."""

    def __init__(
        self,
        recorder: ActivityRecorder,
        row: ActivityRow,
        metadata: dict[str, Any],
        metrics: ProviderCallMetrics | None = None,
        span: Any = None,
    ) -> None:
        self.row = row
        self._span = span
        self._recorder = recorder
        self._metadata = metadata
        self._metrics = metrics or ProviderCallMetrics(None)
        self._started = time.perf_counter()
        self._lock = threading.Lock()
        self._finished = False

    def finish(
        self,
        *,
        error: BaseException | None = None,
        code: int | None = None,
        at: float | None = None,
        retrying: bool = False,
        **details: Any,
    ) -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = True
        now = time.perf_counter()
        ended = now if at is None else min(max(at, self._started), now)
        row = self.row
        row.response_time_ms = round((ended - self._started) * 1000, 3)
        row.completed_at = utc_now() - timedelta(seconds=now - ended)
        row.status_code = code
        row.metadata = {**self._metadata, **details}
        if error is None:
            row.status = "success"
        else:
            row.status = "retrying" if retrying else "failed"
            row.error_type = category_of(error)
            row.error_message = (
                f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            )
        self._recorder.record(row)  # redacts the row
        self._metrics.attempt(
            row.method or "",
            _status_class(error, code),
            row.response_time_ms / 1000,
            row.error_type,
        )
        if self._span is not None:
            if code is not None:
                self._span.set_attribute("sync_pipelines.mqtt.reason_code", code)
            error_type = type(error).__name__ if error is not None else None
            otel.end_client_span(self._span, status_code=None, error_type=error_type)
        if row.status != "success":
            _log.warning(
                "mqtt_request_failed" if row.status == "failed" else "mqtt_request_retrying",
                attempt=row.attempt,
                request_id=row.request_id,
                method=row.method,
                endpoint=row.endpoint,
                status_code=code,
                duration_ms=row.response_time_ms,
                error={"type": row.error_type, "message": row.error_message},
            )
        else:
            _log.debug(
                "mqtt_request_completed",
                request_id=row.request_id,
                method=row.method,
                endpoint=row.endpoint,
                status_code=code,
                duration_ms=row.response_time_ms,
            )


def _status_class(error: BaseException | None, code: int | None) -> str:
    """`ok`; `refused` when the broker answered with a failure code; `error` when it did not
    answer (MQTT has no HTTP classes)."""
    if error is None:
        return "ok"
    return "refused" if code is not None else "error"


def build_mqtt_connection(
    recorder: ActivityRecorder,
    endpoint: BrokerEndpoint,
    client_id: str,
    *,
    retry_policy: RetryPolicy | None = None,
    **options: Any,
) -> MqttConnection:
    """The only way provider code gets an MQTT connection (unopened; options as
    `MqttConnection`'s). `retry_policy` governs CONNECT attempts (None: one attempt)."""
    return MqttConnection(
        endpoint,
        client_id,
        observer=MqttActivityObserver(recorder),
        retry_policy=retry_policy,
        **options,
    )
