"""Golioth Management API provider (PROVIDERS.md §1): devices and LightDB State over httpx.

Paging is page-number based (0-based `page`, `perPage` ≤ 100) and counts may arrive as
strings (protojson int64). Pages are fetched a few ahead, concurrently, and yielded in order;
the cursor after a page is the next page number, so a killed scan resumes where it stopped
(with one page of overlap, which the idempotent upsert absorbs, in case deletions shifted it).
A page is decoded in one typed pass (`golioth_wire`); a page that pass cannot take whole goes
the generic way, record by record, so one bad record is rejected and the rest are kept.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from sync_pipelines import json_limits
from sync_pipelines.clock import utc_now
from sync_pipelines.errors import ConflictError, ProviderError
from sync_pipelines.observability.http_recording import IDEMPOTENT_EXTENSION
from sync_pipelines.observability.lean_http import LeanResponse
from sync_pipelines.providers.contract import (
    ConnectionResult,
    DevicePage,
    DeviceRecord,
    DeviceState,
    IntegrationConfig,
    JsonDict,
    PlainJson,
    ProviderClients,
    PushResult,
    RejectedRecord,
    StatePage,
)
from sync_pipelines.providers.golioth_wire import UNSET, WireDevice, decode_page
from sync_pipelines.providers.http_provider import (
    HttpProvider,
    device_segment,
    ms_since,
    request_id_of,
)
from sync_pipelines.providers.pools import submit_in_context
from sync_pipelines.providers.settings import GoliothSettings

MAX_PER_PAGE = 100
_P = TypeVar("_P")
_json_encoder = json.JSONEncoder(sort_keys=True)


def _refuse(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# `json.dumps(value, sort_keys=True)` byte for byte, from the C encoder built once (`encode`
# builds one per call, as costly as the encoding of a small tree): a state version is a
# digest of this text, so it must never change
_c_sorted = (
    json.encoder.c_make_encoder(
        None, _refuse, json.encoder.encode_basestring_ascii, None, ": ", ", ", True, False, True
    )
    if json.encoder.c_make_encoder is not None
    else None
)


def _sorted_json(value: Any) -> str:
    if _c_sorted is None:  # an interpreter without the C accelerator
        return _json_encoder.encode(value)
    return "".join(_c_sorted(value, 0))


#: attribute values left out of `DeviceRecord.attributes`, as protojson leaves them off the wire
_EMPTY_ATTRIBUTE = (None, "", [], {})


class GoliothProvider(HttpProvider):
    name = "golioth"
    settings_model = GoliothSettings
    service = "the Golioth API"
    required_settings = ("base_url", "project_id")
    required_secrets = ("api_key",)
    supports_desired = True

    def __init__(self, config: IntegrationConfig, clients: ProviderClients) -> None:
        self.config = config
        settings = GoliothSettings.of(config)
        self.project_id = settings.project_id
        self.per_page = min(settings.page_size or settings.per_page or MAX_PER_PAGE, MAX_PER_PAGE)
        self.page_concurrency = settings.page_concurrency
        self.state_concurrency = settings.state_concurrency
        #: "list" (the default): states ride on the device list (`statePath=/`), 100 per call,
        #: and a full sync reads that list once for devices and states; "device": one LightDB
        #: read per device (the fallback for whatever the list leaves out, either way)
        self.state_source = settings.state_source
        base_url = settings.base_url.rstrip("/")
        headers = {"x-api-key": config.secrets["api_key"]}
        self.http = clients.http(base_url, headers)
        self.lean = clients.lean_http(base_url, headers)  # the per-device LightDB reads
        self._prefix = f"/v1/projects/{self.project_id}"

    # -- contract -------------------------------------------------------------------------

    def test_connection(self) -> ConnectionResult:
        started = time.perf_counter()
        try:
            body = self._decode(self._send("GET", self._prefix))
        except ProviderError as exc:
            return self._failed_connection(started, exc)
        project = body.get("data") if isinstance(body, dict) else None
        if not isinstance(project, dict):
            return ConnectionResult(
                False, ms_since(started), "project response had no `data` object"
            )
        return ConnectionResult(
            True,
            ms_since(started),
            None,
            {"project_id": project.get("id"), "project_name": project.get("name")},
        )

    def list_devices(self, since: JsonDict | None = None) -> Iterator[DevicePage]:
        yield from self._device_pages(since, with_states=False)

    @property
    def lists_devices_with_states(self) -> bool:
        return self.state_source == "list"

    def list_devices_with_states(self, since: JsonDict | None = None) -> Iterator[DevicePage]:
        """The device list with `statePath=/`: each device's LightDB State comes in its `data`,
        which becomes the page's states (and stays out of the device's attributes, so a device
        row is the same whichever way it was listed)."""
        yield from self._device_pages(since, with_states=True)

    def _device_pages(self, since: JsonDict | None, *, with_states: bool) -> Iterator[DevicePage]:
        start = 0
        if since and isinstance(since.get("next_page"), int):
            start = max(0, since["next_page"] - 1)  # one page of overlap: see module docstring
        yield from self._stream_pages(
            lambda page: self._fetch_page(page, with_states=with_states),
            start,
            last=lambda p: p.cursor_after is None,
            total=lambda p: p.total,
        )

    def list_states(self) -> Iterator[StatePage]:
        """Every device's LightDB State from the device list (`statePath=/`), 100 devices per
        call instead of one call per device. A device listed without `data` is left out of its
        page's states, for the engine to read one by one."""
        for listed in self._stream_pages(
            self._fetch_state_page, 0, last=lambda p: p.last, total=lambda p: p.total
        ):
            yield listed.page

    def _stream_pages(
        self,
        fetch: Callable[[int], _P],
        start: int,
        *,
        last: Callable[[_P], bool],
        total: Callable[[_P], int | None],
    ) -> Iterator[_P]:
        """Pages `start`, `start + 1`, … in order, a few fetched ahead concurrently."""
        first = fetch(start)
        yield first
        if last(first):
            return
        last_page = _last_page(total(first), self.per_page)
        with ThreadPoolExecutor(self.page_concurrency, thread_name_prefix="golioth-page") as pool:
            pending: dict[int, Future[_P]] = {}
            next_to_submit = start + 1
            page_no = start + 1
            while True:
                while next_to_submit <= last_page and len(pending) < self.page_concurrency:
                    pending[next_to_submit] = submit_in_context(pool, fetch, next_to_submit)
                    next_to_submit += 1
                if page_no not in pending:
                    # the inventory grew past the first page's total: carry on one by one
                    pending[page_no] = submit_in_context(pool, fetch, page_no)
                    next_to_submit = max(next_to_submit, page_no + 1)
                page = pending.pop(page_no).result()
                yield page
                if last(page):
                    for f in pending.values():
                        f.cancel()
                    return
                last_page = max(last_page, _last_page(total(page), self.per_page))
                page_no += 1

    def push_desired(
        self, external_id: str, patch: JsonDict, *, expected_version: str | None
    ) -> PushResult:
        """Deep-merge `patch` into LightDB `desired`.

        LightDB State has no version or conditional write, so the check is ours: read the tree,
        compare its digest with `expected_version`, then write. A writer that lands between our
        read and our write is not detected; that window is one round trip.
        """
        if expected_version is not None:
            current = self._fetch_state(external_id)
            if isinstance(current, ProviderError):
                raise current
            if current.version != expected_version:
                raise ConflictError(
                    f"device {external_id}: LightDB state changed since version {expected_version} "
                    f"(now {current.version})",
                    provider=self.name,
                    endpoint=f"devices/{external_id}/data",
                    request_id=current.request_id,
                    integration_id=self.config.integration_id,
                )
        # a deep merge of the same patch lands the same tree twice: safe for the transport to repeat
        response = self._send(
            "POST",
            f"{self._device_path(external_id)}/data/desired",
            device_id=external_id,
            json=patch,
            extensions={IDEMPOTENT_EXTENSION: True},
        )
        after = self._fetch_state(external_id)
        if isinstance(after, ProviderError):
            raise after
        return PushResult(
            external_id,
            after.version,
            after.desired,
            request_id=request_id_of(response),
        )

    def parse_device(self, payload: Any) -> DeviceRecord:
        return _to_device(payload)

    # -- wire -----------------------------------------------------------------------------

    def _fetch_page(self, page: int, *, with_states: bool = False) -> DevicePage:
        params: dict[str, Any] = {"page": page, "perPage": self.per_page}
        if with_states:
            params["statePath"] = "/"
        response = self._get(f"{self._prefix}/devices", params=params)
        request_id = request_id_of(response)
        typed = _typed_page_with_states(response.content, with_states=with_states)
        rejected: list[RejectedRecord] = []
        if typed is not None:
            devices, trees, total, item_count, document_type = typed
        else:  # something on the page needs the per-record path (or the body is broken)
            devices, trees, rejected, total, item_count = self._generic_page_with_states(
                response, with_states
            )
            document_type = dict
        seen = page * self.per_page + item_count
        done = not item_count or seen >= total
        return DevicePage(
            devices=devices,
            rejected=rejected,
            cursor_after=None if done else {"next_page": page + 1, "per_page": self.per_page},
            page_number=page,
            total=total,
            request_id=request_id,
            states=[
                _state_of(external_id, tree, request_id, document_type)
                for external_id, tree in trees
            ],
        )

    def _generic_page(
        self, response: httpx.Response | LeanResponse
    ) -> tuple[list[DeviceRecord], list[RejectedRecord], int, int]:
        """Decode a page record by record: a bad record is rejected with the reason, the rest
        are kept. Returns devices, rejected records, `total` and how many records it held."""
        devices, _, rejected, total, count = self._generic_page_with_states(response, False)
        return devices, rejected, total, count

    def _generic_page_with_states(
        self, response: httpx.Response | LeanResponse, with_states: bool
    ) -> tuple[list[DeviceRecord], list[tuple[str, Any]], list[RejectedRecord], int, int]:
        """`_generic_page`, plus each device's (id, LightDB tree) when `with_states` and the
        device carried `data`."""
        items, total = self._list_envelope(response)
        devices, trees, rejected = [], [], []
        for raw in items:
            try:
                if with_states and isinstance(raw, dict) and "data" in raw:
                    device = _to_device({k: v for k, v in raw.items() if k != "data"})
                    trees.append((device.external_id, raw["data"]))
                else:
                    device = _to_device(raw)
                devices.append(device)
            except (ValueError, TypeError, KeyError) as exc:
                rejected.append(
                    RejectedRecord(
                        external_id=raw.get("id")
                        if isinstance(raw, dict) and isinstance(raw.get("id"), str)
                        else None,
                        payload=raw,
                        error_type="validation",
                        error_message=f"{type(exc).__name__}: {exc}",
                    )
                )
        return devices, trees, rejected, total, len(items)

    def _list_envelope(self, response: httpx.Response | LeanResponse) -> tuple[list[Any], int]:
        """A device list page's `list` and `total`, decoded the generic way."""
        body = self._decode(response)
        items = body.get("list") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise self._malformed(response, "device list page has no `list` array")
        try:
            total = _as_int(body.get("total", 0))
        except ValueError as exc:
            raise self._malformed(response, f"device list page has a bad `total`: {exc}") from exc
        return items, total

    def _fetch_state_page(self, page: int) -> _ListedStates:
        response = self._get(
            f"{self._prefix}/devices",
            params={"page": page, "perPage": self.per_page, "statePath": "/"},
        )
        items, total = self._list_envelope(response)
        request_id = request_id_of(response)
        states = [
            _state_of(item["id"], item["data"], request_id)
            for item in items
            if isinstance(item, dict) and isinstance(item.get("id"), str) and "data" in item
        ]
        seen = page * self.per_page + len(items)
        return _ListedStates(
            StatePage(states, len(items), page_number=page, request_id=request_id),
            total,
            not items or seen >= total,
        )

    def _fetch_state(self, external_id: str) -> DeviceState | ProviderError:
        try:
            response = self._get(f"{self._device_path(external_id)}/data", device_id=external_id)
            body = self._decode(response, external_id)
        except ProviderError as exc:
            return exc
        if not isinstance(body, dict) or "data" not in body:
            return self._malformed(response, "state response has no `data` member")
        return _state_of(external_id, body["data"], request_id_of(response))

    def _device_path(self, external_id: str) -> str:
        return f"{self._prefix}/devices/{device_segment(external_id)}"

    def _error_detail(self, response: httpx.Response, device_id: str | None) -> str:
        """The RPC status body's `message` (with its gRPC code), else the body's text."""
        message = response.text[:300]
        try:
            body = json_limits.decode(response.content)
            if isinstance(body, dict) and body.get("message"):
                message = f"{body['message']} (rpc code {body.get('code')})"
        except ValueError:
            pass
        return f"{self._subject(device_id)}: {message}"


