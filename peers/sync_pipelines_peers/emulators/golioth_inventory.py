"""The Golioth emulator's device inventory: devices generated lazily and deterministically from
(seed, index), plus what tests added, patched and deleted."""

from __future__ import annotations

import bisect
import functools
import hashlib
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sync_pipelines_peers.emulators.lightdb_state import _deep_merge

JsonDict = dict[str, Any]


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

    def restore(self, index: int) -> None:
        """A deleted device exists again (as generated: its patches went with the deletion)."""
        with self._lock:
            view = self.view
            if index not in view.deleted_set:
                return
            self.view = InventoryView(
                view.generator,
                view.initial_count,
                view.generated_count,
                tuple(d for d in view.deleted if d != index),
                view.deleted_set - {index},
                view.patches,
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
