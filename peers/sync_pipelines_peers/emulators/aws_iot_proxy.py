"""A fault-injecting reverse proxy in front of moto: AWS IoT as the sync sees it, with AWS's
own failure shapes.

moto (PROVIDERS.md §2.5) serves the control plane (`iot`) and the data plane (`iot-data`) on
one port but never throttles, never rejects credentials and never fails. The proxy forwards
every request unchanged (method, raw path and query, headers, body; response status, headers
and body back) and, on request, fails it the way AWS does (§2.4, §2.7):

- rate_limit → control plane HTTP **400** + `x-amzn-ErrorType: ThrottlingException` +
  `{"message":"Rate exceeded"}`; data plane (`/things/{name}/shadow`, `/api/things/shadow/…`)
  HTTP 429 with the same header; both with `x-amz-retry-after` in milliseconds;
- auth_failure → 403 `UnrecognizedClientException`; server_error → 503
  `ServiceUnavailableException` (or the status asked for); malformed_json → a 200 that is not
  JSON; latency, timeout, drop_connection and truncated_json as in `faults`.

Faults come from the shared `FaultInjector`/`FaultInjectionMiddleware`; `AwsErrorShaping`
rewrites their generic error responses into AWS's. With `accepted_access_key_id` set the proxy
also checks the SigV4 `Credential=<key id>/…` of every request and answers 403
`UnrecognizedClientException` to any other key, so wrong credentials fail for real. Routes
under `/_emulator/` (never faulted) read and change the faults and the request log.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount

from sync_pipelines_peers.emulators.control_routes import fault_and_request_routes
from sync_pipelines_peers.emulators.faults import (
    ASGIApp,
    FaultInjectionMiddleware,
    FaultInjector,
    FaultKind,
    FaultSpec,
    Message,
    Receive,
    Scope,
    Send,
    fault_plan_of,
)
from sync_pipelines_peers.emulators.request_log import (
    CONTROL_PREFIX,
    RecordedRequest,
    RequestLog,
    RequestRecordingMiddleware,
)

#: paths the faults and the key check never touch: our control routes and moto's own API
EXEMPT_PREFIXES = (CONTROL_PREFIX, "/moto-api")
#: the iot-data (shadow) routes; everything else is the control plane
DATA_PLANE_PATH = re.compile(r"^/things/[^/]+/shadow|^/api/things/shadow/")

_THROTTLED = "Rate exceeded"
_BAD_TOKEN = "The security token included in the request is invalid."
_CREDENTIAL = re.compile(rb"Credential=([^/,\s]+)/")
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"upgrade",
        b"content-length",
        b"proxy-connection",
        b"trailer",
    }
)
# uvicorn adds its own Date and Server: drop moto's so a response does not carry two of each
_REPLACED_UPSTREAM = frozenset({b"date", b"server"})
_UPSTREAM_TIMEOUT_S = 60.0


def is_data_plane(path: str) -> bool:
    return DATA_PLANE_PATH.search(path) is not None


def _aws_error_code(status: int) -> str:
    return {
        400: "InvalidRequestException",
        401: "UnauthorizedException",
        403: "UnrecognizedClientException",
        404: "ResourceNotFoundException",
        409: "ConflictException",
        429: "ThrottlingException",
        500: "InternalFailureException",
        502: "InternalFailureException",
        503: "ServiceUnavailableException",
    }.get(status, "InternalFailureException" if status >= 500 else "InvalidRequestException")


def render_aws_error(status: int, message: str) -> bytes:
    """AWS rest-json error body for the status the generic fault middleware chose."""
    if status == 429:
        message = _THROTTLED
    elif status in (401, 403):
        message = _BAD_TOKEN
    elif status == 503:
        message = "Service Unavailable"
    return json.dumps({"message": message}).encode()


def _aws_error_headers(code: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-amzn-errortype", code.encode()),
        (b"x-amzn-requestid", uuid.uuid4().hex.encode()),
    ]


class AwsErrorShaping:
    """Rewrites the status line and headers of an injected error into AWS's (the body is
    `render_aws_error`'s). Sits outside `FaultInjectionMiddleware`, reading its plan."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def shaped(message: Message) -> None:
            if message["type"] == "http.response.start":
                fault = fault_plan_of(scope).response_fault
                if fault is not None:
                    message = _shape(message, fault, is_data_plane(scope["path"]))
            await send(message)

        await self.app(scope, receive, shaped)


