"""The ledger: the peer's truth against the store's rows, as four sets that must all be empty
after a final clean sync — MISSING (peer − store), EXTRA (active store rows the peer does not
have), STALE (a store row whose record or state version is not the peer's) and DOUBLED (more
than one row for one key) — rendered in full, with the seed, so a failure reproduces."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Versions:
    """What a device is at one side: the peer's record revision (what `change_devices` bumps) and
    its desired-state revision (what the ledger's state changes bump)."""

    record: int
    state: int


@dataclass(frozen=True, slots=True)
class PeerTruth:
    devices: Mapping[str, Versions]
    #: (external_id, message key) of every reading the peer sent: MQTT's `seq:N`, a webhook's
    #: `webhook:<event id>`
    telemetry: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True, slots=True)
class StoreRows:
    #: external_id of every devices row, once per row (a key appearing twice is DOUBLED)
    device_keys: tuple[str, ...]
    #: active (not soft-deleted) devices, with the versions read from their rows
    active: Mapping[str, Versions]
    #: external_id of every device_states row, once per row
    state_keys: tuple[str, ...] = ()
    #: (external_id, message key) of every telemetry row, once per row
    telemetry_keys: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Stale:
    external_id: str
    peer: Versions
    store: Versions


@dataclass
class Ledger:
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    stale: list[Stale] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return not (self.missing or self.extra or self.stale or self.doubled)

    def render(self, header: str) -> str:
        """Every set in full (no truncation: the whole point is to see what went wrong)."""
        lines = [header]
        for name, entries in (
            ("MISSING (peer - store)", self.missing),
            ("EXTRA (active store rows the peer does not have)", self.extra),
            ("STALE (store version != peer version)", [_stale_line(s) for s in self.stale]),
            ("DOUBLED (more than one row per key)", self.doubled),
        ):
            lines.append(f"{name}: {len(entries)}")
            lines.extend(f"  {entry}" for entry in entries)
        return "\n".join(lines)


def _stale_line(stale: Stale) -> str:
    return (
        f"{stale.external_id}: peer record={stale.peer.record} state={stale.peer.state}; "
        f"store record={stale.store.record} state={stale.store.state}"
    )


def _doubled(kind: str, keys: Iterable[object]) -> list[str]:
    return [f"{kind} {key!r} x{n}" for key, n in sorted(Counter(keys).items(), key=str) if n > 1]


def compare(truth: PeerTruth, rows: StoreRows) -> Ledger:
    peer_ids, store_ids = set(truth.devices), set(rows.active)
    stored_telemetry = set(rows.telemetry_keys)
    return Ledger(
        missing=sorted(peer_ids - store_ids)
        + [f"telemetry {e} {k}" for e, k in sorted(truth.telemetry - stored_telemetry)],
        extra=sorted(store_ids - peer_ids)
        + [f"telemetry {e} {k}" for e, k in sorted(stored_telemetry - truth.telemetry)],
        stale=[
            Stale(e, truth.devices[e], rows.active[e])
            for e in sorted(peer_ids & store_ids)
            if truth.devices[e] != rows.active[e]
        ],
        doubled=_doubled("device", rows.device_keys)
        + _doubled("state", rows.state_keys)
        + _doubled("telemetry", rows.telemetry_keys),
    )
