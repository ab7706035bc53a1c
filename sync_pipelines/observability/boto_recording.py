"""The shared boto3 client: every HTTP attempt gets an `X-Request-ID` and an activity row.

The boto3 counterpart of `http_recording`: provider code is handed a client built here and
only makes calls. The seam is botocore's event system (botocore 1.44.5 `endpoint.py` and
`client.py`); per attempt, in the calling thread and in this order:

- `request-created` — stamp `X-Request-ID`, one per API call and kept across its attempts, so
  the rows of a retried call share it and differ by `attempt`;
- `before-send` — the final, signed request: start the clock, keep method/URL/headers;
- `response-received` — a parsed response *or* a transport error (connection refused, read
  timeout): finish the row;
- `after-call-error` — an exception that skipped `response-received` (a body that could not
  be read or parsed): finish the row if it is still open.

Retries are deliberate. `Config(retries={"max_attempts": N})` counts *retries* (N + 1 attempts;
PROVIDERS.md §2.4), so the client is built with `total_max_attempts`, which counts attempts,
in `standard` mode, default **1**: no hidden retries, the sync's own retry layer decides. With
`total_max_attempts=3` a throttled call makes three attempts and leaves three rows, attempts
1, 2, 3 — the activity log and botocore agree. Timings stop when the response is parsed; for
streaming outputs (GetThingShadow's payload) the body is read afterwards by the caller.

boto3 is imported inside `build_boto_client` only: it is slow to import and only AWS syncs
need it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sync_pipelines.aws_errors import error_class, exception_class
from sync_pipelines.clock import utc_now
from sync_pipelines.errors import PERMANENT
from sync_pipelines.observability.activity import HTTP_REQUEST, ActivityRecorder
from sync_pipelines.observability.http_recording import REQUEST_ID_HEADER, new_request_id
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.observability.redaction import redact_headers, redact_url

#: where our X-Request-ID of a call is left in the parsed response's ResponseMetadata
REQUEST_ID_METADATA_KEY = "XRequestId"
#: and on an exception raised without a response (transport and parse errors)
REQUEST_ID_ATTRIBUTE = "sync_request_id"

_CONTEXT_REQUEST_ID = "sync_request_id"
_CONTEXT_ATTEMPT = "sync_attempt"

_log = get_logger("http")


@dataclass(slots=True)
class _Attempt:
    """One HTTP attempt between `before-send` and the event that finishes its row."""

    request_id: str
    attempt: int
    method: str
    url: str
    headers: dict[str, str]
    started: float


def request_id_of(outcome: Any) -> str | None:
    """Our X-Request-ID of the call that produced `outcome` (a response dict, a ClientError, or
    an exception raised without a response)."""
    response = outcome if isinstance(outcome, Mapping) else getattr(outcome, "response", None)
    if isinstance(response, Mapping):
        rid = response.get("ResponseMetadata", {}).get(REQUEST_ID_METADATA_KEY)
        if rid:
            return rid
    return getattr(outcome, REQUEST_ID_ATTRIBUTE, None)


class BotoActivityHooks:
    """The botocore event handlers that turn each attempt of one client into an activity row."""

    def __init__(self, recorder: ActivityRecorder, service_name: str) -> None:
        self._recorder = recorder
        self._service = service_name

    def register(self, events: Any) -> None:
        events.register("request-created", self.on_request_created)
        events.register("before-send", self.on_before_send)
        events.register("response-received", self.on_response_received)
        events.register("after-call-error", self.on_after_call_error)

    # -- handlers (botocore passes everything as keywords) ---------------------------------

    def on_request_created(self, request: Any, **_: Any) -> None:
        context = request.context
        request_id = context.setdefault(_CONTEXT_REQUEST_ID, new_request_id())
        request.headers[REQUEST_ID_HEADER] = request_id

    def on_before_send(self, request: Any, **_: Any) -> None:
        context = request.context
        context[_CONTEXT_ATTEMPT] = _Attempt(
            request_id=context.get(_CONTEXT_REQUEST_ID) or new_request_id(),
            attempt=int(context.get("retries", {}).get("attempt", 1)),
            method=request.method,
            url=request.url,
            headers={k: _text(v) for k, v in request.headers.items()},
            started=time.perf_counter(),
        )

    def on_response_received(
        self,
        context: dict[str, Any],
        exception: BaseException | None = None,
        response_dict: Mapping[str, Any] | None = None,
        parsed_response: dict[str, Any] | None = None,
        event_name: str = "",
        **_: Any,
    ) -> None:
        attempt = context.pop(_CONTEXT_ATTEMPT, None)
        if attempt is None:  # the send never started (e.g. signing failed): no HTTP attempt
            return
        operation = event_name.rsplit(".", 1)[-1]
        if parsed_response is not None:
            parsed_response.setdefault("ResponseMetadata", {})[REQUEST_ID_METADATA_KEY] = (
                attempt.request_id
            )
        if exception is not None:
            setattr(exception, REQUEST_ID_ATTRIBUTE, attempt.request_id)
            self._finish(attempt, operation, exception=exception)
        else:
            self._finish(attempt, operation, response=response_dict, parsed=parsed_response)

    def on_after_call_error(
        self, context: dict[str, Any], exception: BaseException, event_name: str = "", **_: Any
    ) -> None:
        attempt = context.pop(_CONTEXT_ATTEMPT, None)
        if getattr(exception, REQUEST_ID_ATTRIBUTE, None) is None:
            request_id = attempt.request_id if attempt else context.get(_CONTEXT_REQUEST_ID)
            if request_id:
                setattr(exception, REQUEST_ID_ATTRIBUTE, request_id)
        if attempt is not None:
            self._finish(attempt, event_name.rsplit(".", 1)[-1], exception=exception)

    # -- rows -----------------------------------------------------------------------------

    def _finish(
        self,
        attempt: _Attempt,
        operation: str,
        *,
        response: Mapping[str, Any] | None = None,
        parsed: Mapping[str, Any] | None = None,
        exception: BaseException | None = None,
    ) -> None:
        elapsed_ms = round((time.perf_counter() - attempt.started) * 1000, 3)
        parts = urlsplit(attempt.url)
        endpoint = redact_url(parts.path + (f"?{parts.query}" if parts.query else ""))
        metadata: dict[str, Any] = {
            "service": self._service,
            "operation": operation,
            "host": parts.netloc,
        }
        row = self._recorder.new_row(
            HTTP_REQUEST,
            direction="outgoing",
            request_id=attempt.request_id,
            attempt=attempt.attempt,
            method=attempt.method,
            endpoint=endpoint,
            request_headers=redact_headers(attempt.headers),
        )
        row.response_time_ms = elapsed_ms
        row.completed_at = utc_now()
        if exception is not None:
            cls = exception_class(exception)
            row.status = "failed"
            row.error_type = cls.category if cls else PERMANENT
            row.error_message = f"{type(exception).__name__}: {exception}"
        else:
            status = int(response["status_code"]) if response else None
            headers = response.get("headers", {}) if response else {}
            error = (parsed or {}).get("Error") or {}
            code = error.get("Code") or None
            aws_request_id = headers.get("x-amzn-RequestId") or (parsed or {}).get(
                "ResponseMetadata", {}
            ).get("RequestId")
            metadata["aws_request_id"] = aws_request_id
            row.status_code = status
            if status is not None and status >= 400:
                metadata["aws_error_code"] = code
                row.status = "failed"
                row.error_type = error_class(status, code).category
                message = str(error.get("Message") or "")[:500]
                row.error_message = f"HTTP {status}: {code or 'error'}" + (
                    f": {message}" if message else ""
                )
            else:
                row.status = "success"
        row.metadata = metadata
        self._recorder.record(row)
        if row.status == "failed":
            _log.warning(
                "http_request_failed",
                request_id=attempt.request_id,
                method=attempt.method,
                endpoint=endpoint,
                operation=operation,
                attempt=attempt.attempt,
                status_code=row.status_code,
                duration_ms=elapsed_ms,
                error={"type": row.error_type, "message": row.error_message},
            )
        else:
            _log.debug(
                "http_request_completed",
                request_id=attempt.request_id,
                method=attempt.method,
                endpoint=endpoint,
                operation=operation,
                status_code=row.status_code,
                attempt=attempt.attempt,
                duration_ms=elapsed_ms,
            )


def _text(value: Any) -> str:
    # botocore encodes header values to bytes before preparing the request
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def build_boto_client(
    recorder: ActivityRecorder,
    service_name: str,
    *,
    timeout_s: float,
    total_max_attempts: int = 1,
    max_pool_connections: int = 10,
    region_name: str | None = None,
    endpoint_url: str | None = None,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    aws_session_token: str | None = None,
    **client_kwargs: Any,
) -> Any:
    """The only way provider code gets a boto3 client (see the module docstring)."""
    import boto3
    from botocore.config import Config

    # A fresh Session per client: boto3's default session is process-global, and two
    # integrations must never share credentials or region.
    session = boto3.session.Session(
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        aws_session_token=aws_session_token,
        region_name=region_name,
    )
    config = Config(
        retries={"total_max_attempts": max(1, total_max_attempts), "mode": "standard"},
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        max_pool_connections=max_pool_connections,
    )
    client = session.client(service_name, endpoint_url=endpoint_url, config=config, **client_kwargs)
    BotoActivityHooks(recorder, service_name).register(client.meta.events)
    return client