def _shape(start: Message, fault: FaultSpec, data_plane: bool) -> Message:
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"retry-after"]
    status = start["status"]
    if fault.kind is FaultKind.RATE_LIMIT:
        retry_after_s = next(
            (int(v) for k, v in start.get("headers", []) if k.lower() == b"retry-after"), 1
        )
        # AWS's control plane throttles with a 400 the error type makes retryable; iot-data uses 429.
        status = 429 if data_plane else 400
        headers += _aws_error_headers("ThrottlingException")
        headers.append((b"x-amz-retry-after", str(retry_after_s * 1000).encode()))
    elif fault.kind is FaultKind.AUTH_FAILURE:
        status = 403
        headers += _aws_error_headers("UnrecognizedClientException")
    elif fault.kind is FaultKind.SERVER_ERROR:
        headers += _aws_error_headers(_aws_error_code(status))
    else:  # malformed, truncated, dropped: the broken response is the point
        return start
    return {**start, "status": status, "headers": headers}


class AccessKeyGate:
    """Answers 403 UnrecognizedClientException unless the SigV4 credential is the accepted key
    (when one is set; moto itself accepts any)."""

    def __init__(self, app: ASGIApp, proxy: AwsIotProxy) -> None:
        self.app = app
        self.proxy = proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        accepted = self.proxy.accepted_access_key_id
        if (
            scope["type"] != "http"
            or accepted is None
            or scope["path"].startswith(EXEMPT_PREFIXES)
            or _access_key_id(scope["headers"]) == accepted
        ):
            await self.app(scope, receive, send)
            return
        body = render_aws_error(403, _BAD_TOKEN)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *_aws_error_headers("UnrecognizedClientException"),
        ]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _access_key_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            match = _CREDENTIAL.search(value)
            return match.group(1).decode("latin-1") if match else None
    return None


class MotoForwarder:
    """Forwards a request to moto byte for byte and relays the answer."""

    def __init__(self, upstream_url: str) -> None:
        self.upstream = httpx.URL(upstream_url)
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client_for_this_loop(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # moto closes every connection anyway (Werkzeug dev server): keep none in a pool.
            self._client = httpx.AsyncClient(
                timeout=_UPSTREAM_TIMEOUT_S, limits=httpx.Limits(max_keepalive_connections=0)
            )
            self._loop = loop
        return self._client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        raw_path = scope.get("raw_path") or scope["path"].encode()
        if scope["query_string"]:
            raw_path += b"?" + scope["query_string"]
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_BY_HOP]
        request = httpx.Request(
            scope["method"],
            self.upstream.copy_with(raw_path=raw_path),
            headers=headers,
            content=body,
        )
        try:
            response = await self._client_for_this_loop().send(request)
        except httpx.HTTPError as exc:
            payload = render_aws_error(502, f"proxy could not reach moto: {type(exc).__name__}")
            status, out_headers = (
                502,
                [
                    (b"content-type", b"application/json"),
                    *_aws_error_headers("InternalFailureException"),
                ],
            )
        else:
            payload = response.content
            status = response.status_code
            out_headers = [
                (k, v)
                for k, v in response.headers.raw
                if k.lower() not in _HOP_BY_HOP | _REPLACED_UPSTREAM
            ]
        out_headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


class AwsIotProxy:
    """The proxy's state (faults, request log, accepted key) and its ASGI app."""

    def __init__(
        self,
        upstream_url: str,
        *,
        accepted_access_key_id: str | None = None,
        seed: int = 0,
        request_log_size: int = 10_000,
    ) -> None:
        self.upstream_url = upstream_url
        self.accepted_access_key_id = accepted_access_key_id
        self.injector = FaultInjector(seed=seed)
        self.request_log = RequestLog(request_log_size)
        self.app = self._build_app()

    def add_faults(self, *specs: FaultSpec | Mapping[str, Any]) -> list[dict[str, Any]]:
        return self.injector.add(specs)

    def clear_faults(self) -> None:
        self.injector.clear()

    def requests(self) -> list[RecordedRequest]:
        return self.request_log.entries()

    def clear_requests(self) -> None:
        self.request_log.clear()

    def _build_app(self) -> Starlette:
        return Starlette(
            routes=[
                Mount(
                    CONTROL_PREFIX, routes=fault_and_request_routes(self.injector, self.request_log)
                ),
                Mount("", app=MotoForwarder(self.upstream_url)),
            ],
            middleware=[
                Middleware(RequestRecordingMiddleware, log=self.request_log),
                Middleware(AwsErrorShaping),
                Middleware(
                    FaultInjectionMiddleware,
                    injector=self.injector,
                    render_error=render_aws_error,
                    exempt_path_prefixes=EXEMPT_PREFIXES,
                ),
                Middleware(AccessKeyGate, proxy=self),
            ],
        )
