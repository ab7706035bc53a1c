"""A local Golioth Management API (`/v1`) for tests, demos and benchmarks.

Faithful to PROVIDERS.md §1: `x-api-key` / `Authorization: bearer` auth, rpcStatus error
bodies, 0-based page-number paging with `{list, page, perPage, total}`, protojson device
objects (camelCase, omitted zero values, optional int64-as-string counters) and LightDB
State reads and deep-merging writes.

Devices and their state are generated lazily from (seed, index), so a million-device project
costs memory only for what a test changes (added, patched or deleted devices, written state).
Routes under `/_emulator/` (no auth) let tests inject faults, read the request log and change
the inventory over real sockets; `GoliothEmulator` offers the same operations in-process.
The inventory lives in `golioth_inventory`, LightDB State in `lightdb_state` and the request
log in `request_log`.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

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
from sync_pipelines_peers.emulators.golioth_errors import RpcError
from sync_pipelines_peers.emulators.golioth_inventory import (
    _DAY_MS,
    _FIRST_CREATED_MS,
    DeviceGenerator,
    Inventory,
    InventoryView,
    _now_ms,
    _rfc3339_ms,
)
from sync_pipelines_peers.emulators.lightdb_state import LightDbState, parse_state_path
from sync_pipelines_peers.emulators.quoted_ids import RouteOnRawPath
from sync_pipelines_peers.emulators.request_log import (
    CONTROL_PREFIX,
    RecordedRequest,
    RequestLog,
    RequestRecordingMiddleware,
)
from sync_pipelines_peers.emulators.server import serve_forever

JsonDict = dict[str, Any]

MAX_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class GoliothEmulatorConfig:
    project_id: str = "demo-project"
    api_key: str = "emulator-api-key"
    #: accepted as `Authorization: bearer <token>`; None disables bearer auth
    access_token: str | None = None
    device_count: int = 100
    seed: int = 7
    #: protojson encodes int64 as JSON strings; the docs example shows numbers (the default)
    int64_as_string: bool = False
    #: added to every `/v1` request
    latency_ms: int = 0
    #: a token-bucket limit on `/v1` (429 + Retry-After when exceeded); None = unlimited
    token_bucket_rps: float | None = None
    token_bucket_burst: float | None = None
    #: how many received requests the request log keeps
    request_log_size: int = 100_000


# ---------------------------------------------------------------------------------------------
# Wire format: rpcStatus errors and JSON responses
# ---------------------------------------------------------------------------------------------

# grpc-gateway's HTTP status <-> gRPC code mapping (PROVIDERS.md §1.5).
_GRPC_CODE_BY_HTTP_STATUS = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 5,  # NOT_FOUND
    405: 12,  # UNIMPLEMENTED
    409: 6,  # ALREADY_EXISTS
    429: 8,  # RESOURCE_EXHAUSTED
    500: 13,  # INTERNAL
    501: 12,  # UNIMPLEMENTED
    503: 14,  # UNAVAILABLE
    504: 4,  # DEADLINE_EXCEEDED
}
_GRPC_UNKNOWN = 2


_encode = msgspec.json.Encoder().encode


def _dumps(payload: Any) -> bytes:
    # compact JSON, non-ASCII as UTF-8 (as Go's protojson writes it); msgspec encodes in C,
    # which keeps the emulator's CPU off a benchmark's critical path (a page of 100 devices:
    # about 0.6 ms less than json.dumps)
    return _encode(payload)


def render_rpc_status(http_status: int, message: str) -> bytes:
    """Golioth's error body for an HTTP status: `{"code", "message", "details"}`."""
    code = _GRPC_CODE_BY_HTTP_STATUS.get(http_status, _GRPC_UNKNOWN)
    return _dumps({"code": code, "message": message, "details": []})


def _json_response(payload: Any, status: int = 200) -> Response:
    return Response(_dumps(payload), status_code=status, media_type="application/json")