def _to_device(raw: Any) -> DeviceRecord:
    """Wire device → record. Every field is optional on the wire (protojson omits zero values)
    except `id` and `name`; anything present must have its documented type."""
    if not isinstance(raw, dict):
        raise TypeError(f"device is a {type(raw).__name__}, not an object")
    external_id = raw.get("id")
    if not isinstance(external_id, str) or not external_id:
        raise ValueError("device has no `id`")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"device {external_id} has no `name`")
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise TypeError(f"device {external_id}: `metadata` is not an object")
    attributes = {
        key: raw[key]
        for key in ("blueprintId", "cohortId", "certificateId", "data")
        if raw.get(key) not in _EMPTY_ATTRIBUTE
    }
    if metadata:
        attributes["metadata"] = metadata
    return DeviceRecord(
        external_id=external_id,
        name=name,
        hardware_ids=_str_list(raw, "hardwareIds", external_id),
        tags=_str_list(raw, "tagIds", external_id),
        status=_status(metadata.get("status") or raw.get("status")),
        enabled=bool(raw.get("enabled", False)),
        last_seen_at=_time(
            raw.get("lastReport") or metadata.get("lastReport"), "lastReport", external_id
        ),
        provider_created_at=_time(raw.get("createdAt"), "createdAt", external_id),
        provider_updated_at=_time(raw.get("updatedAt"), "updatedAt", external_id),
        attributes=attributes,
    )


