"""A device fleet simulator for an MQTT broker: what devices and their registry publish.

For each device it publishes the retained `meta`, `reported` and `desired` documents of the
provider's topic layout (providers/mqtt_topics.py), and QoS 1 telemetry with a per-device `seq`.
Everything goes through one connection with a wide in-flight window, so seeding thousands of
devices takes seconds, and every publish is waited for (PUBACK) before a call returns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sync_pipelines.clock import utc_now
from sync_pipelines.providers.mqtt_client import BrokerEndpoint, MqttConnection
from sync_pipelines.providers.mqtt_documents import format_time, state_document
from sync_pipelines.providers.mqtt_topics import (
    DEFAULT_PREFIX,
    DESIRED,
    META,
    REPORTED,
    TELEMETRY,
    TopicLayout,
)

JsonDict = dict[str, Any]
#: unacknowledged publishes in flight at once (paho's default is 20)
_INFLIGHT = 1000
#: publishes queued before waiting for their PUBACKs (bounds memory on big runs)
_WAVE = 5000


def device_ids(count: int, *, prefix: str = "mqtt-dev") -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(count)]


def meta_document(external_id: str, index: int, version: int) -> JsonDict:
    return {
        "name": f"sensor {external_id}",
        "hardware_ids": [f"hw-{index:08x}"],
        "tags": ["simulated", f"floor-{index % 4}"],
        "attributes": {"model": "th-100", "site": f"site-{index % 3}"},
        "status": "online",
        "enabled": True,
        "version": version,
        "updated_at": format_time(utc_now()),
    }


def reported_state(index: int) -> JsonDict:
    return {
        "temperature": round(18 + (index % 70) / 10, 1),
        "battery": 100 - index % 50,
        "firmware": "1.4.2",
    }


def desired_state(index: int) -> JsonDict:
    return {"interval_s": 60, "led": "off" if index % 2 else "on"}


class DeviceSimulator:
    """Publishes a fleet's documents and telemetry. Use as a context manager."""

    def __init__(
        self,
        endpoint: BrokerEndpoint,
        *,
        prefix: str = DEFAULT_PREFIX,
        client_id: str = "sync-pipelines-device-simulator",
    ) -> None:
        self.layout = TopicLayout(prefix)
        self.connection = MqttConnection(endpoint, client_id, max_inflight_out=_INFLIGHT)

    def __enter__(self) -> DeviceSimulator:
        self.connection.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.connection.close()

    # -- retained documents ---------------------------------------------------------------

    def publish_inventory(self, external_ids: Sequence[str], *, version: int = 1) -> None:
        """Retained meta, reported and desired for each device."""
        now = utc_now()

        def documents() -> Iterable[tuple[str, bytes]]:
            for index, external_id in enumerate(external_ids):
                yield (
                    self.layout.topic(external_id, META),
                    _json(meta_document(external_id, index, version)),
                )
                yield (
                    self.layout.topic(external_id, REPORTED),
                    state_document(1, reported_state(index), now),
                )
                yield (
                    self.layout.topic(external_id, DESIRED),
                    state_document(1, desired_state(index), now),
                )

        self.publish_many(documents(), retain=True)

    def clear(self, external_ids: Iterable[str]) -> None:
        """Delete each device's retained documents (an empty retained payload deletes)."""
        self.publish_many(
            (
                (self.layout.topic(e, kind), b"")
                for e in external_ids
                for kind in (META, REPORTED, DESIRED)
            ),
            retain=True,
        )

    def publish_meta(self, external_id: str, document: JsonDict | bytes) -> None:
        payload = document if isinstance(document, bytes) else _json(document)
        self.publish_many([(self.layout.topic(external_id, META), payload)], retain=True)

    def publish_state(self, external_id: str, kind: str, version: int, state: JsonDict) -> None:
        self.publish_many(
            [(self.layout.topic(external_id, kind), state_document(version, state, utc_now()))],
            retain=True,
        )

    def read_retained(self, kind: str) -> dict[str, bytes]:
        """device id -> payload of every retained `kind` document on the broker."""
        found = {}
        for message in self.connection.read_retained([self.layout.wildcard(kind)], qos=0):
            parsed = self.layout.parse(message.topic)
            if parsed and message.payload:
                found[parsed[0]] = message.payload
        return found

    def read_document(self, external_id: str, kind: str) -> bytes | None:
        messages = self.connection.read_retained([self.layout.topic(external_id, kind)], qos=0)
        return messages[-1].payload if messages and messages[-1].payload else None

    # -- telemetry ------------------------------------------------------------------------

    def publish_telemetry(
        self,
        external_ids: Sequence[str],
        per_device: int,
        *,
        start_seq: int = 0,
        extra: Mapping[str, Any] | None = None,
    ) -> int:
        """`per_device` readings for each device, interleaved, with `seq` counting up from
        `start_seq`; returns how many were published (each PUBACKed)."""

        def readings() -> Iterable[tuple[str, bytes]]:
            for seq in range(start_seq, start_seq + per_device):
                ts = format_time(utc_now())
                for index, external_id in enumerate(external_ids):
                    body = {
                        "seq": seq,
                        "ts": ts,
                        "temperature": round(20 + (index + seq) % 50 / 10, 1),
                        **(extra or {}),
                    }
                    yield self.layout.topic(external_id, TELEMETRY), _json(body)

        return self.publish_many(readings(), retain=False)

    def publish_raw(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.publish_many([(topic, payload)], retain=retain)

    def publish_many(self, messages: Iterable[tuple[str, bytes]], *, retain: bool) -> int:
        """QoS 1 publishes in waves, waiting for every PUBACK; returns the count."""
        sent, wave = 0, []
        for topic, payload in messages:
            wave.append(self.connection.publish(topic, payload, qos=1, retain=retain))
            if len(wave) >= _WAVE:
                self.connection.wait_published(wave)
                sent, wave = sent + len(wave), []
        self.connection.wait_published(wave)
        return sent + len(wave)


def _json(document: JsonDict) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()
