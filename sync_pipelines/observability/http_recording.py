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

import logging
import time
import uuid
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import tenacity

from sync_pipelines import json_limits
from sync_pipelines.clock import utc_now
from sync_pipelines.errors import RETRYABLE_CATEGORIES, category_of, error_class_for_status
from sync_pipelines.observability import otel
from sync_pipelines.observability.activity import HTTP_REQUEST, ActivityRecorder, ActivityRow
from sync_pipelines.observability.logging import ROOT_LOGGER, get_logger
from sync_pipelines.observability.metrics import ProviderCallMetrics, http_status_class
from sync_pipelines.observability.redaction import redact_url
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
#: the stdlib logger behind `_log`, asked for its level before a debug line's fields are built
_stdlib_log = logging.getLogger(f"{ROOT_LOGGER}.http")


def new_request_id() -> str:
    return str(uuid.uuid4())


class Answer(Protocol):
    """What an attempt's exchange returns, from either client (an `httpx.Response`, or the lean
    client's `LeanResponse`): its body already read."""

    status_code: int

    @property
    def headers(self) -> Any: ...  # `.get(name)`, case-insensitive

    @property
    def content(self) -> bytes: ...

    @property
    def text(self) -> str: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class Call:
    """One logical call: its attempts share `headers` (and their X-Request-ID); the row of the
    last attempt waits here until it is known whether another attempt follows. `exchange`
    sends the request once and returns its answer, body read (or raises an httpx
    TransportError, `OutboundRefused`…)."""

    method: str
    host: str
    port: int
    #: the headers every attempt sends (`traceparent` is replaced per attempt)
    headers: MutableMapping[str, str]
    request_id: str
    #: the URL, redacted: what rows, log lines and spans show
    endpoint: str
    idempotent: bool
    device_id: str | None
    exchange: Callable[[], Answer]
    attempt: int = 0
    pending: ActivityRow | None = None
    response: Answer | None = None
    #: when the first attempt started (the policy's time budget counts from it)
    started: float = 0.0
    #: the first attempt's outcome (an answer or an exception), for the policy to decide on
    first: Answer | BaseException | None = None


