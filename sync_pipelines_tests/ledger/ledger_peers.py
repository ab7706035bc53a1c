"""What the ledger needs of each provider's peer beyond the peer contract: create devices, read
every device's record and state revision at the peer and in a store row, and slow the inventory
listing down so a kill or a restart lands mid-scan. One adapter per provider, same shape."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from typing import Any

from sync_pipelines_peers.emulators.faults import FaultSpec
from sync_pipelines_peers.emulators.mqtt_devices import device_ids
from sync_pipelines_peers.launchers.contract import ProviderPeer

from sync_pipelines.clock import utc_now
from sync_pipelines.providers.mqtt_documents import format_time, state_of
from sync_pipelines.providers.mqtt_topics import DESIRED, META, TELEMETRY, TopicLayout

from .ledger import Versions

#: the desired-state key the ledger's state changes bump (a revision per device)
STATE_KEY = "ledger_rev"


def _renames(name: str) -> int:
    # Golioth's and MQTT's peers rename on change: the record revision is the suffix count
    return name.count("-renamed")


class LedgerPeer:
    """A started, seeded peer with the ledger's reads and writes."""

    #: a listing can be slowed (False: the kill and the restart land wherever they land)
    slows_listing = True

    def __init__(self, peer: ProviderPeer, seeded: int) -> None:
        self.peer = peer
        self.provider = peer.provider
        self.created = seeded
        self._state_revs: dict[str, int] = {}

    def create(self, count: int) -> list[str]:
        raise NotImplementedError

    def record_revisions(self, ids: Iterable[str]) -> dict[str, int]:
        raise NotImplementedError

    def stored_record_revision(self, name: str, attributes: Mapping[str, Any]) -> int:
        raise NotImplementedError

    def slow_listing(self, latency_ms: int) -> None:
        raise NotImplementedError

    def desired_documents(self, ids: Iterable[str]) -> dict[str, Mapping[str, Any] | None]:
        return {i: self.peer.desired_state(i) for i in ids}

    def change_state(self, external_id: str) -> None:
        """Someone else changes the device's desired state: the next revision of STATE_KEY."""
        rev = self._state_revs.get(external_id, 0) + 1
        self._state_revs[external_id] = rev
        self.peer.write_desired_remotely(external_id, {STATE_KEY: rev})

    def truth(self) -> dict[str, Versions]:
        ids = sorted(self.peer.inventory())
        records = self.record_revisions(ids)
        desired = self.desired_documents(ids)
        return {i: Versions(records[i], int((desired[i] or {}).get(STATE_KEY, 0))) for i in ids}


class GoliothLedgerPeer(LedgerPeer):
    def create(self, count: int) -> list[str]:
        return list(self.peer.emulator.add_devices(count))

    def record_revisions(self, ids: Iterable[str]) -> dict[str, int]:
        return {i: _renames(self.peer.emulator.get_device(i)["name"]) for i in ids}

    def stored_record_revision(self, name: str, attributes: Mapping[str, Any]) -> int:
        return _renames(name)

    def slow_listing(self, latency_ms: int) -> None:
        self.peer.emulator.add_faults(
            {"kind": "latency", "path": "/devices$", "latency_ms": latency_ms}
        )


class AzureLedgerPeer(LedgerPeer):
    def create(self, count: int) -> list[str]:
        return list(self.peer.emulator.add_devices(count))

    def record_revisions(self, ids: Iterable[str]) -> dict[str, int]:
        twins = {i: self.peer.emulator.get_twin(i) for i in ids}
        return {i: int((t.get("tags") or {}).get("peerRevision", 0)) for i, t in twins.items()}

    def stored_record_revision(self, name: str, attributes: Mapping[str, Any]) -> int:
        return int((attributes.get("tags") or {}).get("peerRevision", 0))

    def slow_listing(self, latency_ms: int) -> None:
        self.peer.emulator.add_faults(
            {"kind": "latency", "path": "^/devices/query", "latency_ms": latency_ms}
        )


