"""A local Golioth Management API (`/v1`) for tests, demos and benchmarks.

Faithful to PROVIDERS.md §1: `x-api-key` / `Authorization: bearer` auth, rpcStatus error
bodies, 0-based page-number paging with `{list, page, perPage, total}`, protojson device
objects (camelCase, omitted zero values, optional int64-as-string counters) and LightDB
State reads and deep-merging writes.

Devices and their state are generated lazily from (seed, index), so a million-device project
costs memory only for what a test changes (added, patched or deleted devices, written state).
Routes under `/_emulator/` (no auth) let tests inject faults, read the request log and change
the inventory over real sockets; `GoliothEmulator` offers the same operations in-process.
"""

from __future__ import annotations

import bisect
import copy
import functools
import hashlib
import hmac
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from sync_pipelines.emulators.faults import (
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
from sync_pipelines.emulators.server import serve_forever

JsonDict = dict[str, Any]

MAX_PAGE_SIZE = 100
CONTROL_PREFIX = "/_emulator"


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


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def render_rpc_status(http_status: int, message: str) -> bytes:
    """Golioth's error body for an HTTP status: `{"code", "message", "details"}`."""
    code = _GRPC_CODE_BY_HTTP_STATUS.get(http_status, _GRPC_UNKNOWN)
    return _dumps({"code": code, "message": message, "details": []})


class RpcError(Exception):
    """An error answered with an rpcStatus body."""

    def __init__(self, http_status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message


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


@functools.lru_cache(maxsize=4096)
def _utc_date(day_number: int) -> str:
    t = time.gmtime(day_number * 86_400)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"


def _rfc3339_ms(epoch_ms: int) -> str:
    """RFC 3339 UTC with milliseconds and `Z`, as Golioth sends it. (Hot: several per device.)"""
    day, ms = divmod(epoch_ms, 86_400_000)
    seconds, millis = divmod(ms, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{_utc_date(day)}T{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}Z"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _omit_zero_values(value: Any) -> Any:
    """Drop protojson zero values (None, "", [], {}, false) from objects, recursively."""
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            item = _omit_zero_values(item)
            if item is None or item == "" or item is False or item == [] or item == {}:
                continue
            kept[key] = item
        return kept
    return value


def _deep_merge(base: JsonDict, overlay: Mapping[str, Any]) -> JsonDict:
    """`overlay` written onto a copy of `base`: objects merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in overlay.items():
        existing = merged.get(key)
        if isinstance(value, Mapping) and isinstance(existing, dict):
            merged[key] = _deep_merge(existing, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# ---------------------------------------------------------------------------------------------
# Deterministic generation: a device and its LightDB state from (seed, index)
# ---------------------------------------------------------------------------------------------

# Initial devices are created 20 s apart from 2025-01-01T00:00:00Z, so creation order is
# index order and a million devices still lie in the past.
_FIRST_CREATED_MS = 1_735_689_600_000
_CREATION_STEP_MS = 20_000
_DAY_MS = 86_400_000
_SETTINGS_STATUSES = ("in-sync", "in-sync", "in-sync", "out-of-sync", "no-settings")


def _digest(seed: int, label: str, index: int = 0) -> bytes:
    return hashlib.blake2b(f"{seed}:{label}:{index}".encode(), digest_size=64).digest()


# Not frozen: a frozen dataclass pays for object.__setattr__ per field, and this is built
# for every device of every page served.
@dataclass(slots=True)
class GeneratedDevice:
    """A device as the generator made it, before any test patched it."""

    index: int
    id: str
    name: str
    hardware_ids: tuple[str, ...]
    tag_ids: tuple[str, ...]
    blueprint_id: str | None
    cohort_id: str | None
    certificate_id: str | None
    enabled: bool
    #: "-" (never connected), "online" or "offline"
    connection: str
    created_ms: int
    updated_ms: int
    last_report_ms: int | None
    last_seen_offline_ms: int | None
    settings_status: str
    settings_version: int
    firmware_version: str
    #: the rest of the digest, for the LightDB state
    state_seed: bytes

    def to_wire(self, int64_as_string: bool) -> JsonDict:
        """The protojson device object, zero values omitted."""
        wire: JsonDict = {"id": self.id, "name": self.name, "hardwareIds": list(self.hardware_ids)}
        if self.tag_ids:
            wire["tagIds"] = list(self.tag_ids)
        if self.blueprint_id:
            wire["blueprintId"] = self.blueprint_id
        if self.cohort_id:
            wire["cohortId"] = self.cohort_id
        if self.certificate_id:
            wire["certificateId"] = self.certificate_id
        if self.enabled:
            wire["enabled"] = True
        wire["status"] = self.connection
        last_report = None if self.last_report_ms is None else _rfc3339_ms(self.last_report_ms)
        if last_report is not None:
            wire["lastReport"] = last_report
        wire["createdAt"] = _rfc3339_ms(self.created_ms)
        wire["updatedAt"] = _rfc3339_ms(self.updated_ms)
        wire["metadata"] = self._metadata(last_report, int64_as_string)
        return wire

    def _metadata(self, last_report: str | None, int64_as_string: bool) -> JsonDict:
        metadata: JsonDict = {"status": self.connection}
        if last_report is None:
            metadata["lastSettingsStatus"] = {"status": "no-settings"}
            return metadata
        metadata["lastReport"] = last_report
        metadata["lastSeenOnline"] = last_report
        if self.last_seen_offline_ms is not None:
            metadata["lastSeenOffline"] = _rfc3339_ms(self.last_seen_offline_ms)
        settings: JsonDict = {"status": self.settings_status}
        if self.settings_status != "no-settings":
            version = self.settings_version
            settings["reportedVersion"] = str(version) if int64_as_string else version
            settings["syncTime"] = last_report
        metadata["lastSettingsStatus"] = settings
        metadata["update"] = {
            "main": {
                "package": "main",
                "version": self.firmware_version,
                "state": "IDLE",
                "reason": "READY",
                "target": self.firmware_version,
                "time": last_report,
            }
        }
        return metadata


class DeviceGenerator:
    """Makes device `index` of a project from `seed`, the same way every time.

    Ids look like MongoDB ObjectIds (creation seconds, 4 hash bytes, a counter); the counter is
    the index masked by a per-seed value, so an id leads straight back to its index.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._index_mask = int.from_bytes(_digest(seed, "index-mask")[:4], "big")
        self.tag_ids = tuple(_digest(seed, "tag", k)[:12].hex() for k in range(6))
        # A device's tags are the set bits of one digest byte (at most three of them).
        self._tag_sets = tuple(
            tuple(t for k, t in enumerate(self.tag_ids) if mask >> k & 1)[:3] for mask in range(64)
        )
        self.blueprint_ids = tuple(_digest(seed, "blueprint", k)[:12].hex() for k in range(3))
        self.cohort_ids = tuple(_digest(seed, "cohort", k)[:12].hex() for k in range(2))
        self.organization_id = _digest(seed, "organization")[:12].hex()

    def index_from_id(self, device_id: str) -> int | None:
        """The index an id was made for (still to be checked against the regenerated id)."""
        if len(device_id) != 24:
            return None
        try:
            return int(device_id[16:], 16) ^ self._index_mask
        except ValueError:
            return None

    def device(self, index: int, added_at_ms: int | None = None) -> GeneratedDevice:
        """Device `index`; `added_at_ms` is set for devices a test added while the emulator
        ran: created then, never connected, never updated."""
        d = _digest(self.seed, "device", index)
        fresh = added_at_ms is not None
        created_ms = (
            added_at_ms
            if added_at_ms is not None
            else _FIRST_CREATED_MS + index * _CREATION_STEP_MS + d[4] * 50
        )
        device_id = (
            f"{created_ms // 1000:08x}{d[0:4].hex()}{(index ^ self._index_mask) & 0xFFFFFFFF:08x}"
        )
        # A MAC built from the index, so hardware ids are unique across the project.
        hardware_ids = ["02:00:" + (index & 0xFFFFFFFF).to_bytes(4, "big").hex(":")]
        if d[9] < 90:
            hardware_ids.append(f"35{int.from_bytes(d[10:16], 'big') % 10**13:013d}")
        tag_ids: tuple[str, ...] = ()
        if d[16] >= 64:
            tag_ids = self._tag_sets[d[17] & 63]
        if fresh:
            connection, updated_ms, last_report_ms, last_offline_ms = "-", created_ms, None, None
        else:
            updated_ms = created_ms + int.from_bytes(d[5:8], "big") % (14 * _DAY_MS)
            connection = "-" if d[23] < 40 else ("offline" if d[23] < 160 else "online")
            last_report_ms = None
            last_offline_ms = None
            if connection != "-":
                last_report_ms = created_ms + int.from_bytes(d[24:28], "big") % (60 * _DAY_MS)
                if connection == "offline":
                    last_offline_ms = last_report_ms + int.from_bytes(d[52:56], "big") % _DAY_MS
        return GeneratedDevice(
            index=index,
            id=device_id,
            name=f"device-{index:06d}",
            hardware_ids=tuple(hardware_ids),
            tag_ids=tag_ids,
            blueprint_id=None if d[19] < 77 else self.blueprint_ids[d[19] % 3],
            cohort_id=None if d[20] < 128 else self.cohort_ids[d[20] % 2],
            certificate_id=d[40:52].hex() if d[21] < 51 else None,
            enabled=d[8] < 230,
            connection=connection,
            created_ms=created_ms,
            updated_ms=updated_ms,
            last_report_ms=last_report_ms,
            last_seen_offline_ms=last_offline_ms,
            settings_status=_SETTINGS_STATUSES[d[30] % len(_SETTINGS_STATUSES)],
            settings_version=1 + d[31] % 9,
            firmware_version=f"1.{d[28] % 5}.{d[29] % 10}",
            state_seed=d[32:40],
        )

    @staticmethod
    def state(device: GeneratedDevice) -> JsonDict:
        """The device's LightDB State tree; never-connected devices have reported nothing."""
        s = device.state_seed
        interval_s = (60, 300, 900)[s[0] % 3]
        tree: JsonDict = {"desired": {"interval_s": interval_s, "led": bool(s[6] & 1)}}
        if device.connection == "-":
            return tree
        # Some devices lag behind their desired interval, so a sync has differences to find.
        reported_interval = interval_s if s[5] < 200 else (60, 300, 900)[(s[0] + 1) % 3]
        tree["reported"] = {
            "env": {
                "temp": {"value": round(15 + s[1] * 15 / 255, 1), "unit": "C"},
                "humidity": {"value": 30 + s[2] % 50, "unit": "%"},
            },
            "firmware": {
                "version": device.firmware_version,
                "channel": "beta" if s[4] < 40 else "stable",
            },
            "battery": {"level": s[3] % 101},
            "interval_s": reported_interval,
        }
        return tree


# ---------------------------------------------------------------------------------------------
# The inventory: generated devices plus what tests added, patched and deleted
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _AddedBatch:
    first_index: int
    created_ms: int


@dataclass(frozen=True, slots=True)
class InventoryView:
    """An immutable snapshot of the inventory; readers never need a lock.

    Positions are 0-based places in creation order among live devices; indexes are generation
    indexes (deleted ones leave gaps).
    """

    generator: DeviceGenerator
    initial_count: int
    generated_count: int
    #: sorted, so positions map to indexes with a bisect instead of a scan
    deleted: tuple[int, ...] = ()
    deleted_set: frozenset[int] = frozenset()
    #: index -> device fields a test changed (None clears a field)
    patches: Mapping[int, JsonDict] = field(default_factory=dict)
    batches: tuple[_AddedBatch, ...] = ()

    @property
    def count(self) -> int:
        return self.generated_count - len(self.deleted)

    def generated(self, index: int) -> GeneratedDevice:
        if index < self.initial_count:
            return self.generator.device(index)
        batch = next(b for b in reversed(self.batches) if b.first_index <= index)
        # Devices added together get consecutive milliseconds, keeping creation order.
        return self.generator.device(index, batch.created_ms + (index - batch.first_index))

    def wire(self, device: GeneratedDevice, int64_as_string: bool) -> JsonDict:
        wire = device.to_wire(int64_as_string)
        patch = self.patches.get(device.index)
        if patch is not None:
            wire = _omit_zero_values(_deep_merge(wire, patch))
        return wire

    def index_at(self, position: int) -> int:
        """The index of the live device at `position` (which must be < count)."""
        # Least fixed point of i = position + (#deleted <= i): the position-th live index.
        index = position
        while True:
            candidate = position + bisect.bisect_right(self.deleted, index)
            if candidate == index:
                return index
            index = candidate

    def live_indexes(self, start_position: int = 0) -> Iterator[int]:
        if start_position >= self.count:
            return
        index = self.index_at(start_position)
        next_deleted = bisect.bisect_right(self.deleted, index)
        while index < self.generated_count:
            if next_deleted < len(self.deleted) and self.deleted[next_deleted] == index:
                next_deleted += 1
            else:
                yield index
            index += 1

    def index_of(self, device_id: str) -> int | None:
        index = self.generator.index_from_id(device_id)
        if index is None or not 0 <= index < self.generated_count or index in self.deleted_set:
            return None
        return index if self.generated(index).id == device_id else None


class Inventory:
    """The live inventory. Changes swap in a new `InventoryView` (copy on write), so page
    requests, filtered scans in worker threads and test code never see a half-made change."""

    def __init__(self, generator: DeviceGenerator, initial_count: int) -> None:
        if initial_count < 0:
            raise ValueError(f"device_count must be >= 0, got {initial_count}")
        self._initial = InventoryView(generator, initial_count, initial_count)
        self.view = self._initial
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.view = self._initial

    def add(self, count: int) -> range:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        with self._lock:
            view = self.view
            batch = _AddedBatch(first_index=view.generated_count, created_ms=_now_ms())
            self.view = InventoryView(
                view.generator,
                view.initial_count,
                view.generated_count + count,
                view.deleted,
                view.deleted_set,
                view.patches,
                (*view.batches, batch),
            )
            return range(batch.first_index, batch.first_index + count)

    def patch(self, index: int, changes: Mapping[str, Any]) -> None:
        with self._lock:
            view = self.view
            patches = dict(view.patches)
            patches[index] = _deep_merge(patches.get(index, {}), changes)
            self.view = InventoryView(
                view.generator,
                view.initial_count,
                view.generated_count,
                view.deleted,
                view.deleted_set,
                patches,
                view.batches,
            )

    def delete(self, index: int) -> None:
        with self._lock:
            view = self.view
            deleted = list(view.deleted)
            bisect.insort(deleted, index)
            patches = {k: v for k, v in view.patches.items() if k != index}
            self.view = InventoryView(
                view.generator,
                view.initial_count,
                view.generated_count,
                tuple(deleted),
                view.deleted_set | {index},
                patches,
                view.batches,
            )


# ---------------------------------------------------------------------------------------------
# LightDB State: generated trees plus an overlay of the devices whose state was written
# ---------------------------------------------------------------------------------------------


def parse_state_path(raw: str) -> tuple[str, ...]:
    """`/env/temp/value` -> ("env", "temp", "value"); "" or "/" is the whole tree."""
    return tuple(part for part in raw.split("/") if part)


def _subtree(tree: Any, path: tuple[str, ...]) -> Any:
    node = tree
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


class LightDbState:
    """LightDB State for every device: generated on read, stored only once written."""

    def __init__(self) -> None:
        self._written: dict[int, JsonDict] = {}
        self._lock = threading.Lock()

    @property
    def written_count(self) -> int:
        return len(self._written)

    def read(self, index: int, generate: Callable[[], JsonDict], path: tuple[str, ...]) -> Any:
        with self._lock:
            tree = self._written.get(index)
            if tree is not None:
                return copy.deepcopy(_subtree(tree, path))
        return _subtree(generate(), path)

    def write(
        self, index: int, generate: Callable[[], JsonDict], path: tuple[str, ...], value: Any
    ) -> Any:
        """Deep-merge an object (or set a scalar) at `path`; returns the subtree after."""
        if not path and not isinstance(value, dict):
            raise RpcError(400, "only a JSON object can be written at the root of LightDB State")
        with self._lock:
            tree = self._written.get(index)
            if tree is None:
                tree = generate()
                self._written[index] = tree
            if not path:
                self._written[index] = _deep_merge(tree, value)
                return copy.deepcopy(self._written[index])
            parent = tree
            for part in path[:-1]:
                child = parent.get(part)
                if not isinstance(child, dict):
                    child = {}
                    parent[part] = child
                parent = child
            leaf = path[-1]
            existing = parent.get(leaf)
            if isinstance(value, dict) and isinstance(existing, dict):
                parent[leaf] = _deep_merge(existing, value)
            else:
                parent[leaf] = copy.deepcopy(value)
            return copy.deepcopy(parent[leaf])

    def delete(self, index: int, generate: Callable[[], JsonDict], path: tuple[str, ...]) -> None:
        with self._lock:
            tree = self._written.get(index)
            if tree is None:
                tree = generate()
            if not path:
                self._written[index] = {}
                return
            parent = _subtree(tree, path[:-1])
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
            self._written[index] = tree

    def forget(self, index: int) -> None:
        with self._lock:
            self._written.pop(index, None)

    def clear(self) -> None:
        with self._lock:
            self._written.clear()


# ---------------------------------------------------------------------------------------------
# Request log: what the emulator received, for tests to compare with what the client sent
# ---------------------------------------------------------------------------------------------

# Present in the log (so a test can see the header was sent) but never with its value.
_SECRET_HEADERS = frozenset({b"x-api-key", b"authorization", b"proxy-authorization", b"cookie"})
_REDACTED = "[REDACTED]"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    #: None when the client went away before any response started (e.g. a `timeout` fault)
    status: int | None
    #: the X-Request-ID header the client sent
    request_id: str | None
    #: the raw headers; `headers` gives them sanitized
    raw_headers: tuple[tuple[bytes, bytes], ...]
    #: the fault kinds applied to this request
    faults: tuple[str, ...]
    received_at: float

    @property
    def headers(self) -> dict[str, str]:
        sanitized: dict[str, str] = {}
        for raw_name, raw_value in self.raw_headers:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            if raw_name.lower() in _SECRET_HEADERS:
                scheme, _, credentials = value.partition(" ")
                value = f"{scheme} {_REDACTED}" if credentials else _REDACTED
            sanitized[name] = f"{sanitized[name]}, {value}" if name in sanitized else value
        return sanitized

    def to_json(self) -> JsonDict:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "request_id": self.request_id,
            "headers": self.headers,
            "faults": list(self.faults),
            "received_at": self.received_at,
        }


class RequestLog:
    """The last `max_entries` requests, plus a running total."""

    def __init__(self, max_entries: int) -> None:
        self._entries: deque[RecordedRequest] = deque(maxlen=max_entries)
        self.total = 0

    def append(self, entry: RecordedRequest) -> None:
        self._entries.append(entry)
        self.total += 1

    def entries(self) -> list[RecordedRequest]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()


class RequestRecordingMiddleware:
    """Pure ASGI middleware appending every non-control request to a `RequestLog`.

    Sits outside fault injection so it records what the client actually got.
    """

    def __init__(
        self,
        app: ASGIApp,
        log: RequestLog,
        exempt_path_prefixes: tuple[str, ...] = (CONTROL_PREFIX,),
    ) -> None:
        self.app = app
        self.log = log
        self.exempt_path_prefixes = exempt_path_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt_path_prefixes):
            await self.app(scope, receive, send)
            return
        received_at = time.time()
        status: int | None = None

        async def send_and_note_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        except Exception:
            status = status or 500
            raise
        finally:
            headers = tuple(scope["headers"])
            request_id = next(
                (v.decode("latin-1") for k, v in headers if k.lower() == b"x-request-id"), None
            )
            self.log.append(
                RecordedRequest(
                    method=scope["method"],
                    path=scope["path"],
                    query=scope["query_string"].decode("latin-1"),
                    status=status,
                    request_id=request_id,
                    raw_headers=headers,
                    faults=fault_plan_of(scope).applied_kinds,
                    received_at=received_at,
                )
            )


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

    def read_state(self, device_id: str, path: str = "") -> Any:
        index = self._index_of(device_id)
        return self.state.read(index, self._state_generator(index), parse_state_path(path))

    def write_state(self, device_id: str, path: str, value: Any) -> Any:
        index = self._index_of(device_id)
        return self.state.write(index, self._state_generator(index), parse_state_path(path), value)

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

    async def _control_faults(self, request: Request) -> Response:
        if request.method == "GET":
            return _json_response({"faults": self.faults.active()})
        if request.method == "DELETE":
            self.faults.clear()
            return _json_response({"faults": []})
        body = await _json_body(request)
        specs = body if isinstance(body, list) else [body]
        try:
            added = self.faults.add(specs)
        except ValueError as exc:
            raise RpcError(400, f"invalid fault spec: {exc}") from exc
        return _json_response({"faults": added}, status=201)

    async def _control_requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.request_log.clear()
            return _json_response({"requests": []})
        entries = self.request_log.entries()
        # `?limit=N`: only the most recent N, so a poll of a busy log stays small.
        limit = _int_param(request.query_params, "limit", len(entries))
        recent = entries[-limit:] if limit > 0 else []
        return _json_response({"requests": [r.to_json() for r in recent]})

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
        device = "/projects/{project_id}/devices/{device_id}"
        v1_routes = [
            Route("/projects", self._list_projects, methods=["GET"]),
            Route("/projects/{project_id}", self._get_project, methods=["GET"]),
            Route("/projects/{project_id}/devices", self._list_devices, methods=["GET"]),
            Route(device, self._get_device, methods=["GET"]),
            Route(f"{device}/data", self._device_state, methods=state_methods),
            Route(f"{device}/data/{{state_path:path}}", self._device_state, methods=state_methods),
        ]
        control_routes = [
            Route("/faults", self._control_faults, methods=["GET", "POST", "DELETE"]),
            Route("/requests", self._control_requests, methods=["GET", "DELETE"]),
            Route("/devices", self._control_add_devices, methods=["POST"]),
            Route("/devices/{device_id}", self._control_device, methods=["GET", "PATCH", "DELETE"]),
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