def _str_list(raw: dict[str, Any], key: str, external_id: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(
            f"device {external_id}: `{key}` must be a list of strings, got {value!r:.80}"
        )
    return tuple(value)


def _typed_page(content: bytes) -> tuple[list[DeviceRecord], int, int] | None:
    """Devices, `total` and record count of a page the typed decoder takes whole, or None
    when anything on it needs the generic path (which also words the errors)."""
    typed = _typed_page_with_states(content, with_states=False)
    return None if typed is None else (typed[0], typed[2], typed[3])


def _typed_page_with_states(
    content: bytes, *, with_states: bool = True
) -> tuple[list[DeviceRecord], list[tuple[str, Any]], int, int, type[JsonDict]] | None:
    """`_typed_page`, plus each device's (id, LightDB tree) when `with_states` and the device
    was listed with `data` (which then is its state, not one of its attributes), and the type
    its documents take (`PlainJson` when no float on the page is written otherwise by msgspec)."""
    decoded = decode_page(content)
    if decoded is None:
        return None
    page, odd_floats = decoded
    # only plain floats: the page's documents are all the hash's fast encoder needs (records.py)
    attributes_type = dict if odd_floats else PlainJson
    try:
        devices = [
            _typed_device(d, attributes_type, with_data=not with_states) for d in page.devices
        ]
        total = _as_int(page.total)
    except (ValueError, TypeError):
        return None
    trees = [(d.id, d.data) for d in page.devices if d.data is not UNSET] if with_states else []
    return devices, trees, total, len(page.devices), attributes_type


def _typed_device(
    wire: WireDevice, attributes_type: type[JsonDict] = dict, *, with_data: bool = True
) -> DeviceRecord:
    """`_to_device` for a device msgspec has type-checked: the same record, field for field
    (without `data` when that is the device's state, not one of its attributes). Raises
    ValueError / TypeError wherever `_to_device` would reject the device."""
    external_id, name = wire.id, wire.name
    if not external_id or not name:
        raise ValueError("device has an empty `id` or `name`")
    metadata = wire.metadata or {}
    # the same keys, in the same order, as `_to_device`; for `str | None`, truthy == not empty
    attributes: JsonDict = attributes_type()
    if wire.blueprint_id:
        attributes["blueprintId"] = wire.blueprint_id
    if wire.cohort_id:
        attributes["cohortId"] = wire.cohort_id
    if wire.certificate_id:
        attributes["certificateId"] = wire.certificate_id
    if with_data and wire.data is not UNSET and wire.data not in _EMPTY_ATTRIBUTE:
        attributes["data"] = wire.data
    if metadata:
        attributes["metadata"] = metadata
    return DeviceRecord(
        external_id=external_id,
        name=name,
        hardware_ids=wire.hardware_ids,
        tags=wire.tag_ids,
        status=_status(metadata.get("status") or wire.status),
        enabled=bool(wire.enabled),
        last_seen_at=_time(
            wire.last_report or metadata.get("lastReport"), "lastReport", external_id
        ),
        provider_created_at=_time(wire.created_at, "createdAt", external_id),
        provider_updated_at=_time(wire.updated_at, "updatedAt", external_id),
        attributes=attributes,
    )


def _status(status: Any) -> str | None:
    return None if status in (None, "", "-") else str(status)


def _time(value: Any, field: str, external_id: str) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise TypeError(f"device {external_id}: `{field}` is not an RFC3339 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(
            f"device {external_id}: `{field}` {value!r:.40} is not an RFC3339 time"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _as_int(value: Any) -> int:
    """protojson sends int64 as strings: accept 6 and "6"."""
    if isinstance(value, bool) or not isinstance(value, int | str):  # null, 1.5, [], {}
        raise ValueError(f"{value!r} is not an integer")
    return int(value)


def _state_of(
    external_id: str, tree: Any, request_id: str | None, document_type: type[JsonDict] = dict
) -> DeviceState:
    """A device's LightDB State tree as a DeviceState (the same from a per-device read and from
    the device list, so a state read either way hashes the same); its documents as
    `document_type` (`PlainJson` when the decoder saw only plain floats)."""
    reported: Any
    desired: Any
    if isinstance(tree, dict) and ("reported" in tree or "desired" in tree):
        reported, desired = tree.get("reported"), tree.get("desired")
    else:  # LightDB is a free-form tree: without the convention it is all "reported"
        reported, desired = tree, None
    return DeviceState(
        external_id=external_id,
        reported=_state_document(reported, document_type),
        desired=_state_document(desired, document_type),
        # LightDB has no version or etag; a digest of the tree stands in for one.
        version=hashlib.sha1(_sorted_json(tree).encode()).hexdigest()[:16],
        observed_at=utc_now(),
        request_id=request_id,
    )


def _state_document(value: Any, document_type: type[JsonDict]) -> JsonDict | None:
    """A reported or desired document: an object as it came (as `document_type`), a scalar or
    list wrapped as `{"value": …}`."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value if document_type is dict else document_type(value)
    return {"value": value}


@dataclass(frozen=True, slots=True)
class _ListedStates:
    page: StatePage
    total: int
    last: bool


def _last_page(total: int | None, per_page: int) -> int:
    return max(0, math.ceil((total or 0) / per_page) - 1)
