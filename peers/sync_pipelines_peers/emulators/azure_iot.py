"""A local Azure IoT Hub service API for tests, demos and benchmarks (PROVIDERS.md §3).

Faithful to what azure-iot-hub 2.7.0 sends and reads: `api-version` required, SAS tokens
verified as the hub does (raw `sr`, HMAC-SHA256, expiry, `skn` policy lookup), twin queries
(`POST /devices/query`) paged by `x-ms-max-item-count` and opaque `x-ms-continuation`
tokens, twins with `ETag` and `If-Match` (412 on a stale etag), the device identity with its
own field names, and IoT Hub error bodies (JSON-in-a-string `Message`, `iothub-errorcode`).

Twins are generated lazily from (seed, index) (`azure_iot_twins`); the query language is in
`azure_iot_query`, error bodies in `azure_iot_errors`. Faults come from the shared
`FaultInjector` rendered as IoT Hub errors; per-operation token buckets (query, twin read,
twin update) throttle with 429 + Retry-After + 429001. Routes under `/_emulator/` (no auth)
inject faults, read the request log, move the hub's clock and change twins "as someone
else"; `AzureIotEmulator` offers the same operations in-process. Plain HTTP on loopback:
the provider's `base_url` setting points at it while the connection string's HostName is
what gets signed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from sync_pipelines.providers.azure_sas import SasRejected, verify_sas_token
from sync_pipelines_peers.emulators.azure_iot_errors import (
    DEVICE_NOT_FOUND,
    ERROR_CODE_HEADER,
    INVALID_PROTOCOL_VERSION,
    IOTHUB_UNAUTHORIZED_ACCESS,
    PRECONDITION_FAILED,
    THROTTLING_EXCEPTION,
    ErrorCodeHeaderMiddleware,
    IotHubError,
    error_name,
    render_iothub_error,
)
from sync_pipelines_peers.emulators.azure_iot_query import (
    ContinuationCodec,
    ContinuationError,
    QueryError,
    TwinQuery,
    parse_query,
)
from sync_pipelines_peers.emulators.azure_iot_twins import (
    PreconditionMismatch,
    TwinChange,
    TwinGenerator,
    TwinStore,
)
from sync_pipelines_peers.emulators.control_routes import fault_and_request_routes
from sync_pipelines_peers.emulators.faults import (
    ASGIApp,
    FaultInjectionMiddleware,
    FaultInjector,
    FaultSpec,
    PoisonShape,
    Receive,
    Scope,
    Send,
    TokenBucket,
    fault_plan_of,
)
from sync_pipelines_peers.emulators.quoted_ids import RouteOnRawPath
from sync_pipelines_peers.emulators.request_log import (
    CONTROL_PREFIX,
    RecordedRequest,
    RequestLog,
    RequestRecordingMiddleware,
)
from sync_pipelines_peers.emulators.server import serve_forever

JsonDict = dict[str, Any]

API_VERSION = "2021-04-12"
#: api-versions the service API answers (older SDKs and the REST reference's)
SUPPORTED_API_VERSIONS = ("2018-06-30", "2019-10-01", "2020-03-13", "2020-09-30", "2021-04-12")
MAX_ITEM_COUNT = 100
#: the operations with their own throttle bucket
QUERY, TWIN_READ, TWIN_UPDATE, REGISTRY_READ = "query", "twin_read", "twin_update", "registry_read"
OPERATIONS = (QUERY, TWIN_READ, TWIN_UPDATE, REGISTRY_READ)
DEFAULT_POLICIES = ("iothubowner", "service", "registryRead", "registryReadWrite")
DEFAULT_HOST_NAME = "emulated-hub.azure-devices.net"


def policy_key(seed: int, policy: str) -> str:
    """A deterministic base64 key for a default policy (the demo's well-known keys)."""
    return base64.b64encode(hashlib.sha256(f"{seed}:policy:{policy}".encode()).digest()).decode()


def _default_policies() -> dict[str, str]:
    return {name: policy_key(7, name) for name in DEFAULT_POLICIES}


@dataclass(frozen=True, slots=True)
class AzureIotEmulatorConfig:
    #: the hub's name as clients sign it (the connection string's HostName)
    host_name: str = DEFAULT_HOST_NAME
    #: shared access policy name -> base64 key
    policies: Mapping[str, str] = field(default_factory=_default_policies)
    device_count: int = 100
    seed: int = 7
    #: the most twins one query page holds, whatever the client asks for
    max_item_count: int = MAX_ITEM_COUNT
    #: seconds the hub's clock runs ahead of this machine's (SAS expiry is judged by it)
    clock_skew_s: float = 0.0
    #: continuation tokens older than this are refused (400); None = never expire
    continuation_ttl_s: float | None = None
    #: answer errors with the legacy `ErrorCode:<Name>;...` Message instead of JSON-in-a-string
    legacy_error_bodies: bool = False
    #: added to every service request
    latency_ms: int = 0
    #: per-operation token buckets: operation -> (rate per second, burst)
    throttle: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    request_log_size: int = 100_000

    def connection_string(self, policy: str = "iothubowner") -> str:
        """The service connection string for one of the hub's policies."""
        return (
            f"HostName={self.host_name};SharedAccessKeyName={policy};"
            f"SharedAccessKey={self.policies[policy]}"
        )


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        _dumps(payload),
        status_code=status,
        media_type="application/json; charset=utf-8",
        headers=dict(headers or {}),
    )


