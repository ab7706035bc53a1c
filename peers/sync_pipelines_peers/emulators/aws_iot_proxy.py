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

SearchIndex (`POST /indices/search`) is paged as AWS pages it — at most `maxResults` (≤ 100)
things a response and an opaque `nextToken` — over a snapshot of moto's answer (moto returns
every match at once, PROVIDERS.md §7.1). moto's indexed `shadow` holds only named shadows; with
`index_shadow` (the thing's classic shadow document, read from moto's backend) the proxy adds
the classic shadow's `reported`, `desired`, `metadata`, `version`, `hasDelta` at the top, as an
index in REGISTRY_AND_SHADOW mode shows it.

Faults come from the shared `FaultInjector`/`FaultInjectionMiddleware`; `AwsErrorShaping`
rewrites their generic error responses into AWS's. With `accepted_access_key_id` set the proxy
also checks the SigV4 `Credential=<key id>/…` of every request and answers 403
`UnrecognizedClientException` to any other key, so wrong credentials fail for real. Routes
under `/_emulator/` (never faulted) read and change the faults and the request log.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
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


#: SearchIndex's own ceiling on `maxResults`
SEARCH_INDEX_MAX_RESULTS = 100
_SNAPSHOTS_KEPT = 16


class SearchIndexPaging:
    """`POST /indices/search` paged as AWS does (see the module docstring); every other request
    goes to the forwarder."""

    def __init__(
        self,
        forwarder: MotoForwarder,
        index_shadow: Callable[[str], dict[str, Any] | None] | None = None,
    ) -> None:
        self.forwarder = forwarder
        self.index_shadow = index_shadow
        self._snapshots: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST" or scope["path"] != "/indices/search":
            await self.forwarder(scope, receive, send)
            return
        body = await _read_body(receive)
        try:
            query = json.loads(body or b"{}")
            max_results = int(query.get("maxResults") or SEARCH_INDEX_MAX_RESULTS)
        except ValueError:
            await _send_json(send, 400, {"message": "the request body is not valid JSON"})
            return
        if not 1 <= max_results <= SEARCH_INDEX_MAX_RESULTS:
            await _send_json(
                send,
                400,
                {"message": f"maxResults must be between 1 and {SEARCH_INDEX_MAX_RESULTS}"},
                "InvalidRequestException",
            )
            return
        token = query.get("nextToken")
        if token:
            found = self._resume(token)
            if found is None:
                await _send_json(
                    send, 400, {"message": "Invalid nextToken"}, "InvalidRequestException"
                )
                return
            snapshot_id, offset, things = found
        else:
            upstream = {k: v for k, v in query.items() if k not in ("maxResults", "nextToken")}
            status, answer = await self._ask_moto(scope, json.dumps(upstream).encode())
            if status != 200:
                await _send_json(send, status, answer)
                return
            things = answer.get("things") or []
            snapshot_id, offset = self._keep(things), 0
        page = [self._with_classic_shadow(t) for t in things[offset : offset + max_results]]
        result: dict[str, Any] = {"things": page, "thingGroups": []}
        if offset + max_results < len(things):
            result["nextToken"] = base64.urlsafe_b64encode(
                f"{snapshot_id}:{offset + max_results}".encode()
            ).decode()
        await _send_json(send, 200, result)

    def _keep(self, things: list[dict[str, Any]]) -> str:
        with self._lock:
            snapshot_id = str(next(self._ids))
            self._snapshots[snapshot_id] = things
            while len(self._snapshots) > _SNAPSHOTS_KEPT:
                self._snapshots.popitem(last=False)
        return snapshot_id

    def _resume(self, token: str) -> tuple[str, int, list[dict[str, Any]]] | None:
        try:
            snapshot_id, _, offset = base64.urlsafe_b64decode(token).decode().partition(":")
            start = int(offset)
        except ValueError:
            return None
        with self._lock:
            things = self._snapshots.get(snapshot_id)
        return None if things is None or start < 0 else (snapshot_id, start, things)

    async def _ask_moto(self, scope: Scope, body: bytes) -> tuple[int, dict[str, Any]]:
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_BY_HOP]
        request = httpx.Request(
            "POST",
            self.forwarder.upstream.copy_with(raw_path=b"/indices/search"),
            headers=headers,
            content=body,
        )
        try:
            response = await self.forwarder._client_for_this_loop().send(request)
            return response.status_code, response.json()
        except (httpx.HTTPError, ValueError) as exc:
            return 502, {"message": f"proxy could not read moto's answer: {type(exc).__name__}"}

    def _with_classic_shadow(self, thing: dict[str, Any]) -> dict[str, Any]:
        if self.index_shadow is None:
            return thing
        classic = self.index_shadow(thing.get("thingName", ""))
        if classic is None:
            return thing
        try:
            shadow = json.loads(thing.get("shadow") or "{}")
        except ValueError:
            shadow = {}
        if not shadow.get("name"):
            shadow.pop("name", None)
        state = classic.get("state") or {}
        shadow.update(
            {k: v for k, v in state.items() if k in ("reported", "desired")},
            metadata=classic.get("metadata", {}),
            version=classic.get("version"),
            hasDelta="delta" in state,
        )
        return {**thing, "shadow": json.dumps(shadow)}


async def _send_json(
    send: Send, status: int, body: dict[str, Any], error_type: str | None = None
) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"x-amzn-requestid", uuid.uuid4().hex.encode()),
    ]
    if error_type:
        headers.append((b"x-amzn-errortype", error_type.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
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
        index_shadow: Callable[[str], dict[str, Any] | None] | None = None,
    ) -> None:
        self.upstream_url = upstream_url
        self.accepted_access_key_id = accepted_access_key_id
        #: a thing's classic shadow document for SearchIndex (None: moto's `shadow` as it is)
        self.index_shadow = index_shadow
        self.injector = FaultInjector(seed=seed)
        self.request_log = RequestLog(request_log_size)
        self.app = self._build_app()

    def add_faults(self, *specs: FaultSpec | Mapping[str, Any]) -> list[dict[str, Any]]:
        return self.injector.add(specs)

    def clear_faults(self) -> None:
        self.injector.clear()

    def _index_shadow(self, thing_name: str) -> dict[str, Any] | None:
        return None if self.index_shadow is None else self.index_shadow(thing_name)

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
                Mount(
                    "",
                    app=SearchIndexPaging(MotoForwarder(self.upstream_url), self._index_shadow),
                ),
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
