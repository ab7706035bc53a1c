"""The ledger's webhooks: what each provider sends when the peer changes, delivered duplicated and
shuffled to the real receiver (webhooks/app.py on a loopback port), authenticated the way that
provider's deliveries are (a shared secret: Golioth, AWS IoT rules and Event Grid cannot sign).

- Golioth (pipeline webhook): readings, one per sending device, in the inject-metadata envelope
  with a `Ce-Id`; each must end as one telemetry row.
- AWS (rule on `$aws/events/thing/#`): registry events — CREATED / UPDATED / DELETED with the
  thing's `thingId`, `versionNumber` and attributes, and a stable `eventId` — plus lifecycle
  connected / disconnected events of some clients.
- Azure (Event Grid): DeviceCreated (the twin) and DeviceDeleted, DeviceConnected /
  DeviceDisconnected with a growing `sequenceNumber`, and DeviceTelemetry readings. A twin change
  sends no Event Grid event (as on Azure): only the poll sees it.
- MQTT has no webhooks: its events are the telemetry readings the drain takes from the broker.
  The device side republishes some (a QoS 1 retry) and sends them out of order (a buffer
  flushed late); see `MqttLedgerPeer.emit_shuffled_telemetry`.

Every event is built from the peer's own record at the moment of the change, so a late one is
older than what a poll since has seen: the event-order rules must refuse it."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from sync_pipelines.clock import utc_now

from .ledger_peers import LedgerPeer

SECRET_HEADER = "x-webhook-secret"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One POST as the provider makes it; `reading` is the telemetry key it must store once."""

    body: bytes
    headers: dict[str, str]
    reading: tuple[str, str] | None = None


@dataclass
class PeerChanges:
    """What one round did at the peer (ids)."""

    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    alive: list[str] = field(default_factory=list)


class ProviderEvents:
    """Builds the deliveries a provider sends for a round's changes."""

    def __init__(self, peer: LedgerPeer, secret: str) -> None:
        self.peer = peer
        self.secret = secret
        self._connection_seq = 0
        self._connections: dict[str, int] = {}

    def before_deletion(self, deleted: Iterable[str], rng: random.Random) -> list[Delivery]:
        """Events of devices about to be deleted (built while the peer still has them)."""
        return []

    def for_changes(self, changes: PeerChanges, rng: random.Random) -> list[Delivery]:
        raise NotImplementedError

    def _headers(self, **extra: str) -> dict[str, str]:
        return {SECRET_HEADER: self.secret, "content-type": "application/json", **extra}


def _now_ms() -> int:
    return int(utc_now().timestamp() * 1000)