class AwsLedgerPeer(LedgerPeer):
    def create(self, count: int) -> list[str]:
        # `restore_devices` creates the seeded thing of that index: a new index is a new thing
        names = [f"thing-{index:05d}" for index in range(self.created, self.created + count)]
        self.created += count
        self.peer.restore_devices(names)
        return names

    def record_revisions(self, ids: Iterable[str]) -> dict[str, int]:
        things = self.peer._backends()[0].things.values()  # moto's in-process truth
        by_name = {t.thing_name: int(t.attributes.get("revision", "0")) for t in things}
        return {i: by_name[i] for i in ids}

    def stored_record_revision(self, name: str, attributes: Mapping[str, Any]) -> int:
        return int((attributes.get("attributes") or {}).get("revision", "0"))

    def slow_listing(self, latency_ms: int) -> None:
        self.peer.proxy.add_faults(FaultSpec("latency", path=r"^/things/?$", latency_ms=latency_ms))


class MqttLedgerPeer(LedgerPeer):
    slows_listing = False  # a broker's retained listing has no per-call latency hook

    def __init__(self, peer: ProviderPeer, seeded: int) -> None:
        super().__init__(peer, seeded)
        #: (external_id, "seq:N") of every telemetry message sent
        self.sent: set[tuple[str, str]] = set()
        self._next_seq: dict[str, int] = {}
        self.layout = TopicLayout(peer.integration_settings().get("topic_prefix", "devices"))

    def create(self, count: int) -> list[str]:
        ids = device_ids(self.created + count)[self.created :]
        self.created += count
        self.peer.restore_devices(ids)  # publishes each one's retained documents
        return ids

    def _retained(self, kind: str) -> dict[str, Any]:
        with self.peer.simulator() as sim:
            return {i: json.loads(p) for i, p in sim.read_retained(kind).items()}

    def record_revisions(self, ids: Iterable[str]) -> dict[str, int]:
        meta = self._retained(META)
        return {i: _renames(meta[i]["name"]) for i in ids}

    def stored_record_revision(self, name: str, attributes: Mapping[str, Any]) -> int:
        return _renames(name)

    def desired_documents(self, ids: Iterable[str]) -> dict[str, Mapping[str, Any] | None]:
        desired = self._retained(DESIRED)
        return {i: state_of(desired[i])[1] if i in desired else None for i in ids}

    def emit_telemetry(self, ids: list[str], per_device: int) -> None:
        self.peer.emit_telemetry(per_device, ids)
        for i in ids:  # the peer's numbering: each device's seq carries on from its last
            start = self._next_seq.get(i, 0)
            self.sent.update((i, f"seq:{seq}") for seq in range(start, start + per_device))
            self._next_seq[i] = start + per_device

    def emit_shuffled_telemetry(self, ids: list[str], per_device: int, rng: random.Random) -> int:
        """MQTT's duplicated and shuffled events: each device's next readings published out of
        order (a buffer flushed late), some twice (a QoS 1 retry after a lost PUBACK)."""
        readings = []
        for i in ids:
            start = self._next_seq.get(i, 0)
            for seq in range(start, start + per_device):
                body = {"seq": seq, "ts": format_time(utc_now()), "temperature": rng.randint(0, 40)}
                readings.append((f"{self.layout.topic(i, TELEMETRY)}", json.dumps(body).encode()))
                self.sent.add((i, f"seq:{seq}"))
            self._next_seq[i] = start + per_device
            self.peer._next_seq[i] = start + per_device  # the peer's own numbering carries on
        readings += [r for r in readings if rng.random() < 0.3]
        rng.shuffle(readings)
        with self.peer.simulator() as sim:
            return sim.publish_many(readings, retain=False)


LEDGER_PEERS: dict[str, type[LedgerPeer]] = {
    "golioth": GoliothLedgerPeer,
    "azure_iot": AzureLedgerPeer,
    "aws_iot": AwsLedgerPeer,
    "mqtt": MqttLedgerPeer,
}