# ---------------------------------------------------------------------------------------------
# The gateway: api-version and SAS checks in front of the service routes
# ---------------------------------------------------------------------------------------------


class HubGatewayMiddleware:
    """Refuses requests without a supported `api-version` (400) or a valid SAS token (401)."""

    def __init__(self, app: ASGIApp, emulator: AzureIotEmulator) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        error = self._refusal(scope)
        if error is None:
            await self.app(scope, receive, send)
            return
        await self.emulator.error_response(error)(scope, receive, send)

    def _refusal(self, scope: Scope) -> IotHubError | None:
        authorization = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"authorization"),
            None,
        )
        try:
            verify_sas_token(
                authorization,
                policies=self.emulator.policy_keys,
                host_name=self.emulator.config.host_name,
                now=self.emulator.now(),
            )
        except SasRejected as exc:
            return IotHubError(401, f"Unauthorized: {exc}", IOTHUB_UNAUTHORIZED_ACCESS)
        query = Request(scope).query_params
        version = query.get("api-version")
        if not version:
            return IotHubError(
                400,
                f"the api-version query parameter is required (e.g. api-version={API_VERSION})",
                INVALID_PROTOCOL_VERSION,
            )
        if version not in SUPPORTED_API_VERSIONS:
            return IotHubError(
                400,
                f"api-version {version!r} is not supported "
                f"(supported: {', '.join(SUPPORTED_API_VERSIONS)})",
                INVALID_PROTOCOL_VERSION,
            )
        return None


class OperationThrottle:
    """One token bucket per operation (queries are throttled apart from twin reads and writes)."""

    def __init__(self, limits: Mapping[str, tuple[float, float]]) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        for operation, (rate, burst) in limits.items():
            self.set(operation, rate, burst)

    def set(self, operation: str, rate_per_s: float | None, burst: float | None = None) -> None:
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; known: {list(OPERATIONS)}")
        if rate_per_s is None:
            self._buckets.pop(operation, None)
        else:
            self._buckets[operation] = TokenBucket(rate_per_s, burst)

    def clear(self) -> None:
        self._buckets.clear()

    def check(self, operation: str) -> None:
        bucket = self._buckets.get(operation)
        if bucket is None:
            return
        wait_s = bucket.try_acquire()
        if wait_s > 0:
            retry_after = max(1, math.ceil(wait_s))
            raise IotHubError(
                429,
                f"IoT hub throttling limit for {operation} exceeded; retry after {retry_after}s",
                THROTTLING_EXCEPTION,
                {"Retry-After": str(retry_after)},
            )

    def to_json(self) -> JsonDict:
        return {
            op: {"rate_per_s": b.rate_per_s, "burst": b.burst} for op, b in self._buckets.items()
        }


def _poisoned(twin: JsonDict, index: int, poison: tuple[FaultSpec, ...]) -> JsonDict:
    for spec in poison:
        if spec.device_index == index or (
            spec.device_id and spec.device_id == twin.get("deviceId")
        ):
            if spec.shape is PoisonShape.MISSING_ID:
                twin.pop("deviceId", None)
            else:
                twin["status"] = 42
                twin["lastActivityTime"] = "not-a-time"
                twin["tags"] = "oops"
    return twin