def _event_time(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class GoliothEvents(ProviderEvents):
    """Golioth sends no registry events: only the readings of its pipelines."""

    def for_changes(self, changes: PeerChanges, rng: random.Random) -> list[Delivery]:
        senders = rng.sample(changes.alive, min(len(changes.alive), 12))
        now = utc_now()
        deliveries = []
        for device in senders:
            ce_id = str(uuid.uuid4())
            envelope = {
                "data": {"temp": rng.randint(0, 40)},
                "device_id": device,
                "project_id": "ledger",
                "timestamp": {
                    "seconds": str(int(now.timestamp())),
                    "nanos": now.microsecond * 1000,
                },
            }
            headers = self._headers(
                **{"ce-id": ce_id, "ce-source": device, "ce-type": "io.golioth.data.v1/.s/env"}
            )
            deliveries.append(
                Delivery(json.dumps(envelope).encode(), headers, (device, f"webhook:{ce_id}"))
            )
        return deliveries


class AwsEvents(ProviderEvents):
    def _thing_event(self, name: str, operation: str, thing: Any) -> Delivery:
        payload = {
            "eventType": "THING_EVENT",
            "eventId": str(uuid.uuid4()),
            "timestamp": _now_ms(),
            "operation": operation,
            "accountId": "123456789012",
            "thingId": thing.thing_id,
            "thingName": name,
            "versionNumber": thing.version,
            "thingTypeName": thing.thing_type.thing_type_name if thing.thing_type else None,
            "attributes": dict(thing.attributes),
        }
        return Delivery(json.dumps(payload).encode(), self._headers())

    def _things(self) -> dict[str, Any]:
        return {t.thing_name: t for t in self.peer.peer._backends()[0].things.values()}

    def before_deletion(self, deleted: Iterable[str], rng: random.Random) -> list[Delivery]:
        # DELETED events carry the thing as it was
        things = self._things()
        return [self._thing_event(n, "DELETED", things[n]) for n in deleted if n in things]

    def for_changes(self, changes: PeerChanges, rng: random.Random) -> list[Delivery]:
        things = self._things()
        deliveries = [
            self._thing_event(n, "CREATED", things[n]) for n in changes.created + changes.restored
        ]
        deliveries += [self._thing_event(n, "UPDATED", things[n]) for n in changes.changed]
        for client in rng.sample(changes.alive, min(len(changes.alive), 8)):
            version = self._connections[client] = self._connections.get(client, 0) + 1
            for kind in ("connected", "disconnected")[: rng.randint(1, 2)]:
                payload = {
                    "clientId": client,
                    "timestamp": _now_ms(),
                    "eventType": kind,
                    "sessionIdentifier": str(uuid.uuid4()),
                    "principalIdentifier": "ledger",
                    "versionNumber": version,
                    "id": str(uuid.uuid4()),  # the rule's newuuid(): a redelivery keeps it
                }
                deliveries.append(Delivery(json.dumps(payload).encode(), self._headers()))
        return deliveries


class AzureEvents(ProviderEvents):
    def _event(self, kind: str, device: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "topic": "/SUBSCRIPTIONS/x/resourceGroups/rg/providers/Microsoft.Devices/IotHubs/ledger",
            "subject": f"devices/{device}",
            "eventType": f"Microsoft.Devices.{kind}",
            "eventTime": _event_time(utc_now()),
            "data": {"deviceId": device, "hubName": "ledger", **data},
            "dataVersion": "",
            "metadataVersion": "1",
        }

    def _twin(self, device: str) -> dict[str, Any]:
        return self.peer.peer.emulator.get_twin(device)

    def before_deletion(self, deleted: Iterable[str], rng: random.Random) -> list[Delivery]:
        events = [self._event("DeviceDeleted", d, {"twin": self._twin(d)}) for d in deleted]
        return self.batched(events, rng)

    def for_changes(self, changes: PeerChanges, rng: random.Random) -> list[Delivery]:
        events = [
            self._event("DeviceCreated", d, {"twin": self._twin(d)})
            for d in changes.created + changes.restored
        ]
        for device in rng.sample(changes.alive, min(len(changes.alive), 8)):
            for kind in ("DeviceConnected", "DeviceDisconnected")[: rng.randint(1, 2)]:
                self._connection_seq += 1
                info = {"sequenceNumber": f"{self._connection_seq:064X}"}
                events.append(self._event(kind, device, {"deviceConnectionStateEventInfo": info}))
        readings = []
        for device in rng.sample(changes.alive, min(len(changes.alive), 6)):
            event = self._event("DeviceTelemetry", device, {"body": {"temp": rng.randint(0, 40)}})
            readings.append(
                Delivery(
                    json.dumps([event]).encode(),
                    self._headers(**{"aeg-event-type": "Notification"}),
                    (device, f"webhook:{event['id']}"),
                )
            )
        return self.batched(events, rng) + readings

    def batched(self, events: list[dict[str, Any]], rng: random.Random) -> list[Delivery]:
        """Event Grid delivers arrays of events: cut into random batches."""
        deliveries, rest = [], list(events)
        while rest:
            size = rng.randint(1, 5)
            batch, rest = rest[:size], rest[size:]
            deliveries.append(
                Delivery(
                    json.dumps(batch).encode(), self._headers(**{"aeg-event-type": "Notification"})
                )
            )
        return deliveries


def duplicated_and_shuffled(deliveries: list[Delivery], rng: random.Random) -> list[Delivery]:
    """Each delivery once, some again (a sender's retry), in a random order."""
    copies = deliveries + [d for d in deliveries if rng.random() < 0.4]
    rng.shuffle(copies)
    return copies


@dataclass
class WebhookOutbox:
    """The deliveries not yet made; a part of each round's is held back to arrive late."""

    client: httpx.Client
    path: str
    pending: list[Delivery] = field(default_factory=list)
    codes: Counter[int] = field(default_factory=Counter)
    #: telemetry keys the store must hold once each (every reading is delivered in the end)
    readings: set[tuple[str, str]] = field(default_factory=set)

    def queue(self, deliveries: list[Delivery]) -> None:
        self.pending += deliveries
        self.readings.update(d.reading for d in deliveries if d.reading)

    def deliver(self, rng: random.Random, *, hold_back: float = 0.0) -> int:
        """Deliver the pending deliveries duplicated and shuffled, but for a fraction held back
        for a later call; returns how many POSTs were made."""
        rng.shuffle(self.pending)
        held = int(len(self.pending) * hold_back)
        now, self.pending = self.pending[held:], self.pending[:held]
        sent = duplicated_and_shuffled(now, rng)
        for delivery in sent:
            response = self.client.post(self.path, content=delivery.body, headers=delivery.headers)
            self.codes[response.status_code] += 1
            assert response.status_code in (200, 202), (response.status_code, response.text)
        return len(sent)


PROVIDER_EVENTS: dict[str, type[ProviderEvents]] = {
    "golioth": GoliothEvents,
    "aws_iot": AwsEvents,
    "azure_iot": AzureEvents,
}
