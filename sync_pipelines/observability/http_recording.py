"""The shared HTTP client: every outgoing call gets an `X-Request-ID` and an activity row.

The seam is an httpx transport wrapping the real one, so provider code cannot forget: it is
handed a client built here and only makes requests. The transport sees what event hooks do
not — timeouts and dropped connections — and times the whole exchange, body included.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping

import httpx

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import category_of, error_class_for_status
from sync_pipelines.observability.activity import HTTP_REQUEST, ActivityRecorder
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.observability.redaction import redact_headers, redact_url

REQUEST_ID_HEADER = "X-Request-ID"
# Set on a request's extensions by a retry layer so rows carry the attempt number.
ATTEMPT_EXTENSION = "sync_attempt"

_log = get_logger("http")


def new_request_id() -> str:
    return str(uuid.uuid4())


class RecordingTransport(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport, recorder: ActivityRecorder) -> None:
        self._inner = inner
        self._recorder = recorder

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request_id = request.headers.get(REQUEST_ID_HEADER) or new_request_id()
        request.headers[REQUEST_ID_HEADER] = request_id
        attempt = int(request.extensions.get(ATTEMPT_EXTENSION, 1))
        endpoint = redact_url(str(request.url))
        row = self._recorder.new_row(
            HTTP_REQUEST,
            direction="outgoing",
            request_id=request_id,
            attempt=attempt,
            method=request.method,
            endpoint=endpoint,
            request_headers=redact_headers(request.headers),
        )
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
            self._recorder.record(row)
            _log.warning("http_request_failed", request_id=request_id, method=request.method,
                         endpoint=endpoint, attempt=attempt, duration_ms=row.response_time_ms,
                         error={"type": type(exc).__name__, "message": str(exc)})
            raise
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
        self._recorder.record(row)
        _log.debug("http_request_completed", request_id=request_id, method=request.method,
                   endpoint=endpoint, status_code=response.status_code, attempt=attempt,
                   duration_ms=row.response_time_ms)
        return response

    def close(self) -> None:
        self._inner.close()


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
) -> httpx.Client:
    """The only way provider code gets an HTTP client."""
    inner = httpx.HTTPTransport(
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    )
    return httpx.Client(
        base_url=base_url,
        headers=dict(headers or {}),
        timeout=httpx.Timeout(timeout_s),
        transport=RecordingTransport(inner, recorder),
    )

