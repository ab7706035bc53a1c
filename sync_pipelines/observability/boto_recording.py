"""The shared boto3 client: every HTTP attempt gets an `X-Request-ID` and an activity row.

The boto3 counterpart of `http_recording`: provider code is handed a client built here and
only makes calls. The seam is botocore's event system (botocore 1.44.5 `endpoint.py` and
`client.py`); per attempt, in the calling thread and in this order:

- `request-created` — stamp `X-Request-ID`, one per API call and kept across its attempts, so
  the rows of a retried call share it and differ by `attempt`;
- `before-send` — the final, signed request: start the clock, keep method/URL/headers;
- `response-received` — a parsed response *or* a transport error (connection refused, read
  timeout): finish the row, held until it is known whether another attempt follows;
- `needs-retry` — whether botocore may try again (see below);
- `after-call` / `after-call-error` — the call is over; `after-call-error` also finishes an
  attempt that skipped `response-received` (a body that could not be read or parsed).

Retries follow the integration's `RetryPolicy` (observability.retrying). botocore keeps
doing them — `standard` mode, its backoff with jitter, honouring `x-amz-retry-after` — with
`total_max_attempts` = the policy's `max_attempts` (`max_attempts` in that dict would count
*retries*, PROVIDERS.md §2.4). A `needs-retry` handler registered ahead of botocore's adds
the policy's other two rules: the error taxonomy (aws_errors) must call the failure
retryable (`rate_limited`/`transient`; botocore alone would also retry e.g. a 400
`LimitExceededException`, which IoT uses for hard quotas), and a retry must fit in
`max_total_s` from the first attempt (a server wait past it stops the call at once). Each
attempt's row is held until the next event tells whether another attempt follows: the next
attempt's `before-send` marks it `retrying`; `after-call` / `after-call-error` record the
last one as `success` / `failed`. Without a policy a client makes exactly one attempt.
botocore repeats POSTs too; the one write we make, UpdateThingShadow, is safe to repeat: with
a `version` a repeat of a write that did land answers 409 (a conflict, never a second write),
without one it merges the same document again.
With OpenTelemetry on, each attempt is also a CLIENT span (HTTP semantic conventions) whose ids
its row carries, and the request carries its `traceparent`. Timings stop when the response is parsed; for streaming outputs (GetThingShadow's payload)
the body is read afterwards by the caller.

boto3 is imported inside `build_boto_client` only: it is slow to import and only AWS syncs
need it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sync_pipelines.aws_errors import error_class, exception_class, retry_after_s
from sync_pipelines.clock import utc_now
from sync_pipelines.errors import PERMANENT, RETRYABLE_CATEGORIES
from sync_pipelines.observability import otel
from sync_pipelines.observability.activity import HTTP_REQUEST, ActivityRecorder, ActivityRow
from sync_pipelines.observability.http_recording import REQUEST_ID_HEADER, new_request_id
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.observability.metrics import ProviderCallMetrics, http_status_class
from sync_pipelines.observability.redaction import redact_headers, redact_url
from sync_pipelines.observability.retrying import RetryPolicy
from sync_pipelines.outbound import DestinationGuard

#: where our X-Request-ID of a call is left in the parsed response's ResponseMetadata
REQUEST_ID_METADATA_KEY = "XRequestId"
#: and on an exception raised without a response (transport and parse errors)
REQUEST_ID_ATTRIBUTE = "sync_request_id"

_CONTEXT_REQUEST_ID = "sync_request_id"
_CONTEXT_ATTEMPT = "sync_attempt"
#: the finished row of the latest attempt, until it is known whether another follows
_CONTEXT_PENDING = "sync_pending_row"
#: time.monotonic() when the call's first attempt was created (the policy's time budget)
_CONTEXT_STARTED = "sync_call_started"
#: the device (AWS IoT thing) the call is about, from its `thingName` parameter
_CONTEXT_DEVICE = "sync_external_id"

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
    #: its CLIENT span when tracing is on (observability/otel.py)
    span: Any = None
    #: the thing the call is about, if any
    external_id: str | None = None


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
    """The botocore event handlers that turn each attempt of one client into an activity row
    (and the provider-call metrics, labelled `provider`)."""

    def __init__(
        self,
        recorder: ActivityRecorder,
        service_name: str,
        policy: RetryPolicy | None = None,
        *,
        provider: str | None = None,
    ) -> None:
        self._recorder = recorder
        self._service = service_name
        self._policy = policy
        self._metrics = ProviderCallMetrics(provider)
        # the session's span: the parent of calls made from a provider's worker threads
        self._trace_parent = otel.current_context()

    def register(self, events: Any, service_event_name: str | None = None) -> None:
        events.register("before-parameter-build", self.on_parameter_build)
        events.register("request-created", self.on_request_created)
        events.register("before-send", self.on_before_send)
        events.register("response-received", self.on_response_received)
        events.register("after-call", self.on_after_call)
        events.register("after-call-error", self.on_after_call_error)
        if service_event_name and self._policy is not None:
            # first among the service's handlers: a False here wins over botocore's delay
            events.register_first(f"needs-retry.{service_event_name}", self.on_needs_retry)

    # -- handlers (botocore passes everything as keywords) ---------------------------------

    def on_parameter_build(
        self, params: Mapping[str, Any], context: dict[str, Any], **_: Any
    ) -> None:
        """A call about one thing (a shadow read or update, DescribeThing) names it on its rows."""
        thing = params.get("thingName")
        if isinstance(thing, str) and thing:
            context[_CONTEXT_DEVICE] = thing

    def on_request_created(self, request: Any, **_: Any) -> None:
        context = request.context
        request_id = context.setdefault(_CONTEXT_REQUEST_ID, new_request_id())
        context.setdefault(_CONTEXT_STARTED, time.monotonic())
        request.headers[REQUEST_ID_HEADER] = request_id

    def on_before_send(self, request: Any, **_: Any) -> None:
        context = request.context
        self._flush(context, retrying=True)  # another attempt follows the held one
        attempt = _Attempt(
            request_id=context.get(_CONTEXT_REQUEST_ID) or new_request_id(),
            attempt=int(context.get("retries", {}).get("attempt", 1)),
            method=request.method,
            url=request.url,
            headers={k: _text(v) for k, v in request.headers.items()},
            started=time.perf_counter(),
            external_id=context.get(_CONTEXT_DEVICE),
        )
        if otel.tracing_enabled():
            attempt.span = otel.start_client_span(
                request.method, _client_span_attributes(attempt), self._trace_parent
            )
            # after signing: SigV4 covers only the headers it listed, so this one is free to add
            otel.inject_traceparent(request.headers, attempt.span)
        context[_CONTEXT_ATTEMPT] = attempt

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
            row = self._row(attempt, operation, exception=exception)
        else:
            row = self._row(attempt, operation, response=response_dict, parsed=parsed_response)
        context[_CONTEXT_PENDING] = row

    def on_needs_retry(
        self,
        request_dict: Mapping[str, Any],
        attempts: int,
        response: Any = None,
        caught_exception: BaseException | None = None,
        **_: Any,
    ) -> bool | None:
        """False (no retry) when the taxonomy or the time budget forbid one; None lets botocore
        decide (attempt count, its retry quota, its backoff)."""
        policy = self._policy
        if policy is None:
            return None
        http_response = response[0] if response else None
        if caught_exception is not None:
            cls = exception_class(caught_exception)
            category = cls.category if cls else PERMANENT
        elif http_response is None or http_response.status_code < 400:
            return None
        else:
            error = (response[1] or {}).get("Error") or {}
            category = error_class(http_response.status_code, error.get("Code")).category
        if category not in RETRYABLE_CATEGORIES:
            return False
        context = request_dict.get("context") or {}
        started = context.get(_CONTEXT_STARTED)
        elapsed = time.monotonic() - started if started is not None else 0.0
        asked = retry_after_s(http_response.headers) if http_response is not None else None
        if elapsed + (asked or 0.0) >= policy.max_total_s:
            return False
        return None

    def on_after_call(self, context: dict[str, Any], **_: Any) -> None:
        self._flush(context, retrying=False)

    def on_after_call_error(
        self, context: dict[str, Any], exception: BaseException, event_name: str = "", **_: Any
    ) -> None:
        attempt = context.pop(_CONTEXT_ATTEMPT, None)
        if getattr(exception, REQUEST_ID_ATTRIBUTE, None) is None:
            request_id = attempt.request_id if attempt else context.get(_CONTEXT_REQUEST_ID)
            if request_id:
                setattr(exception, REQUEST_ID_ATTRIBUTE, request_id)
        if attempt is not None:  # the last attempt never reached `response-received`
            context[_CONTEXT_PENDING] = self._row(
                attempt, event_name.rsplit(".", 1)[-1], exception=exception
            )
        self._flush(context, retrying=False)

    # -- rows -----------------------------------------------------------------------------

    def _row(
        self,
        attempt: _Attempt,
        operation: str,
        *,
        response: Mapping[str, Any] | None = None,
        parsed: Mapping[str, Any] | None = None,
        exception: BaseException | None = None,
    ) -> ActivityRow:
        """The finished row of one attempt, not yet recorded (see `_flush`)."""
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
            external_id=attempt.external_id,
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
        if attempt.span is not None:
            row.trace_id, row.span_id = otel.ids_of(attempt.span)
            error_type = None
            if exception is not None:
                error_type = type(exception).__name__
            elif (row.status_code or 0) >= 400:
                error_type = str(row.status_code)
            otel.end_client_span(attempt.span, status_code=row.status_code, error_type=error_type)
        status_class = "error" if exception is not None else http_status_class(row.status_code)
        self._metrics.attempt(operation, status_class, elapsed_ms / 1000, row.error_type)
        return row

    def _flush(self, context: dict[str, Any], *, retrying: bool) -> None:
        """Record the held row of the latest attempt: `retrying` when another attempt follows."""
        row = context.pop(_CONTEXT_PENDING, None)
        if row is None:
            return
        if retrying:
            row.status = "retrying"
        self._recorder.record(row)
        meta = row.metadata
        fields = dict(
            request_id=row.request_id,
            method=row.method,
            endpoint=row.endpoint,
            operation=meta.get("operation"),
            attempt=row.attempt,
            status_code=row.status_code,
            duration_ms=row.response_time_ms,
        )
        if row.status == "success":
            _log.debug("http_request_completed", **fields)
            return
        error = {"type": row.error_type, "message": row.error_message}
        if retrying:
            _log.info("http_request_retrying", **fields, error=error)
        else:
            _log.warning("http_request_failed", **fields, error=error)


def _client_span_attributes(attempt: _Attempt) -> dict[str, Any]:
    parts = urlsplit(attempt.url)
    return {
        "http.request.method": attempt.method,
        "url.full": redact_url(attempt.url),
        "server.address": parts.hostname,
        "server.port": parts.port or (443 if parts.scheme == "https" else 80),
        "http.request.resend_count": attempt.attempt - 1 if attempt.attempt > 1 else None,
        "sync_pipelines.request_id": attempt.request_id,
    }


def _text(value: Any) -> str:
    # botocore encodes header values to bytes before preparing the request
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def build_boto_client(
    recorder: ActivityRecorder,
    service_name: str,
    *,
    timeout_s: float,
    retry_policy: RetryPolicy | None = None,
    total_max_attempts: int | None = None,
    max_pool_connections: int = 10,
    provider: str | None = None,
    region_name: str | None = None,
    endpoint_url: str | None = None,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    aws_session_token: str | None = None,
    **client_kwargs: Any,
) -> Any:
    """The only way provider code gets a boto3 client (see the module docstring).

    Attempts per call: `total_max_attempts` when given, else the policy's `max_attempts`,
    else 1 (a bare client makes no hidden retries; `ProviderClients` passes the policy).
    `provider`: the metrics' provider label."""
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
    if total_max_attempts is not None:
        attempts = total_max_attempts
    else:
        attempts = retry_policy.max_attempts if retry_policy is not None else 1
    config = Config(
        retries={"total_max_attempts": max(1, attempts), "mode": "standard"},
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        max_pool_connections=max_pool_connections,
    )
    client = session.client(service_name, endpoint_url=endpoint_url, config=config, **client_kwargs)
    guard = DestinationGuard()
    # first: a host the service may not call is refused before the attempt is even opened
    client.meta.events.register_first(
        "before-send", lambda request, **_: guard.check_url(request.url)
    )
    BotoActivityHooks(recorder, service_name, retry_policy, provider=provider).register(
        client.meta.events, client.meta.service_model.service_id.hyphenize()
    )
    return client
