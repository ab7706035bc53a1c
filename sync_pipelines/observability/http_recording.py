"""The shared HTTP client: every outgoing call gets an `X-Request-ID` and an activity row.

The seam is an httpx transport wrapping the real one, so provider code cannot forget: it is
handed a client built here and only makes requests. The transport sees what event hooks do
not — timeouts and dropped connections — and times the whole exchange, body included.

Retries are structural too: the transport retries each call per the integration's
`RetryPolicy` (observability.retrying, on tenacity) and every attempt is its own row, `attempt`
1..N, all under the call's one `X-Request-ID` so a trace shows them together. An attempt that
another follows is `retrying` (with its status code / error type and the wait in
`metadata.retry_in_s`); the last is `success` or `failed`. Providers see only the last
response or exception, exactly as without retries. What is repeated: a failure the taxonomy
calls retryable (429 → rate_limited, 5xx/408 → transient, timeouts and dropped or refused
connections), on a request that may be sent again (`is_repeatable`: idempotent methods, a
POST/PATCH made safe by `If-Match`, an `Idempotency-Key` or the provider's
`IDEMPOTENT_EXTENSION`); any other POST/PATCH only when it never left (refused connection,
connect or pool timeout). `Retry-After` (seconds or an HTTP-date) is honoured. A 429 does not
count against the attempt cap: a throttled call is retried until the time budget is spent.

Given a `RateBudget` (providers/pacing.py: the provider account's shared pace), every attempt
waits for a slot of it before it is sent — before its row is opened, so a row's time is the
exchange's alone — and a 429 is reported to it, pausing every user of the account.

With OpenTelemetry on (observability/otel.py) each attempt is also a CLIENT span following the
HTTP semantic conventions, its row carries the span's ids, and the request carries its W3C
`traceparent` next to the `X-Request-ID`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import tenacity

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import RETRYABLE_CATEGORIES, category_of, error_class_for_status
from sync_pipelines.observability import otel
from sync_pipelines.observability.activity import HTTP_REQUEST, ActivityRecorder, ActivityRow
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.observability.metrics import ProviderCallMetrics, http_status_class
from sync_pipelines.observability.redaction import redact_headers, redact_url
from sync_pipelines.observability.retrying import (
    SINGLE_ATTEMPT,
    RetryPolicy,
    parse_retry_after,
    retryable_error,
)
from sync_pipelines.outbound import DestinationGuard

REQUEST_ID_HEADER = "X-Request-ID"
#: set to True in a POST/PATCH request's `extensions` by a provider whose operation is
#: idempotent, so the transport may repeat it (see `is_repeatable`)
IDEMPOTENT_EXTENSION = "sync_idempotent"
#: the device a request is about, set in its `extensions` by the provider (a state read, a
#: desired push): each attempt's row carries it, so a device's trace finds its calls
DEVICE_EXTENSION = "sync_device_id"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

if TYPE_CHECKING:
    from sync_pipelines.providers.pacing import RateBudget

_log = get_logger("http")


def new_request_id() -> str:
    return str(uuid.uuid4())


@dataclass(slots=True)
class _Call:
    """One logical call through the transport: its attempts share the request (and its
    X-Request-ID); the row of the last attempt waits here until it is known whether another
    attempt follows."""

    request: httpx.Request
    request_id: str
    endpoint: str
    idempotent: bool
    attempt: int = 0
    pending: ActivityRow | None = None
    response: httpx.Response | None = None


class GuardedTransport(httpx.BaseTransport):
    """Refuses a request whose host is, or resolves to, an address the service may not call
    (outbound.py: loopback, private, cloud metadata…) before any byte is sent."""

    def __init__(self, inner: httpx.BaseTransport, guard: DestinationGuard) -> None:
        self._inner = inner
        self._guard = guard

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        self._guard.check(url.host, url.port or (443 if url.scheme == "https" else 80))
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class RecordingTransport(httpx.BaseTransport):
    """Records every attempt (an activity row and the provider-call metrics, labelled
    `provider`) and retries per `policy` (one attempt when None)."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        recorder: ActivityRecorder,
        policy: RetryPolicy | None = None,
        *,
        provider: str | None = None,
        budget: RateBudget | None = None,
    ) -> None:
        self._inner = inner
        self._budget = budget
        self._recorder = recorder
        self._metrics = ProviderCallMetrics(provider)
        # the span the client was built under (the session's): the parent of calls made from
        # a provider's worker threads, which do not inherit the caller's context
        self._trace_parent = otel.current_context()
        self.policy = policy or SINGLE_ATTEMPT
        self._retrying = self.policy.retrying(
            _should_retry,
            retry_after=_retry_after,
            throttled=_throttled,
            before_sleep=self._before_retry,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request_id = request.headers.get(REQUEST_ID_HEADER) or new_request_id()
        request.headers[REQUEST_ID_HEADER] = request_id
        call = _Call(request, request_id, redact_url(str(request.url)), is_repeatable(request))
        if self.policy.retries:
            request.read()  # a body sent again must be bytes, not a spent stream
        try:
            return self._retrying(self._attempt, call)
        finally:
            if call.pending is not None:  # the last attempt: its row keeps success / failed
                self._recorder.record(call.pending)

    def _attempt(self, call: _Call) -> httpx.Response:
        if self._budget is None:
            return self._traced_attempt(call)
        sent_at = self._budget.acquire()
        response = self._traced_attempt(call)
        if response.status_code == 429:
            self._budget.throttled(sent_at, parse_retry_after(response.headers.get("Retry-After")))
        return response

    def _traced_attempt(self, call: _Call) -> httpx.Response:
        call.attempt += 1
        if not otel.tracing_enabled():
            return self._send(call, None)
        # a CLIENT span per attempt (HTTP semantic conventions: a resend is its own span), current
        # while the row is made so the row carries its ids; its context goes out as `traceparent`
        with otel.span(
            call.request.method,
            _client_span_attributes(call),
            kind="client",
            fallback_parent=self._trace_parent,
        ) as span:
            otel.inject_traceparent(call.request.headers, span)
            return self._send(call, span)

    def _send(self, call: _Call, span: Any) -> httpx.Response:
        request = call.request
        row = self._recorder.new_row(
            HTTP_REQUEST,
            direction="outgoing",
            request_id=call.request_id,
            attempt=call.attempt,
            method=request.method,
            endpoint=call.endpoint,
            request_headers=redact_headers(request.headers),
            external_id=request.extensions.get(DEVICE_EXTENSION),
        )
        call.pending, call.response = row, None
        started = time.perf_counter()
        try:
            response = self._inner.handle_request(request)
            response.read()  # time the whole exchange; our APIs answer with small JSON bodies
        except Exception as exc:
            elapsed = (time.perf_counter() - started) * 1000
            row.status, row.response_time_ms = "failed", round(elapsed, 3)
            row.error_type = category_of(exc)
            row.error_message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            row.completed_at = utc_now()
            self._metrics.attempt(request.method, "error", elapsed / 1000, row.error_type)
            _log_attempt(call, row, exc)
            raise  # the span, if any, is marked failed with the exception's type as it unwinds
        elapsed = (time.perf_counter() - started) * 1000
        row.status_code = response.status_code
        row.response_time_ms = round(elapsed, 3)
        row.completed_at = utc_now()
        if response.status_code >= 400:
            row.status = "failed"
            row.error_type = error_class_for_status(response.status_code).category
            row.error_message = _error_summary(response)
        else:
            row.status = "success"
        self._metrics.attempt(
            request.method, http_status_class(response.status_code), elapsed / 1000, row.error_type
        )
        call.response = response
        if span is not None:
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                otel.mark_failed(span, str(response.status_code))
        _log_attempt(call, row)
        return response

    def _before_retry(self, state: tenacity.RetryCallState) -> None:
        """Another attempt follows: this one's row says `retrying`, with the wait."""
        call: _Call = state.args[0]
        row, call.pending = call.pending, None
        if call.response is not None:
            call.response.close()  # read already; give the connection back before the wait
        if row is None:
            return
        row.status = "retrying"
        row.metadata = {**row.metadata, "retry_in_s": round(state.upcoming_sleep, 3)}
        self._recorder.record(row)
        _log.info(
            "http_request_retrying",
            request_id=call.request_id,
            method=call.request.method,
            endpoint=call.endpoint,
            attempt=row.attempt,
            status_code=row.status_code,
            retry_in_s=row.metadata["retry_in_s"],
            error={"type": row.error_type, "message": row.error_message},
        )

    def close(self) -> None:
        self._inner.close()


def _client_span_attributes(call: _Call) -> dict[str, Any]:
    url = call.request.url
    return {
        "http.request.method": call.request.method,
        "url.full": call.endpoint,  # redacted: no key, token or signature reaches the collector
        "server.address": url.host,
        "server.port": url.port or (443 if url.scheme == "https" else 80),
        "http.request.resend_count": call.attempt - 1 if call.attempt > 1 else None,
        "sync_pipelines.request_id": call.request_id,
    }


def _log_attempt(call: _Call, row: ActivityRow, exc: BaseException | None = None) -> None:
    """One line per attempt as it ends (a retry decision is logged after it, by itself)."""
    fields = dict(
        request_id=call.request_id,
        method=call.request.method,
        endpoint=call.endpoint,
        attempt=row.attempt,
        status_code=row.status_code,
        duration_ms=row.response_time_ms,
    )
    if exc is not None:  # no answer at all: timed out, refused, dropped
        error = {"type": type(exc).__name__, "message": str(exc)}
        _log.warning("http_request_failed", **fields, error=error)
    else:  # an answer, even an error status: the provider turns it into its own error
        _log.debug("http_request_completed", **fields)


def is_repeatable(request: httpx.Request) -> bool:
    """May this request be sent again after a failure that might have reached the server?

    RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT and DELETE are idempotent. POST and PATCH
    are repeatable only when something makes a repeat harmless: an `If-Match` with an entity
    tag (a repeat of a write that did land answers 412, never writes twice), an
    `Idempotency-Key` (the server deduplicates), or the provider marking the request with the
    `IDEMPOTENT_EXTENSION` because the operation itself is idempotent (a query sent as POST, a
    JSON merge patch). Anything else is retried only when it never left (`_never_sent`).
    """
    if request.method in IDEMPOTENT_METHODS or request.extensions.get(IDEMPOTENT_EXTENSION):
        return True
    if_match = request.headers.get("if-match", "").strip()
    return bool(if_match and if_match != "*") or "idempotency-key" in request.headers


def _never_sent(exc: BaseException) -> bool:
    # failed while connecting or waiting for a pooled connection: no byte of the request left
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def _should_retry(state: tenacity.RetryCallState) -> bool:
    call: _Call = state.args[0]
    outcome = state.outcome
    if outcome is None:
        return False
    if outcome.failed:
        exc = outcome.exception()
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
            return False  # our request is wrong; sending it again changes nothing
        return retryable_error(exc) and (call.idempotent or _never_sent(exc))
    status = outcome.result().status_code
    # the same status -> category mapping as the providers' errors (429 rate_limited, 5xx/408
    # transient), so what is retried is what a provider would raise as retryable
    return (
        status >= 400
        and error_class_for_status(status).category in RETRYABLE_CATEGORIES
        and call.idempotent
    )


def _throttled(state: tenacity.RetryCallState) -> bool:
    outcome = state.outcome
    return outcome is not None and not outcome.failed and outcome.result().status_code == 429


def _retry_after(state: tenacity.RetryCallState) -> float | None:
    outcome = state.outcome
    if outcome is None or outcome.failed:
        return None
    return parse_retry_after(outcome.result().headers.get("Retry-After"))


def _error_summary(response: httpx.Response) -> str:
    """The provider's own words for an error, short: `message` of a JSON body, else the text."""
    text = response.text[:2000]
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {text[:500]}"
    if isinstance(body, Mapping):
        for key in ("message", "Message", "error", "errorMessage"):
            if body.get(key):
                return f"HTTP {response.status_code}: {str(body[key])[:500]}"
    return f"HTTP {response.status_code}: {text[:500]}"


def build_http_client(
    recorder: ActivityRecorder,
    *,
    base_url: str,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
    max_connections: int = 16,
    retry_policy: RetryPolicy | None = None,
    provider: str | None = None,
    budget: RateBudget | None = None,
) -> httpx.Client:
    """The only way provider code gets an HTTP client. `retry_policy`: how each call is
    retried (None: one attempt; `ProviderClients` always passes the integration's);
    `provider`: the metrics' provider label; `budget`: the account's pace (None: unpaced)."""
    inner = GuardedTransport(
        httpx.HTTPTransport(
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            )
        ),
        DestinationGuard(),
    )
    return httpx.Client(
        base_url=base_url,
        headers=dict(headers or {}),
        timeout=httpx.Timeout(timeout_s),
        transport=RecordingTransport(
            inner, recorder, retry_policy, provider=provider, budget=budget
        ),
    )