class CallRecorder:
    """Records every attempt of a client's calls (an activity row and the provider-call
    metrics, labelled `provider`) and retries them per `policy` (one attempt when None),
    paced by `budget`: the one implementation behind both HTTP clients (`RecordingTransport`
    for httpx, `LeanHttpClient` for per-device reads)."""

    def __init__(
        self,
        recorder: ActivityRecorder,
        policy: RetryPolicy | None = None,
        *,
        provider: str | None = None,
        budget: RateBudget | None = None,
    ) -> None:
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
            before=_from_first_attempt,
            before_sleep=self._before_retry,
        )

    def run(self, call: Call) -> Answer:
        """The call's last answer (or its last attempt's exception), every attempt recorded.

        The first attempt is made here, outside the retry controller: an answer below 400 is
        the call's answer, as `_should_retry` would say (a success is never retried), without
        tenacity's per-call bookkeeping (a fifth of the recording's CPU on a state read).
        Any other outcome goes to the controller as its attempt 1, timed from when it began."""
        call.headers[REQUEST_ID_HEADER] = call.request_id
        try:
            call.started = time.monotonic()
            try:
                first = self._attempt(call)
            except Exception as exc:
                call.first = exc
            else:
                if first.status_code < 400:
                    return first
                call.first = first
            return self._retrying(self._next_attempt, call)
        finally:
            if call.pending is not None:  # the last attempt: its row keeps success / failed
                self._recorder.record(call.pending)

    def _next_attempt(self, call: Call) -> Answer:
        """The first attempt's outcome once (made by `run`), then a new attempt each time."""
        first, call.first = call.first, None
        if first is None:
            return self._attempt(call)
        if isinstance(first, BaseException):
            raise first
        return first

    def _attempt(self, call: Call) -> Answer:
        if self._budget is None:
            return self._traced_attempt(call)
        sent_at = self._budget.acquire()
        response = self._traced_attempt(call)
        if response.status_code == 429:
            self._budget.throttled(sent_at, parse_retry_after(response.headers.get("Retry-After")))
        return response

    def _traced_attempt(self, call: Call) -> Answer:
        call.attempt += 1
        if not otel.tracing_enabled():
            return self._send(call, None)
        # a CLIENT span per attempt (HTTP semantic conventions: a resend is its own span), current
        # while the row is made so the row carries its ids; its context goes out as `traceparent`
        with otel.span(
            call.method,
            _client_span_attributes(call),
            kind="client",
            fallback_parent=self._trace_parent,
        ) as span:
            otel.inject_traceparent(call.headers, span)
            return self._send(call, span)

    def _send(self, call: Call, span: Any) -> Answer:
        row = self._recorder.new_row(
            HTTP_REQUEST,
            direction="outgoing",
            request_id=call.request_id,
            attempt=call.attempt,
            method=call.method,
            endpoint=call.endpoint,
            # names lower-cased whichever client sent them; redacted once, with the rest of the
            # row, when it is recorded (`redact_row`)
            request_headers={name.lower(): value for name, value in call.headers.items()},
            external_id=call.device_id,
        )
        call.pending, call.response = row, None
        started = time.perf_counter()
        try:
            response = call.exchange()  # the whole exchange, body included
        except Exception as exc:
            elapsed = (time.perf_counter() - started) * 1000
            row.status, row.response_time_ms = "failed", round(elapsed, 3)
            row.error_type = category_of(exc)
            row.error_message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            row.completed_at = utc_now()
            self._metrics.attempt(call.method, "error", elapsed / 1000, row.error_type)
            _log_attempt(call, row, exc)
            raise  # the span, if any, is marked failed with the exception's type as it unwinds
        elapsed = (time.perf_counter() - started) * 1000
        status = response.status_code
        row.status_code = status
        row.response_time_ms = round(elapsed, 3)
        row.completed_at = utc_now()
        if status >= 400:
            row.status = "failed"
            row.error_type = error_class_for_status(status).category
            row.error_message = _error_summary(response)
        else:
            row.status = "success"
        self._metrics.attempt(
            call.method, http_status_class(status), elapsed / 1000, row.error_type
        )
        call.response = response
        if span is not None:
            span.set_attribute("http.response.status_code", status)
            if status >= 400:
                otel.mark_failed(span, str(status))
        _log_attempt(call, row)
        return response

    def _before_retry(self, state: tenacity.RetryCallState) -> None:
        """Another attempt follows: this one's row says `retrying`, with the wait."""
        call: Call = state.args[0]
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
            method=call.method,
            endpoint=call.endpoint,
            attempt=row.attempt,
            status_code=row.status_code,
            retry_in_s=row.metadata["retry_in_s"],
            error={"type": row.error_type, "message": row.error_message},
        )


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
    """The httpx side of `CallRecorder`: every request through the client is one recorded,
    retried call."""

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
        self.calls = CallRecorder(recorder, policy, provider=provider, budget=budget)

    @property
    def policy(self) -> RetryPolicy:
        return self.calls.policy

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.calls.policy.retries:
            request.read()  # a body sent again must be bytes, not a spent stream
        url = request.url
        response = self.calls.run(
            Call(
                request.method,
                url.host,
                url.port or (443 if url.scheme == "https" else 80),
                request.headers,
                request.headers.get(REQUEST_ID_HEADER) or new_request_id(),
                redact_url(str(url)),
                is_repeatable(request),
                request.extensions.get(DEVICE_EXTENSION),
                lambda: self._exchange(request),
            )
        )
        assert isinstance(response, httpx.Response)
        return response

    def _exchange(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        response.read()  # time the whole exchange; our APIs answer with small JSON bodies
        return response

    def close(self) -> None:
        self._inner.close()


def _client_span_attributes(call: Call) -> dict[str, Any]:
    return {
        "http.request.method": call.method,
        "url.full": call.endpoint,  # redacted: no key, token or signature reaches the collector
        "server.address": call.host,
        "server.port": call.port,
        "http.request.resend_count": call.attempt - 1 if call.attempt > 1 else None,
        "sync_pipelines.request_id": call.request_id,
    }


def _log_attempt(call: Call, row: ActivityRow, exc: BaseException | None = None) -> None:
    """One line per attempt as it ends (a retry decision is logged after it, by itself)."""
    if exc is None and not _log_debug():
        return  # the common line is a debug one: not even its fields are built below the level
    fields = dict(
        request_id=call.request_id,
        method=call.method,
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


def _log_debug() -> bool:
    return _stdlib_log.isEnabledFor(logging.DEBUG)


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
    call: Call = state.args[0]
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


def _from_first_attempt(state: tenacity.RetryCallState) -> None:
    # the controller starts after the first attempt (made in `CallRecorder.run`): its time
    # budget counts from when that attempt began
    if state.attempt_number == 1:
        state.start_time = state.args[0].started


def _throttled(state: tenacity.RetryCallState) -> bool:
    outcome = state.outcome
    return outcome is not None and not outcome.failed and outcome.result().status_code == 429


def _retry_after(state: tenacity.RetryCallState) -> float | None:
    outcome = state.outcome
    if outcome is None or outcome.failed:
        return None
    return parse_retry_after(outcome.result().headers.get("Retry-After"))


def _error_summary(response: Answer) -> str:
    """The provider's own words for an error, short: `message` of a JSON body, else the text."""
    text = response.text[:2000]
    try:
        body = json_limits.decode(response.content)  # a body nested too deep is only text
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
