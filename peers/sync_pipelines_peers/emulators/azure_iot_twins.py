"""The Azure emulator's device twins: generated lazily and deterministically from
(seed, index), plus an overlay of the twins that changed (PROVIDERS.md §3.3).

A hub of a million devices costs memory only for the twins written to. Twins have the exact
wire shape: `0001-01-01T00:00:00Z` for "never", nulls kept, `$metadata`/`$version` in both
property documents (`$lastUpdatedVersion` on desired only), and an `etag` that is the
base64 of the twin's int64 `version`, so every change makes a new etag.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

JsonDict = dict[str, Any]

NEVER = "0001-01-01T00:00:00Z"

_TICKS_PER_S = 10_000_000  # .NET ticks: the hub prints 7 fractional digits
_DAY_TICKS = 86_400 * _TICKS_PER_S
# Initial devices were registered 20 s apart from 2025-01-01T00:00:00Z (creation = index order).
_FIRST_TICKS = 1_735_689_600 * _TICKS_PER_S
_STEP_TICKS = 20 * _TICKS_PER_S
_KINDS = ("thermostat", "meter", "gateway", "tracker", "sensor")
_REGIONS = ("eu-west", "us-east", "ap-south")
_PLANTS = ("Redmond43", "Dublin7", "Pune2", "Austin11")


def _digest(seed: int, label: str, index: int) -> bytes:
    return hashlib.blake2b(f"{seed}:{label}:{index}".encode(), digest_size=64).digest()


def hub_time(epoch_ticks: int) -> str:
    """`2025-01-01T00:00:20.1234567Z`: UTC with .NET's seven fractional digits."""
    seconds, fraction = divmod(epoch_ticks, _TICKS_PER_S)
    t = time.gmtime(seconds)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:"
        f"{t.tm_sec:02d}.{fraction:07d}Z"
    )


def ticks_of(epoch_s: float) -> int:
    return int(epoch_s * _TICKS_PER_S)


def etag_of(version: int) -> str:
    """Twin etags are the base64 of the int64 version: version 7 -> `AAAAAAAAAAc=`."""
    return base64.b64encode(version.to_bytes(8, "big")).decode()


def _metadata(document: Mapping[str, Any], stamp: str, version: int | None) -> JsonDict:
    """`$metadata` mirroring a property document, every node stamped `stamp` (and `version`)."""
    meta: JsonDict = {"$lastUpdated": stamp}
    if version is not None:
        meta["$lastUpdatedVersion"] = version
    for key, value in document.items():
        if isinstance(value, Mapping):
            meta[key] = _metadata(value, stamp, version)
        else:
            meta[key] = {
                "$lastUpdated": stamp,
                **({"$lastUpdatedVersion": version} if version is not None else {}),
            }
    return meta


def _properties(document: JsonDict, stamp: str, version: int, with_versions: bool) -> JsonDict:
    return {
        **document,
        "$metadata": _metadata(document, stamp, version if with_versions else None),
        "$version": version,
    }