# ---------------------------------------------------------------------------------------------
# The emulator
# ---------------------------------------------------------------------------------------------


class AzureIotEmulator:
    """One emulated IoT hub: twins, SAS policies, faults, throttles, request log, and the app.

    Serve `.app` (e.g. with `EmulatorServer`); drive it over `/_emulator/*` or with the methods
    below from the test's own thread.
    """

    def __init__(self, config: AzureIotEmulatorConfig | None = None) -> None:
        self.config = config or AzureIotEmulatorConfig()
        self.policy_keys = {
            name: base64.b64decode(key) for name, key in self.config.policies.items()
        }
        self.clock_skew_s = self.config.clock_skew_s
        self.twins = TwinStore(
            TwinGenerator(self.config.seed), self.config.device_count, clock=self.now
        )
        self.continuations = ContinuationCodec(
            hashlib.sha256(
                f"{self.config.seed}:{self.config.host_name}:continuation".encode()
            ).digest(),
            ttl_s=self.config.continuation_ttl_s,
        )
        self.throttle = OperationThrottle(self.config.throttle)
        self.faults = FaultInjector(seed=self.config.seed, base_latency_ms=self.config.latency_ms)
        self.request_log = RequestLog(self.config.request_log_size)
        self.app = self._build_app()

    # -- Python API (same operations as /_emulator/*) -------------------------------------------

    def now(self) -> float:
        """The hub's clock (this machine's, plus the configured skew)."""
        return time.time() + self.clock_skew_s

    @property
    def device_count(self) -> int:
        return self.twins.count

    def device_ids(self) -> Iterator[str]:
        """Live device ids in registration (= query) order, generated as iterated."""
        for index in self.twins.live_indexes():
            yield self.twins.generator.device_id(index)

    def get_twin(self, device_id: str) -> JsonDict:
        return self.twins.twin(self._index_of(device_id))

    def get_device(self, device_id: str) -> JsonDict:
        index = self._index_of(device_id)
        return self.twins.generator.device_identity(index, self.twins.twin(index))

    def add_devices(self, count: int) -> list[str]:
        """Register `count` new (never connected) devices; returns their ids."""
        return [self.twins.generator.device_id(i) for i in self.twins.add(count)]

    def delete_device(self, device_id: str) -> None:
        self.twins.delete(self._index_of(device_id))

    def restore_device(self, device_id: str) -> None:
        """A deleted device is registered again with the same id."""
        self.twins.restore(device_id)

    def update_device(self, device_id: str, fields: Mapping[str, Any]) -> JsonDict:
        """Change registry fields (status, statusReason, connectionState) and/or `tags`."""
        fields = dict(fields)
        tags = fields.pop("tags", None)
        return self.twins.update(
            self._index_of(device_id), TwinChange(tags=tags, device=fields or None)
        )

    def patch_desired(self, device_id: str, patch: Mapping[str, Any]) -> JsonDict:
        """Someone else (a console, another back end) writes desired properties."""
        return self.twins.update(self._index_of(device_id), TwinChange(desired=patch))

    def patch_reported(self, device_id: str, patch: Mapping[str, Any]) -> JsonDict:
        """The device reports properties."""
        return self.twins.update(self._index_of(device_id), TwinChange(reported=patch))

    def reseed(self, device_count: int) -> None:
        """A fresh generated hub of exactly `device_count` devices; faults and log cleared."""
        self.twins.reset(device_count)
        self.faults.clear()
        self.request_log.clear()

    def add_faults(self, *specs: FaultSpec | Mapping[str, Any]) -> list[JsonDict]:
        return self.faults.add(specs)

    def clear_faults(self) -> None:
        self.faults.clear()

    def requests(self) -> list[RecordedRequest]:
        return self.request_log.entries()

    def clear_requests(self) -> None:
        self.request_log.clear()

    def stats(self) -> JsonDict:
        return {
            "device_count": self.twins.count,
            "generated_count": self.twins.generated_count,
            "written_count": self.twins.written_count,
            "requests_served": self.request_log.total,
            "requests_logged": len(self.request_log),
            "active_faults": len(self.faults.active()),
            "faults_applied": self.faults.applied_counts(),
            "throttle": self.throttle.to_json(),
            "clock_skew_s": self.clock_skew_s,
        }

    def reset(self) -> None:
        """Back to the configured hub: generated twins, no faults or throttles, empty log."""
        self.twins.reset(self.config.device_count)
        self.faults.clear()
        self.throttle = OperationThrottle(self.config.throttle)
        self.clock_skew_s = self.config.clock_skew_s
        self.request_log.clear()

    def error_response(self, error: IotHubError) -> Response:
        body = render_iothub_error(
            error.http_status,
            error.message,
            error.error_code,
            legacy=self.config.legacy_error_bodies,
        )
        headers = {ERROR_CODE_HEADER: error_name(error.error_code), **error.headers}
        return Response(
            body,
            status_code=error.http_status,
            media_type="application/json; charset=utf-8",
            headers=headers,
        )

    def render_fault(self, http_status: int, message: str) -> bytes:
        return render_iothub_error(http_status, message, legacy=self.config.legacy_error_bodies)

    # -- lookups ---------------------------------------------------------------------------------

    def _index_of(self, device_id: str) -> int:
        index = self.twins.index_of(device_id)
        if index is None:
            raise KeyError(device_id)
        return index

    def _index_or_404(self, device_id: str) -> int:
        index = self.twins.index_of(device_id)
        if index is None:
            raise IotHubError(
                404,
                f"Device {device_id} not registered in IoT hub {self.config.host_name}",
                DEVICE_NOT_FOUND,
            )
        return index

    # -- service handlers ------------------------------------------------------------------------

    async def _query(self, request: Request) -> Response:
        self.throttle.check(QUERY)
        body = await _json_body(request)
        text = body.get("query") if isinstance(body, dict) else None
        if not isinstance(text, str):
            raise IotHubError(400, 'the request body must be {"query": "<query text>"}')
        try:
            query = parse_query(text)
        except QueryError as exc:
            raise IotHubError(400, f"Query parsing failed: {exc}") from exc
        max_items = _max_item_count(
            request.headers.get("x-ms-max-item-count"), self.config.max_item_count
        )
        start = 0
        token = request.headers.get("x-ms-continuation")
        if token:
            try:
                start = self.continuations.decode(token, text, self.now())
            except ContinuationError as exc:
                raise IotHubError(400, f"Invalid continuation token: {exc}") from exc
        poison = fault_plan_of(request.scope).poison
        if query.filtered:
            # A filter may scan the rest of the hub; keep that off the event loop.
            items, next_index = await run_in_threadpool(
                self._query_page, query, start, max_items, poison
            )
        else:
            items, next_index = self._query_page(query, start, max_items, poison)
        headers = {"x-ms-item-type": "twin"}
        if next_index is not None:
            headers["x-ms-continuation"] = self.continuations.encode(next_index, text, self.now())
        return _json_response(items, headers=headers)

    def _query_page(
        self, query: TwinQuery, start: int, max_items: int, poison: tuple[FaultSpec, ...]
    ) -> tuple[list[JsonDict], int | None]:
        """Up to `max_items` matching twins from index `start`, and the index of the next match
        (None when there is none: the last page carries no continuation)."""
        items: list[JsonDict] = []
        for index in self.twins.live_indexes(start):
            twin = self.twins.twin(index)
            if not query.matches(twin):
                continue
            if len(items) == max_items:
                return items, index
            items.append(_poisoned(twin, index, poison) if poison else twin)
        return items, None

    async def _get_twin(self, request: Request) -> Response:
        self.throttle.check(TWIN_READ)
        index = self._index_or_404(request.path_params["device_id"])
        twin = self.twins.twin(index)
        poison = fault_plan_of(request.scope).poison
        etag = twin.get("etag")
        if poison:
            twin = _poisoned(twin, index, poison)
        return _json_response(twin, headers={"ETag": f'"{etag}"'})

    async def _update_twin(self, request: Request) -> Response:
        self.throttle.check(TWIN_UPDATE)
        device_id = request.path_params["device_id"]
        index = self._index_or_404(device_id)
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise IotHubError(400, "the twin patch must be a JSON object")
        properties = body.get("properties") or {}
        if not isinstance(properties, dict):
            raise IotHubError(400, "properties must be a JSON object")
        if "reported" in properties:
            raise IotHubError(
                400, "reported properties are written by the device, not the service API"
            )
        change = TwinChange(
            tags=body.get("tags"),
            desired=properties.get("desired"),
            replace=request.method == "PUT",
        )
        try:
            twin = self.twins.update(
                index, change, if_match=_if_match(request.headers.get("if-match"))
            )
        except PreconditionMismatch as exc:
            raise IotHubError(
                412, f"Precondition failed for device {device_id}: {exc}", PRECONDITION_FAILED
            ) from exc
        except ValueError as exc:
            raise IotHubError(400, f"Invalid twin patch for device {device_id}: {exc}") from exc
        return _json_response(twin, headers={"ETag": f'"{twin["etag"]}"'})

    async def _get_device(self, request: Request) -> Response:
        self.throttle.check(REGISTRY_READ)
        index = self._index_or_404(request.path_params["device_id"])
        device = self.twins.generator.device_identity(index, self.twins.twin(index))
        return _json_response(device, headers={"ETag": f'"{device["etag"]}"'})

    # -- /_emulator handlers ---------------------------------------------------------------------

    async def _control_add_devices(self, request: Request) -> Response:
        body = await _json_body(request)
        count = body.get("count") if isinstance(body, dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise IotHubError(400, 'body must be {"count": <integer >= 1>}')
        added = self.twins.add(count)
        # Ids for the first 1000 only: adding a million devices should not build a huge reply.
        ids = [self.twins.generator.device_id(i) for i in added[:1000]]
        return _json_response(
            {"added": count, "device_count": self.twins.count, "ids": ids}, status=201
        )

    async def _control_device(self, request: Request) -> Response:
        device_id = request.path_params["device_id"]
        part = request.path_params.get("part")
        try:
            if request.method == "DELETE":
                self.delete_device(device_id)
                return _json_response({"deleted": device_id})
            if request.method == "GET":
                return _json_response(self.get_twin(device_id))
            body = await _json_body(request)
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            if part == "desired":
                return _json_response(self.patch_desired(device_id, body))
            if part == "reported":
                return _json_response(self.patch_reported(device_id, body))
            return _json_response(self.update_device(device_id, body))
        except KeyError as exc:
            raise IotHubError(404, f"Device {device_id} not registered", DEVICE_NOT_FOUND) from exc
        except ValueError as exc:
            raise IotHubError(400, str(exc)) from exc

    async def _control_clock(self, request: Request) -> Response:
        if request.method == "POST":
            body = await _json_body(request)
            skew = body.get("skew_s") if isinstance(body, dict) else None
            if not isinstance(skew, int | float) or isinstance(skew, bool):
                raise IotHubError(
                    400, 'body must be {"skew_s": <seconds the hub clock runs ahead>}'
                )
            self.clock_skew_s = float(skew)
        return _json_response({"skew_s": self.clock_skew_s, "now": self.now()})

    async def _control_throttle(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.throttle.clear()
        elif request.method == "POST":
            body = await _json_body(request)
            try:
                self.throttle.set(body["operation"], body.get("rate_per_s"), body.get("burst"))
            except (KeyError, TypeError, ValueError) as exc:
                raise IotHubError(
                    400,
                    'body must be {"operation": one of '
                    f'{list(OPERATIONS)}, "rate_per_s": <float or null>, "burst": <float>}}: {exc}',
                ) from exc
        return _json_response({"throttle": self.throttle.to_json()})

    async def _control_stats(self, _request: Request) -> Response:
        return _json_response(self.stats())

    async def _control_reset(self, _request: Request) -> Response:
        self.reset()
        return _json_response(self.stats())

    # -- the app ---------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        service_routes = [
            Route("/devices/query", self._query, methods=["POST"]),
            Route("/devices/{device_id:segment}", self._get_device, methods=["GET"]),
            Route("/twins/{device_id:segment}", self._get_twin, methods=["GET"]),
            Route("/twins/{device_id:segment}", self._update_twin, methods=["PATCH", "PUT"]),
        ]
        control_routes = [
            *fault_and_request_routes(self.faults, self.request_log),
            Route("/devices", self._control_add_devices, methods=["POST"]),
            Route(
                "/devices/{device_id:segment}",
                self._control_device,
                methods=["GET", "PATCH", "DELETE"],
            ),
            Route(
                "/devices/{device_id:segment}/{part:str}", self._control_device, methods=["PATCH"]
            ),
            Route("/clock", self._control_clock, methods=["GET", "POST"]),
            Route("/throttle", self._control_throttle, methods=["GET", "POST", "DELETE"]),
            Route("/stats", self._control_stats, methods=["GET"]),
            Route("/reset", self._control_reset, methods=["POST"]),
        ]

        async def handle_hub_error(_request: Request, exc: Exception) -> Response:
            assert isinstance(exc, IotHubError)
            return self.error_response(exc)

        async def handle_http_exception(_request: Request, exc: Exception) -> Response:
            # Unknown routes and wrong methods: answer in the hub's error shape too.
            assert isinstance(exc, HTTPException)
            response = self.error_response(IotHubError(exc.status_code, exc.detail or "error"))
            response.headers.update(exc.headers or {})
            return response

        app = Starlette(
            routes=[Mount(CONTROL_PREFIX, routes=control_routes), *service_routes],
            middleware=[
                # Outermost first: the log sees what the client got, faults included.
                Middleware(RequestRecordingMiddleware, log=self.request_log),
                Middleware(ErrorCodeHeaderMiddleware, exempt_path_prefixes=(CONTROL_PREFIX,)),
                Middleware(
                    FaultInjectionMiddleware,
                    injector=self.faults,
                    render_error=self.render_fault,
                    exempt_path_prefixes=(CONTROL_PREFIX,),
                ),
                Middleware(HubGatewayMiddleware, emulator=self),
                Middleware(RouteOnRawPath),  # innermost: ids may hold an encoded `/`
            ],
            exception_handlers={
                IotHubError: handle_hub_error,
                HTTPException: handle_http_exception,
            },
        )
        app.state.emulator = self
        return app


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise IotHubError(400, f"the request body is not valid JSON: {exc}") from exc


def _max_item_count(raw: str | None, cap: int) -> int:
    """The page size: the client's wish, within 1..cap ("the service may use a different value")."""
    if raw is None or raw.strip() == "":
        return cap
    try:
        wanted = int(raw)
    except ValueError:
        raise IotHubError(400, f"x-ms-max-item-count must be an integer, got {raw!r}") from None
    return cap if wanted < 1 else min(wanted, cap)


def _if_match(raw: str | None) -> str | None:
    """`"AAAAAAAAAAc="` (the SDK quotes it), `W/"..."` or bare → the etag; absent → None."""
    if raw is None:
        return None
    value = raw.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"') or None


def create_azure_app(config: AzureIotEmulatorConfig | None = None) -> Starlette:
    """The emulator's ASGI app; the `AzureIotEmulator` behind it is `app.state.emulator`."""
    return AzureIotEmulator(config).app


def run_azure_emulator(
    host: str = "127.0.0.1",
    port: int = 8788,
    device_count: int = 500,
    seed: int = 7,
    **config: Any,
) -> None:
    """Serve an IoT hub emulator in the foreground until interrupted (for the CLI). Other
    `AzureIotEmulatorConfig` fields (host_name, policies, latency_ms, ...) pass through."""
    emulator_config = AzureIotEmulatorConfig(device_count=device_count, seed=seed, **config)
    serve_forever(create_azure_app(emulator_config), host=host, port=port)


def main(argv: list[str] | None = None) -> None:
    """`python -m sync_pipelines_peers.emulators.azure_iot --port 8788 --devices 500` (used by the
    benchmark until the CLI has `sync-pipelines emulator azure`); prints the connection string."""
    import argparse

    parser = argparse.ArgumentParser(description="Serve the Azure IoT Hub service API emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8788)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hub", default=DEFAULT_HOST_NAME, help="HostName clients sign")
    parser.add_argument("--latency-ms", type=int, default=0)
    args = parser.parse_args(argv)
    config = AzureIotEmulatorConfig(
        host_name=args.hub, device_count=args.devices, seed=args.seed, latency_ms=args.latency_ms
    )
    print(
        f"Azure IoT Hub emulator on http://{args.host}:{args.port} ({args.devices} devices)\n"
        f"connection string: {config.connection_string()}",
        flush=True,
    )
    serve_forever(create_azure_app(config), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