def _rpc_error_response(http_status: int, message: str) -> Response:
    return Response(
        render_rpc_status(http_status, message),
        status_code=http_status,
        media_type="application/json",
    )


async def _handle_rpc_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RpcError)
    return _rpc_error_response(exc.http_status, exc.message)


async def _handle_http_exception(_request: Request, exc: Exception) -> Response:
    # Unknown routes and wrong methods: answer in rpcStatus like grpc-gateway does.
    assert isinstance(exc, HTTPException)
    response = _rpc_error_response(exc.status_code, exc.detail or "error")
    response.headers.update(exc.headers or {})
    return response


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise RpcError(400, f"request body is not valid JSON: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Auth
# ---------------------------------------------------------------------------------------------


class GoliothAuthMiddleware:
    """Admits `x-api-key: <api key>` or `Authorization: bearer <access token>`; 401 otherwise."""

    def __init__(self, app: ASGIApp, api_key: str, access_token: str | None) -> None:
        self.app = app
        self._api_key = api_key.encode()
        self._access_token = access_token.encode() if access_token else None

    def _authorised(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        for name, value in headers:
            name = name.lower()
            if name == b"x-api-key" and hmac.compare_digest(value, self._api_key):
                return True
            if name == b"authorization" and self._access_token is not None:
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer" and hmac.compare_digest(
                    token.strip(), self._access_token
                ):
                    return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._authorised(scope["headers"]):
            await self.app(scope, receive, send)
            return
        response = _rpc_error_response(
            401,
            "missing or invalid credentials: send the project API key as 'x-api-key' "
            "or an access token as 'Authorization: bearer <token>'",
        )
        await response(scope, receive, send)


# ---------------------------------------------------------------------------------------------
# List query parameters
# ---------------------------------------------------------------------------------------------

_INTEGER = re.compile(r"^[+-]?\d+$")
_TRUE_VALUES = frozenset({"true", "1", "t"})
_FALSE_VALUES = frozenset({"false", "0", "f"})


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not _INTEGER.match(raw):
        raise RpcError(
            400,
            f'type mismatch, parameter: {name}, error: strconv.ParseInt: parsing "{raw}": '
            "invalid syntax",
        )
    return int(raw)


@dataclass(frozen=True, slots=True)
class DeviceListQuery:
    """`GET /v1/projects/{p}/devices` parameters, validated."""

    page: int = 0
    per_page: int = MAX_PAGE_SIZE
    device_name: str | None = None
    hardware_id: str | None = None
    tags: tuple[str, ...] = ()
    blueprint_id: str | None = None
    enabled: bool | None = None
    term: str | None = None
    cohort_id: str | None = None
    state_path: str | None = None

    @classmethod
    def from_request(cls, request: Request) -> DeviceListQuery:
        params = request.query_params
        page = _int_param(params, "page", 0)
        per_page = _int_param(params, "perPage", MAX_PAGE_SIZE)
        if page < 0:
            raise RpcError(400, f"page must be >= 0, got {page}")
        if not 1 <= per_page <= MAX_PAGE_SIZE:
            raise RpcError(
                400, f"perPage must be between 1 and {MAX_PAGE_SIZE} (inclusive), got {per_page}"
            )
        enabled = params.get("enabled")
        enabled_flag: bool | None = None
        if enabled:
            if enabled.lower() in _TRUE_VALUES:
                enabled_flag = True
            elif enabled.lower() in _FALSE_VALUES:
                enabled_flag = False
            else:
                raise RpcError(
                    400,
                    f'type mismatch, parameter: enabled, error: strconv.ParseBool: parsing "{enabled}": '
                    "invalid syntax",
                )
        return cls(
            page=page,
            per_page=per_page,
            device_name=params.get("deviceName") or None,
            hardware_id=params.get("hardwareId") or None,
            tags=tuple(t for t in params.getlist("tags") if t),
            blueprint_id=params.get("blueprintId") or None,
            enabled=enabled_flag,
            term=params.get("term") or None,
            cohort_id=params.get("cohortId") or None,
            state_path=params.get("statePath") or None,
        )

    @property
    def has_filters(self) -> bool:
        return any(
            (
                self.device_name,
                self.hardware_id,
                self.tags,
                self.blueprint_id,
                self.enabled is not None,
                self.term,
                self.cohort_id,
            )
        )

    def matches(self, wire: JsonDict) -> bool:
        if self.device_name is not None and wire.get("name") != self.device_name:
            return False
        hardware_ids = wire.get("hardwareIds", [])
        if self.hardware_id is not None and self.hardware_id not in hardware_ids:
            return False
        if self.tags and not set(self.tags) <= set(wire.get("tagIds", [])):
            return False
        if self.blueprint_id is not None and wire.get("blueprintId") != self.blueprint_id:
            return False
        if self.enabled is not None and bool(wire.get("enabled", False)) != self.enabled:
            return False
        if self.cohort_id is not None and wire.get("cohortId") != self.cohort_id:
            return False
        if self.term is not None:
            term = self.term.lower()
            haystack = [wire.get("name", ""), *hardware_ids]
            if not any(term in str(value).lower() for value in haystack):
                return False
        return True


def _poisoned(wire: JsonDict, index: int, poison: tuple[FaultSpec, ...]) -> JsonDict:
    for spec in poison:
        if spec.device_index == index or (spec.device_id and spec.device_id == wire.get("id")):
            if spec.shape is PoisonShape.MISSING_ID:
                wire.pop("id", None)
            else:
                wire["createdAt"] = "not-a-time"
                wire["hardwareIds"] = "oops"
    return wire


# ---------------------------------------------------------------------------------------------
# The emulator
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmulatorStats:
    device_count: int
    generated_count: int
    deleted_count: int
    patched_count: int
    state_written_count: int
    requests_served: int
    requests_logged: int
    active_faults: int
    faults_applied: dict[str, int]

    def to_json(self) -> JsonDict:
        return {
            "device_count": self.device_count,
            "generated_count": self.generated_count,
            "deleted_count": self.deleted_count,
            "patched_count": self.patched_count,
            "state_written_count": self.state_written_count,
            "requests_served": self.requests_served,
            "requests_logged": self.requests_logged,
            "active_faults": self.active_faults,
            "faults_applied": self.faults_applied,
        }


class GoliothEmulator:
    """One emulated Golioth project: inventory, LightDB State, faults, request log, and the app.

    Serve `.app` (e.g. with `EmulatorServer`); drive it over `/_emulator/*` or with the
    methods below from the test's own thread.
    """

    def __init__(self, config: GoliothEmulatorConfig | None = None) -> None:
        self.config = config or GoliothEmulatorConfig()
        self.generator = DeviceGenerator(self.config.seed)
        self.inventory = Inventory(self.generator, self.config.device_count)
        self.state = LightDbState()
        rate_limiter = (
            TokenBucket(self.config.token_bucket_rps, self.config.token_bucket_burst)
            if self.config.token_bucket_rps
            else None
        )
        self.faults = FaultInjector(
            seed=self.config.seed,
            base_latency_ms=self.config.latency_ms,
            rate_limiter=rate_limiter,
        )
        self.request_log = RequestLog(self.config.request_log_size)
        self.app = self._build_app()

    # -- Python API (same operations as /_emulator/*) -------------------------------------------

    @property
    def device_count(self) -> int:
        return self.inventory.view.count

    def device_ids(self) -> Iterator[str]:
        """Live device ids in creation (= paging) order, generated as iterated."""
        view = self.inventory.view
        for index in view.live_indexes():
            yield view.generated(index).id

    def get_device(self, device_id: str) -> JsonDict:
        view = self.inventory.view
        return view.wire(view.generated(self._index_of(device_id)), self.config.int64_as_string)

    def add_devices(self, count: int) -> list[str]:
        """Append `count` new (never connected) devices; returns their ids."""
        added = self.inventory.add(count)
        view = self.inventory.view
        return [view.generated(index).id for index in added]

    def patch_device(self, device_id: str, changes: Mapping[str, Any]) -> JsonDict:
        """Change device fields (camelCase, objects deep-merge, None clears); bumps updatedAt."""
        if not isinstance(changes, Mapping):
            raise ValueError("a device patch must be a JSON object of device fields")
        if "id" in changes:
            raise ValueError("a device's id cannot be patched")
        index = self._index_of(device_id)
        stamped = dict(changes)
        stamped.setdefault("updatedAt", _rfc3339_ms(_now_ms()))
        self.inventory.patch(index, stamped)
        return self.get_device(device_id)

    def delete_device(self, device_id: str) -> None:
        index = self._index_of(device_id)
        self.inventory.delete(index)
        self.state.forget(index)

    def restore_device(self, device_id: str) -> None:
        """A deleted device is re-created with the same id (the generated device)."""
        view = self.inventory.view
        index = view.generator.index_from_id(device_id)
        if index is None or not 0 <= index < view.generated_count:
            raise KeyError(
                f"no device {device_id!r} was ever in project {self.config.project_id!r}"
            )
        if view.generated(index).id != device_id:
            raise KeyError(
                f"no device {device_id!r} was ever in project {self.config.project_id!r}"
            )
        self.inventory.restore(index)

    def read_state(self, device_id: str, path: str = "") -> Any:
        index = self._index_of(device_id)
        return self.state.read(index, self._state_generator(index), parse_state_path(path))

    def write_state(self, device_id: str, path: str, value: Any) -> Any:
        index = self._index_of(device_id)
        return self.state.write(index, self._state_generator(index), parse_state_path(path), value)

    def erase_state(self, device_id: str) -> None:
        """The device has no LightDB State at all (never reported): a listing with `statePath`
        leaves its `data` out, a read of it answers null."""
        self.state.erase(self._index_of(device_id))

    def delete_state(self, device_id: str, path: str = "") -> None:
        index = self._index_of(device_id)
        self.state.delete(index, self._state_generator(index), parse_state_path(path))

    def add_faults(self, *specs: FaultSpec | Mapping[str, Any]) -> list[JsonDict]:
        return self.faults.add(specs)

    def clear_faults(self) -> None:
        self.faults.clear()

    def requests(self) -> list[RecordedRequest]:
        return self.request_log.entries()

    def clear_requests(self) -> None:
        self.request_log.clear()

    def stats(self) -> EmulatorStats:
        view = self.inventory.view
        return EmulatorStats(
            device_count=view.count,
            generated_count=view.generated_count,
            deleted_count=len(view.deleted),
            patched_count=len(view.patches),
            state_written_count=self.state.written_count,
            requests_served=self.request_log.total,
            requests_logged=len(self.request_log),
            active_faults=len(self.faults.active()),
            faults_applied=self.faults.applied_counts(),
        )

    def reset(self) -> None:
        """Back to the generated inventory: no faults, no written state, empty request log."""
        self.inventory.reset()
        self.state.clear()
        self.faults.clear()
        self.request_log.clear()

    # -- lookups ---------------------------------------------------------------------------------

    def _index_of(self, device_id: str) -> int:
        index = self.inventory.view.index_of(device_id)
        if index is None:
            raise KeyError(f"no device {device_id!r} in project {self.config.project_id!r}")
        return index

    def _state_generator(self, index: int) -> Callable[[], JsonDict]:
        view = self.inventory.view
        return lambda: DeviceGenerator.state(view.generated(index))

    def _project_or_404(self, request: Request) -> None:
        project_id = request.path_params["project_id"]
        if project_id != self.config.project_id:
            raise RpcError(404, f"project {project_id!r} not found")

    def _device_index_or_404(self, request: Request) -> int:
        self._project_or_404(request)
        device_id = request.path_params["device_id"]
        index = self.inventory.view.index_of(device_id)
        if index is None:
            raise RpcError(
                404, f"device {device_id!r} not found in project {self.config.project_id!r}"
            )
        return index

    def _device_wire(
        self,
        view: InventoryView,
        index: int,
        state_path: str | None,
        poison: tuple[FaultSpec, ...],
    ) -> JsonDict:
        device = view.generated(index)
        wire = view.wire(device, self.config.int64_as_string)
        if state_path is not None:
            data = self.state.read(
                index, lambda: DeviceGenerator.state(device), parse_state_path(state_path)
            )
            if data is not None:
                wire["data"] = data
        if poison:
            wire = _poisoned(wire, index, poison)
        return wire

    def _count(self, value: int) -> int | str:
        return str(value) if self.config.int64_as_string else value

    def _list_envelope(
        self, items: list[JsonDict], page: int, per_page: int, total: int
    ) -> JsonDict:
        return {
            "list": items,
            "page": self._count(page),
            "perPage": self._count(per_page),
            "total": self._count(total),
        }

    # -- /v1 handlers ----------------------------------------------------------------------------

    def _project_json(self) -> JsonDict:
        created = _rfc3339_ms(_FIRST_CREATED_MS - 30 * _DAY_MS)
        return {
            "id": self.config.project_id,
            "name": self.config.project_id.replace("-", " ").title(),
            "organizationId": self.generator.organization_id,
            "createdAt": created,
            "updatedAt": created,
        }

    async def _list_projects(self, _request: Request) -> Response:
        return _json_response(self._list_envelope([self._project_json()], 0, MAX_PAGE_SIZE, 1))

    async def _get_project(self, request: Request) -> Response:
        self._project_or_404(request)
        return _json_response({"data": self._project_json()})

    async def _list_devices(self, request: Request) -> Response:
        self._project_or_404(request)
        query = DeviceListQuery.from_request(request)
        poison = fault_plan_of(request.scope).poison
        view = self.inventory.view
        if query.has_filters:
            # A filter scans the whole inventory; keep that off the event loop.
            items, total = await run_in_threadpool(self._filtered_page, view, query, poison)
        else:
            items, total = self._unfiltered_page(view, query, poison)
        return _json_response(self._list_envelope(items, query.page, query.per_page, total))

    def _unfiltered_page(
        self, view: InventoryView, query: DeviceListQuery, poison: tuple[FaultSpec, ...]
    ) -> tuple[list[JsonDict], int]:
        items = []
        for index in view.live_indexes(query.page * query.per_page):
            if len(items) == query.per_page:
                break
            items.append(self._device_wire(view, index, query.state_path, poison))
        return items, view.count

    def _filtered_page(
        self, view: InventoryView, query: DeviceListQuery, poison: tuple[FaultSpec, ...]
    ) -> tuple[list[JsonDict], int]:
        first = query.page * query.per_page
        items: list[JsonDict] = []
        total = 0
        for index in view.live_indexes():
            if not query.matches(view.wire(view.generated(index), self.config.int64_as_string)):
                continue
            if first <= total < first + query.per_page:
                items.append(self._device_wire(view, index, query.state_path, poison))
            total += 1
        return items, total

    async def _get_device(self, request: Request) -> Response:
        index = self._device_index_or_404(request)
        state_path = request.query_params.get("statePath") or None
        poison = fault_plan_of(request.scope).poison
        return _json_response(
            {"data": self._device_wire(self.inventory.view, index, state_path, poison)}
        )

    async def _device_state(self, request: Request) -> Response:
        index = self._device_index_or_404(request)
        path = parse_state_path(request.path_params.get("state_path", ""))
        generate = self._state_generator(index)
        if request.method == "GET":
            return _json_response({"data": self.state.read(index, generate, path)})
        if request.method == "DELETE":
            self.state.delete(index, generate, path)
            return _json_response({})
        value = await _json_body(request)
        return _json_response({"data": self.state.write(index, generate, path, value)})

    # -- /_emulator handlers ---------------------------------------------------------------------

    async def _control_add_devices(self, request: Request) -> Response:
        body = await _json_body(request)
        count = body.get("count") if isinstance(body, dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise RpcError(400, 'body must be {"count": <integer >= 1>}')
        added = self.inventory.add(count)
        view = self.inventory.view
        # Ids for the first 1000 only: adding a million devices should not build a huge reply.
        ids = [view.generated(index).id for index in added[:1000]]
        return _json_response({"added": count, "device_count": view.count, "ids": ids}, status=201)

    async def _control_device(self, request: Request) -> Response:
        device_id = request.path_params["device_id"]
        try:
            if request.method == "DELETE":
                self.delete_device(device_id)
                return _json_response({"deleted": device_id})
            if request.method == "PATCH":
                return _json_response(
                    {"data": self.patch_device(device_id, await _json_body(request))}
                )
            return _json_response({"data": self.get_device(device_id)})
        except KeyError as exc:
            raise RpcError(404, str(exc.args[0])) from exc
        except ValueError as exc:
            raise RpcError(400, str(exc)) from exc

    async def _control_stats(self, _request: Request) -> Response:
        return _json_response(self.stats().to_json())

    async def _control_reset(self, _request: Request) -> Response:
        self.reset()
        return _json_response(self.stats().to_json())

    # -- the app ---------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        state_methods = ["GET", "PUT", "POST", "PATCH", "DELETE"]
        device = "/projects/{project_id}/devices/{device_id:segment}"
        v1_routes = [
            Route("/projects", self._list_projects, methods=["GET"]),
            Route("/projects/{project_id}", self._get_project, methods=["GET"]),
            Route("/projects/{project_id}/devices", self._list_devices, methods=["GET"]),
            Route(device, self._get_device, methods=["GET"]),
            Route(f"{device}/data", self._device_state, methods=state_methods),
            Route(f"{device}/data/{{state_path:path}}", self._device_state, methods=state_methods),
        ]
        control_routes = [
            *fault_and_request_routes(self.faults, self.request_log),
            Route("/devices", self._control_add_devices, methods=["POST"]),
            Route(
                "/devices/{device_id:segment}",
                self._control_device,
                methods=["GET", "PATCH", "DELETE"],
            ),
            Route("/stats", self._control_stats, methods=["GET"]),
            Route("/reset", self._control_reset, methods=["POST"]),
        ]
        app = Starlette(
            routes=[
                Mount(
                    "/v1",
                    routes=v1_routes,
                    middleware=[
                        Middleware(
                            GoliothAuthMiddleware,
                            api_key=self.config.api_key,
                            access_token=self.config.access_token,
                        )
                    ],
                ),
                Mount(CONTROL_PREFIX, routes=control_routes),
            ],
            middleware=[
                # Outermost first: the log sees what the client got, faults included.
                Middleware(RequestRecordingMiddleware, log=self.request_log),
                Middleware(
                    FaultInjectionMiddleware,
                    injector=self.faults,
                    render_error=render_rpc_status,
                    exempt_path_prefixes=(CONTROL_PREFIX,),
                ),
                Middleware(RouteOnRawPath),  # innermost: ids may hold an encoded `/`
            ],
            exception_handlers={RpcError: _handle_rpc_error, HTTPException: _handle_http_exception},
        )
        app.state.emulator = self
        return app


def create_golioth_app(config: GoliothEmulatorConfig | None = None) -> Starlette:
    """The emulator's ASGI app; the `GoliothEmulator` behind it is `app.state.emulator`."""
    return GoliothEmulator(config).app


def run_golioth_emulator(host: str, port: int, config: GoliothEmulatorConfig) -> None:
    """Serve a Golioth emulator in the foreground until interrupted (for the CLI)."""
    serve_forever(create_golioth_app(config), host=host, port=port)