class TwinGenerator:
    """Makes twin `index` of a hub from `seed`, the same way every time.

    Ids are `<kind>-<index>` (e.g. `meter-000042`), so an id leads straight back to its index.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def device_id(self, index: int) -> str:
        return f"{_KINDS[_digest(self.seed, 'twin', index)[0] % len(_KINDS)]}-{index:06d}"

    @staticmethod
    def index_from_id(device_id: str) -> int | None:
        """The index an id was made for (to be checked against the regenerated id)."""
        _, _, digits = device_id.rpartition("-")
        return int(digits) if digits.isdigit() and len(digits) >= 6 else None

    def twin(self, index: int, added_ticks: int | None = None) -> JsonDict:
        """Twin `index`; `added_ticks` is set for devices a test added while the emulator ran:
        registered then, enabled, never connected, nothing desired or reported."""
        d = _digest(self.seed, "twin", index)
        kind = _KINDS[d[0] % len(_KINDS)]
        device_id = f"{kind}-{index:06d}"
        fresh = added_ticks is not None
        created = (
            added_ticks
            if added_ticks is not None
            else _FIRST_TICKS + index * _STEP_TICKS + d[30] * 3_777_777
        )
        never_connected = fresh or d[1] < 40
        enabled = fresh or d[3] >= 20
        last_activity = (
            None if never_connected else created + int.from_bytes(d[4:8], "big") % (60 * _DAY_TICKS)
        )
        status_changed = (
            None
            if fresh or (enabled and d[8] >= 40)
            else created + int.from_bytes(d[9:12], "big") % (30 * _DAY_TICKS)
        )
        auth_type = (
            "sas" if d[23] < 200 else ("selfSigned" if d[23] < 235 else "certificateAuthority")
        )
        self_signed = auth_type == "selfSigned"
        edge = kind == "gateway"

        interval = (60, 300, 900)[d[9] % 3]
        desired: JsonDict = (
            {}
            if fresh
            else {"telemetryConfig": {"sendFrequencyInSecs": interval}, "ledOn": bool(d[10] & 1)}
        )
        desired_version = 1 if fresh else 2 + d[11] % 4
        desired_stamp = hub_time(
            created + (0 if fresh else int.from_bytes(d[12:15], "big") % _DAY_TICKS)
        )
        reported: JsonDict = {}
        reported_version = 1
        reported_stamp = hub_time(created)
        if last_activity is not None:
            # Some devices lag behind their desired interval, so a sync has differences to find.
            lagging = d[13] >= 200
            reported = {
                "telemetryConfig": {"sendFrequencyInSecs": (60, 300, 900)[(d[9] + lagging) % 3]},
                "firmware": {"version": f"1.{d[14] % 5}.{d[15] % 10}"},
                "battery": {"level": d[16] % 101},
                "connectivity": {"type": "cellular" if d[17] < 100 else "wifi"},
                "temperature": round(15 + d[18] * 15 / 255, 1),
            }
            reported_version = 2 + int.from_bytes(d[19:21], "big") % 50
            reported_stamp = hub_time(last_activity)
        tags: JsonDict | None = None
        if not fresh and d[26] >= 80:
            tags = {
                "location": {"region": _REGIONS[d[27] % 3], "plant": _PLANTS[d[28] % 4]},
                "environment": "prod" if d[29] < 200 else "staging",
            }
        version = desired_version + reported_version + (1 if tags else 0)

        twin: JsonDict = {
            "deviceId": device_id,
            "moduleId": None,
            "etag": etag_of(version),
            "deviceEtag": base64.b64encode(str(int.from_bytes(d[20:24], "big")).encode()).decode(),
            "version": version,
            "status": "enabled" if enabled else "disabled",
            "statusReason": None if enabled or d[31] & 1 else "decommissioned",
            "statusUpdateTime": NEVER if status_changed is None else hub_time(status_changed),
            "connectionState": "Connected"
            if not never_connected and d[2] >= 150
            else "Disconnected",
            "lastActivityTime": NEVER if last_activity is None else hub_time(last_activity),
            "cloudToDeviceMessageCount": 0 if never_connected else d[25] % 3,
            "authenticationType": auth_type,
            "x509Thumbprint": {
                "primaryThumbprint": d[24:44].hex().upper() if self_signed else None,
                "secondaryThumbprint": d[44:64].hex().upper() if self_signed else None,
            },
            "modelId": "" if d[21] < 128 else f"dtmi:com:example:{kind.title()};{1 + d[22] % 2}",
            "capabilities": {"iotEdge": edge},
            "deviceScope": f"ms-azure-iot-edge://{device_id}-{int.from_bytes(d[32:40], 'big')}"
            if edge
            else None,
            "parentScopes": [],
        }
        if tags is not None:
            twin["tags"] = tags
        twin["properties"] = {
            "desired": _properties(desired, desired_stamp, desired_version, with_versions=True),
            "reported": _properties(
                reported, reported_stamp, reported_version, with_versions=False
            ),
        }
        return twin

    def device_identity(self, index: int, twin: JsonDict) -> JsonDict:
        """`GET /devices/{id}`: the registry's view, with its own field names
        (`statusUpdatedTime`, not the twin's `statusUpdateTime`)."""
        d = _digest(self.seed, "identity", index)
        sas = twin["authenticationType"] == "sas"
        return {
            "deviceId": twin["deviceId"],
            "generationId": f"63{int.from_bytes(d[0:8], 'big') % 10**16:016d}",
            "etag": twin["deviceEtag"],
            "connectionState": twin["connectionState"],
            "status": twin["status"],
            "statusReason": twin["statusReason"],
            "connectionStateUpdatedTime": twin["lastActivityTime"],
            "statusUpdatedTime": twin["statusUpdateTime"],
            "lastActivityTime": twin["lastActivityTime"],
            "cloudToDeviceMessageCount": twin["cloudToDeviceMessageCount"],
            "authentication": {
                "symmetricKey": {
                    "primaryKey": base64.b64encode(d[8:40]).decode() if sas else None,
                    "secondaryKey": base64.b64encode(d[32:64]).decode() if sas else None,
                },
                "x509Thumbprint": dict(twin["x509Thumbprint"]),
                "type": twin["authenticationType"],
            },
            "capabilities": dict(twin["capabilities"]),
            "deviceScope": twin["deviceScope"],
            "parentScopes": list(twin["parentScopes"]),
        }


# ---------------------------------------------------------------------------------------------
# Changing twins
# ---------------------------------------------------------------------------------------------


class PreconditionMismatch(Exception):
    """If-Match named an etag the twin no longer has."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"etag {expected!r} does not match the twin's current etag {actual!r}")
        self.expected = expected
        self.actual = actual


def _check_patch(patch: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(patch, Mapping):
        raise ValueError(f"{what} must be a JSON object")
    for key, value in patch.items():
        if not isinstance(key, str) or not key or key.startswith("$") or "." in key or " " in key:
            raise ValueError(f"{what}: property name {key!r} is not allowed (no '$', '.', spaces)")
        if isinstance(value, Mapping):
            _check_patch(value, what)
    return patch


def _merge_with_metadata(
    document: JsonDict, meta: JsonDict, patch: Mapping[str, Any], stamp: str, version: int | None
) -> None:
    """Deep-merge `patch` into a property document: objects merge, null deletes, anything else
    replaces; the metadata of every node touched is restamped."""
    stamped = {
        "$lastUpdated": stamp,
        **({"$lastUpdatedVersion": version} if version is not None else {}),
    }
    for key, value in patch.items():
        if value is None:
            document.pop(key, None)
            meta.pop(key, None)
        elif isinstance(value, Mapping):
            child = document.get(key)
            if not isinstance(child, dict):
                child = {}
                document[key] = child
                meta[key] = {}
            child_meta = meta.get(key)
            if not isinstance(child_meta, dict):
                child_meta = meta[key] = {}
            _merge_with_metadata(child, child_meta, value, stamp, version)
        else:
            document[key] = copy.deepcopy(value)
            meta[key] = dict(stamped)
    meta.update(stamped)


def _merge_tags(tags: JsonDict, patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            tags.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(tags.get(key), dict):
            _merge_tags(tags[key], value)
        else:
            tags[key] = _without_nulls(value)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return copy.deepcopy(value)


def _update_properties(
    twin: JsonDict, side: str, patch: Mapping[str, Any], stamp: str, replace: bool
) -> None:
    current = twin["properties"][side]
    version = current["$version"] + 1
    with_versions = side == "desired"
    if replace:
        document = _without_nulls(patch)
        twin["properties"][side] = _properties(document, stamp, version, with_versions)
        return
    meta = current.pop("$metadata")
    current.pop("$version")
    _merge_with_metadata(current, meta, patch, stamp, version if with_versions else None)
    current["$metadata"] = meta
    current["$version"] = version


@dataclass(frozen=True, slots=True)
class TwinChange:
    """One change to a twin. `None` leaves that part alone."""

    tags: Mapping[str, Any] | None = None
    desired: Mapping[str, Any] | None = None
    reported: Mapping[str, Any] | None = None
    #: registry fields: status, statusReason, connectionState
    device: Mapping[str, Any] | None = None
    #: PUT semantics: tags and desired replace rather than merge
    replace: bool = False


_DEVICE_FIELDS = {
    "status": ("enabled", "disabled"),
    "connectionState": ("Connected", "Disconnected"),
}


def _apply_device_fields(twin: JsonDict, fields: Mapping[str, Any], stamp: str) -> None:
    unknown = sorted(set(fields) - {"status", "statusReason", "connectionState"})
    if unknown:
        raise ValueError(
            f"device fields {unknown} cannot be changed (status, statusReason, connectionState can)"
        )
    for name, allowed in _DEVICE_FIELDS.items():
        if name in fields and fields[name] not in allowed:
            raise ValueError(f"{name} must be one of {list(allowed)}, got {fields[name]!r}")
    if "status" in fields and fields["status"] != twin["status"]:
        twin["status"] = fields["status"]
        twin["statusUpdateTime"] = stamp
    if "statusReason" in fields:
        twin["statusReason"] = fields["statusReason"]
    if "connectionState" in fields:
        twin["connectionState"] = fields["connectionState"]
        if fields["connectionState"] == "Connected":
            twin["lastActivityTime"] = stamp
    twin["deviceEtag"] = base64.b64encode(str(time.time_ns() % 10**12).encode()).decode()


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------


class TwinStore:
    """Every twin of the hub: generated on read, kept once changed. Thread-safe."""

    def __init__(
        self, generator: TwinGenerator, initial_count: int, clock: Callable[[], float] = time.time
    ) -> None:
        if initial_count < 0:
            raise ValueError(f"device_count must be >= 0, got {initial_count}")
        self.generator = generator
        self._clock = clock
        self._lock = threading.Lock()
        self._reset(initial_count)

    def _reset(self, initial_count: int) -> None:
        self._initial_count = initial_count
        self._generated_count = initial_count
        #: (first index, registration ticks) of each batch a test added
        self._batches: list[tuple[int, int]] = []
        self._deleted: set[int] = set()
        self._written: dict[int, JsonDict] = {}

    def reset(self, initial_count: int | None = None) -> None:
        """Back to the generated hub (optionally of a different size)."""
        with self._lock:
            self._reset(self._initial_count if initial_count is None else initial_count)

    @property
    def count(self) -> int:
        return self._generated_count - len(self._deleted)

    @property
    def generated_count(self) -> int:
        return self._generated_count

    @property
    def written_count(self) -> int:
        return len(self._written)

    def index_of(self, device_id: str) -> int | None:
        index = self.generator.index_from_id(device_id)
        if index is None or not 0 <= index < self._generated_count or index in self._deleted:
            return None
        return index if self.generator.device_id(index) == device_id else None

    def live_indexes(self, start_index: int = 0) -> Iterator[int]:
        """Live twin indexes from `start_index` on, in registration order."""
        for index in range(max(0, start_index), self._generated_count):
            if index not in self._deleted:
                yield index

    def twin(self, index: int) -> JsonDict:
        """Twin `index` as a fresh dict the caller may change."""
        with self._lock:
            written = self._written.get(index)
            if written is not None:
                return copy.deepcopy(written)
        return self._generate(index)

    def _generate(self, index: int) -> JsonDict:
        if index < self._initial_count:
            return self.generator.twin(index)
        first, ticks = next(b for b in reversed(self._batches) if b[0] <= index)
        # Devices added together get consecutive milliseconds, keeping registration order.
        return self.generator.twin(index, ticks + (index - first) * 10_000)

    def add(self, count: int) -> range:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        with self._lock:
            first = self._generated_count
            self._batches.append((first, ticks_of(self._clock())))
            self._generated_count += count
            return range(first, first + count)

    def restore(self, device_id: str) -> None:
        """A deleted device is registered again with the same id (as generated)."""
        index = self.generator.index_from_id(device_id)
        with self._lock:
            if (
                index is None
                or not 0 <= index < self._generated_count
                or self.generator.device_id(index) != device_id
            ):
                raise KeyError(device_id)
            self._deleted.discard(index)

    def delete(self, index: int) -> None:
        with self._lock:
            self._deleted.add(index)
            self._written.pop(index, None)

    def update(self, index: int, change: TwinChange, if_match: str | None = None) -> JsonDict:
        """Apply `change` if the twin's etag is still `if_match` (None or `*`: always).
        Raises PreconditionMismatch or ValueError (an invalid change, nothing applied)."""
        for part, name in (
            (change.tags, "tags"),
            (change.desired, "desired properties"),
            (change.reported, "reported properties"),
        ):
            if part is not None:
                _check_patch(part, name)
        with self._lock:
            twin = self._written.get(index)
            twin = copy.deepcopy(twin) if twin is not None else self._generate(index)
            if if_match not in (None, "*") and if_match != twin["etag"]:
                raise PreconditionMismatch(if_match, twin["etag"])
            stamp = hub_time(ticks_of(self._clock()))
            if change.device is not None:
                _apply_device_fields(twin, change.device, stamp)
            if change.tags is not None:
                if change.replace:
                    twin["tags"] = _without_nulls(change.tags)
                else:
                    tags = twin.get("tags") if isinstance(twin.get("tags"), dict) else {}
                    _merge_tags(tags, change.tags)
                    twin["tags"] = tags
            if change.desired is not None:
                _update_properties(twin, "desired", change.desired, stamp, change.replace)
            if change.reported is not None:
                _update_properties(twin, "reported", change.reported, stamp, replace=False)
            twin["version"] += 1
            twin["etag"] = etag_of(twin["version"])
            self._written[index] = twin
            return copy.deepcopy(twin)
