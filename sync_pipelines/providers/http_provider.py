"""What every HTTP provider (Golioth, Azure IoT Hub) shares, so its own module holds only its
wire mapping: device ids quoted into paths, the request id of a call, one way from a failed
call into the error taxonomy — an error status (with the server's `Retry-After`), a body that
is not JSON, or a transport failure (timed out, refused, dropped) wrapped with the integration,
the URL and the request id — and state reads with bounded concurrency, each device's GET over
the lean client (`_get`, observability/lean_http.py) where there is one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from sync_pipelines import json_limits
from sync_pipelines.errors import (
    AuthError,
    ConfigError,
    MalformedResponseError,
    ProviderError,
    SyncError,
    TransientError,
    error_class_for_status,
)
from sync_pipelines.observability.http_recording import (
    DEVICE_EXTENSION,
    IDEMPOTENT_EXTENSION,
    REQUEST_ID_HEADER,
)
from sync_pipelines.observability.lean_http import LeanHttpClient, LeanResponse
from sync_pipelines.observability.redaction import redact_url
from sync_pipelines.observability.retrying import parse_retry_after
from sync_pipelines.outbound import OutboundRefused
from sync_pipelines.providers.contract import (
    ConnectionResult,
    DeviceState,
    IntegrationConfig,
    Provider,
    StateFailure,
)
from sync_pipelines.providers.pools import map_in_context

#: either client's response
_R = TypeVar("_R", httpx.Response, LeanResponse)


def device_segment(device_id: str) -> str:
    """A device id as one path segment: `/`, space, `#`, `?`, `%` and the like percent-encoded,
    so no id can reach another resource or cut the path short."""
    return quote(device_id, safe="")


def request_id_of(response: httpx.Response | LeanResponse) -> str | None:
    """Our `X-Request-ID` of the call that got `response`."""
    if isinstance(response, LeanResponse):
        return response.request_id
    return response.request.headers.get(REQUEST_ID_HEADER)


def as_httpx(response: httpx.Response | LeanResponse) -> httpx.Response:
    return response.as_httpx() if isinstance(response, LeanResponse) else response


def endpoint_of(request: httpx.Request) -> str:
    """`METHOD /path` of a call, as sent (ids still quoted); no host and no query string."""
    return f"{request.method} {request.url.raw_path.decode('ascii').partition('?')[0]}"


def ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


class HttpProvider(Provider):
    """A provider over the recording httpx client (`ProviderClients.http`). Subclasses set
    `config`, `http`, `lean` (`ProviderClients.lean_http`: None reads devices through `http`),
    `state_concurrency` and `state_source`, and supply the wire mapping: `_error_detail` (the
    provider's words for an error response) and `_fetch_state`."""

    config: IntegrationConfig
    http: httpx.Client
    lean: LeanHttpClient | None = None
    state_concurrency: int
    state_source: str
    #: what a transport failure could not reach, for its message ("the hub")
    service = "the provider"

    def close(self) -> None:
        self.http.close()
        if self.lean is not None:
            self.lean.close()

    @property
    def lists_states(self) -> bool:
        return self.state_source == "list"

    def get_states(
        self, external_ids: Sequence[str]
    ) -> tuple[list[DeviceState], list[StateFailure]]:
        states: list[DeviceState] = []
        failures: list[StateFailure] = []
        with ThreadPoolExecutor(
            self.state_concurrency, thread_name_prefix=f"{self.name}-state"
        ) as pool:
            outcomes = map_in_context(pool, self._fetch_state, external_ids)
            for external_id, outcome in zip(external_ids, outcomes, strict=True):
                if isinstance(outcome, DeviceState):
                    states.append(outcome)
                elif isinstance(outcome, AuthError):
                    raise outcome  # no point carrying on with credentials the provider refuses
                else:
                    failures.append(
                        StateFailure(
                            external_id, outcome.category, str(outcome), outcome.request_id
                        )
                    )
        return states, failures

    def _fetch_state(self, external_id: str) -> DeviceState | ProviderError:
        """One device's state, or the error that kept it (returned, not raised)."""
        raise NotImplementedError

    def _error_detail(self, response: httpx.Response, device_id: str | None) -> str:
        """The provider's own words for an error response."""
        return response.text[:300] or response.reason_phrase

    # -- calls ----------------------------------------------------------------------------

    def _send(
        self, method: str, path: str, *, device_id: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One call: its response, or a ProviderError — an error status (`_status_error`) or a
        transport failure (`_unreachable`). A call about a device names it to the recording
        transport, so its activity rows carry the device."""
        if device_id:
            kwargs["extensions"] = {**kwargs.get("extensions", {}), DEVICE_EXTENSION: device_id}
        return self._answer(lambda: self.http.request(method, path, **kwargs), device_id)

    def _get(
        self, path: str, *, params: dict[str, Any] | None = None, device_id: str | None = None
    ) -> httpx.Response | LeanResponse:
        """`_send("GET", path)` over the lean client when there is one: the calls a sync makes
        by the thousand (a device list's pages, per-device state reads), each recorded and
        retried the same way, for a fraction of the CPU."""
        if self.lean is None:
            return self._send("GET", path, device_id=device_id, params=params)
        lean = self.lean
        return self._answer(lambda: lean.get(path, params=params, device_id=device_id), device_id)

    def _post_read(
        self,
        path: str,
        content: bytes,
        *,
        headers: dict[str, str],
        params: dict[str, Any] | None = None,
    ) -> httpx.Response | LeanResponse:
        """A read sent as POST (a query whose body says what to read: repeatable, so retried
        as a GET is), over the lean client when there is one, as `_get`."""
        if self.lean is None:
            return self._send(
                "POST",
                path,
                params=params,
                headers=headers,
                content=content,
                extensions={IDEMPOTENT_EXTENSION: True},
            )
        lean = self.lean
        return self._answer(
            lambda: lean.post_read(path, content, headers=headers, params=params), None
        )

    def _answer(self, call: Callable[[], _R], device_id: str | None) -> _R:
        """What `call` answered (either client's response), or the taxonomy's error for a
        call that failed or an error status."""
        try:
            response = call()
        except (httpx.TransportError, OutboundRefused) as exc:
            raise self._call_error(exc, device_id) from exc
        if response.status_code >= 400:
            raise self._status_error(response, device_id)
        return response

    def _call_error(
        self, exc: httpx.TransportError | OutboundRefused, device_id: str | None
    ) -> SyncError:
        if isinstance(exc, httpx.UnsupportedProtocol):  # a URL no HTTP client can call
            return ConfigError(
                self.config.integration_id, f"setting 'base_url': not an http(s) URL ({exc})"
            )
        if isinstance(exc, OutboundRefused):  # a host the service may not call (outbound.py)
            return ConfigError(self.config.integration_id, f"setting 'base_url': {exc}")
        return self._unreachable(exc, device_id)

    def _decode(self, response: httpx.Response | LeanResponse, device_id: str | None = None) -> Any:
        try:
            return json_limits.decode(response.content)
        except ValueError as exc:  # a JsonLimitError too: nested deeper than any device document
            raise self._malformed(
                response, f"{self._subject(device_id)}: response is not valid JSON ({exc})"
            ) from exc

    def _subject(self, device_id: str | None) -> str:
        integration = f"integration {self.config.integration_id!r}"
        return f"{integration}, device {device_id!r}" if device_id else integration

    def _failed_connection(
        self, started: float, exc: ProviderError, **details: Any
    ) -> ConnectionResult:
        """What `test_connection` answers for a call that failed."""
        reason = f"authentication failed: {exc}" if isinstance(exc, AuthError) else str(exc)
        return ConnectionResult(
            False,
            ms_since(started),
            reason,
            {"status_code": exc.status_code, "category": exc.category, **details},
        )

    # -- failures -> the taxonomy ---------------------------------------------------------

    def _status_error(
        self, response: httpx.Response | LeanResponse, device_id: str | None
    ) -> ProviderError:
        response = as_httpx(response)  # worded as any answer (only error answers pay for it)
        return error_class_for_status(response.status_code)(
            self._error_detail(response, device_id),
            provider=self.name,
            endpoint=endpoint_of(response.request),
            status_code=response.status_code,
            request_id=request_id_of(response),
            retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
            integration_id=self.config.integration_id,
        )

    def _malformed(
        self, response: httpx.Response | LeanResponse, problem: str
    ) -> MalformedResponseError:
        response = as_httpx(response)
        return MalformedResponseError(
            problem,
            provider=self.name,
            endpoint=endpoint_of(response.request),
            status_code=response.status_code,
            request_id=request_id_of(response),
            integration_id=self.config.integration_id,
        )

    def _unreachable(self, exc: httpx.TransportError, device_id: str | None) -> TransientError:
        """A call that got no answer, as a transient error saying where it went (the URL
        without its query string, which may carry a token) under which request id."""
        request = _request_of(exc)
        if request is None:
            url, endpoint, request_id = str(self.http.base_url), None, None
        else:
            url = redact_url(str(request.url.copy_with(query=None)))
            endpoint = endpoint_of(request)
            request_id = request.headers.get(REQUEST_ID_HEADER)
        return TransientError(
            f"{self._subject(device_id)}: cannot reach {self.service} at {url}: "
            f"{type(exc).__name__}: {exc}",
            provider=self.name,
            endpoint=endpoint,
            request_id=request_id,
            integration_id=self.config.integration_id,
        )


def _request_of(exc: httpx.TransportError) -> httpx.Request | None:
    try:
        return exc.request
    except RuntimeError:  # raised before a request existed
        return None
