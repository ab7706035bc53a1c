"""MQTT's local peer: a real broker (Mosquitto, or amqtt where Mosquitto is not installed) with
a password file, plus the device simulator that publishes the fleet's retained documents.

The peer-side truth is the broker's retained state, read back over MQTT. Faults are real broker
behaviour, and last until `clear_faults()` (a broker has no per-call hook to count `times` by):
- AUTH_FAILURE: the password file is rewritten without the integration's password and the
  broker reloads it (SIGHUP), so CONNACK says "not authorized";
- SERVER_ERROR: the broker is stopped (connection refused); clearing restarts it, and its
  persistence brings the retained inventory back;
- MALFORMED: a retained `meta` that is not JSON appears for one extra device.
RATE_LIMIT is not supported: see `unsupported_reasons`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable

from sync_pipelines.clock import utc_now
from sync_pipelines.providers.mqtt_documents import format_time, merge_patch, state_of
from sync_pipelines.providers.mqtt_topics import DEFAULT_PREFIX, DESIRED, META, REPORTED
from sync_pipelines_peers.emulators.mqtt_broker import AmqttBroker, Broker, start_broker
from sync_pipelines_peers.emulators.mqtt_devices import DeviceSimulator, device_ids
from sync_pipelines_peers.launchers.contract import (
    AUTH_FAILURE,
    DROP_CONNECTION,
    MALFORMED,
    POISON_RECORD,
    RATE_LIMIT,
    SERVER_ERROR,
    TIMEOUT,
    JsonDict,
    ProviderPeer,
)

MALFORMED_DEVICE = "mqtt-malformed-0001"


class MqttPeer(ProviderPeer):
    provider = "mqtt"
    supported_faults = frozenset({AUTH_FAILURE, SERVER_ERROR, MALFORMED})
    faults_count_calls = False  # a stopped broker / rotated password lasts until clear_faults
    unsupported_reasons = {
        RATE_LIMIT: "MQTT brokers (Mosquitto 2.0) have no throttle reply a client can observe: an overloaded "
        "broker delays or drops messages (and MQTT 3.1.1 has no reason codes to say so), so there "
        "is no RateLimitedError with a retry-after to produce",
        TIMEOUT: "a broker that stops answering is injected as server_error (the broker is stopped: "
        "connects are refused, an open session is lost); a half-open socket that hangs is not "
        "something a Mosquitto config can produce on demand",
        POISON_RECORD: "is what `malformed` injects for MQTT: one retained registry entry that is "
        "not JSON, rejected while the rest of the listing is stored",
        DROP_CONNECTION: "covered by server_error: stopping the broker drops every open connection, and "
        "the telemetry tests kill the broker and the client mid-batch for real",
    }

    def __init__(
        self,
        *,
        prefer: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        max_queued_messages: int = 100_000,
        max_inflight_messages: int = 1000,
    ) -> None:
        self.prefix = prefix
        self.prefer = prefer
        self.max_queued_messages = max_queued_messages
        self.max_inflight_messages = max_inflight_messages
        # distinctive values: resolved secrets are masked wherever they appear in logs
        self.username = f"mqtt-peer-{secrets.token_hex(4)}"
        self.password = secrets.token_urlsafe(18)
        self.broker: Broker | None = None
        self._faults: set[str] = set()
        self._next_seq: dict[str, int] = {}

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self.broker is None:
            self.broker = start_broker(
                {self.username: self.password},
                prefer=self.prefer,
                max_queued_messages=self.max_queued_messages,
                max_inflight_messages=self.max_inflight_messages,
            )

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.cleanup()
            self.broker = None

    @property
    def running_broker(self) -> Broker:
        if self.broker is None:
            raise RuntimeError("the MQTT peer is not started")
        return self.broker

    # -- integration wiring ---------------------------------------------------------------

    def integration_settings(self) -> JsonDict:
        broker = self.running_broker
        amqtt = isinstance(broker, AmqttBroker)
        return {
            "host": broker.host,
            "port": broker.port,
            "topic_prefix": self.prefix,
            "protocol": "3.1.1",
            "read_protocol": "3.1.1" if amqtt else "5",  # amqtt speaks 3.1.1 only
            "broker_max_inflight": 0 if amqtt else self.max_inflight_messages,
            "idle_timeout_s": 0.5,
            "broker_counters": not amqtt,  # amqtt publishes no $SYS dropped-message counter
        }

    def secret_env(self, prefix: str) -> tuple[dict[str, str], dict[str, str]]:
        user_env, password_env = f"{prefix}_MQTT_USERNAME", f"{prefix}_MQTT_PASSWORD"
        return (
            {"username": user_env, "password": password_env},
            {user_env: self.username, password_env: self.password},
        )

    def wrong_secret_env(self, prefix: str) -> dict[str, str]:
        return {
            f"{prefix}_MQTT_USERNAME": self.username,
            f"{prefix}_MQTT_PASSWORD": f"wrong-{secrets.token_hex(8)}",
        }

    # -- peer-side truth and actions ------------------------------------------------------

    def simulator(self) -> DeviceSimulator:
        """A device simulator connected as the peer's user (use as a context manager)."""
        return DeviceSimulator(
            self.running_broker.endpoint(self.username),
            prefix=self.prefix,
            client_id=f"mqtt-peer-simulator-{secrets.token_hex(3)}",
        )

    def seed(self, count: int) -> list[str]:
        ids = device_ids(count)
        with self.simulator() as sim:
            stale = set(sim.read_retained(META)) - set(ids)
            sim.clear(sorted(stale))
            sim.publish_inventory(ids)
        return ids

    def inventory(self) -> set[str]:
        with self.simulator() as sim:
            return set(sim.read_retained(META)) - {MALFORMED_DEVICE}

    def change_devices(self, external_ids: Iterable[str]) -> None:
        with self.simulator() as sim:
            for external_id in external_ids:
                meta = json.loads(sim.read_document(external_id, META) or b"{}")
                meta.update(
                    name=f"{meta.get('name', external_id)}-renamed",
                    version=int(meta.get("version", 0)) + 1,
                    updated_at=format_time(utc_now()),
                )
                sim.publish_meta(external_id, meta)

    def delete_devices(self, external_ids: Iterable[str]) -> None:
        """Empty retained `meta` (and state) documents: how an MQTT registry deletes a device."""
        with self.simulator() as sim:
            sim.clear(sorted(external_ids))

    def restore_devices(self, external_ids: Iterable[str]) -> None:
        with self.simulator() as sim:
            sim.publish_inventory(sorted(external_ids))

    def reported_state(self, external_id: str) -> JsonDict | None:
        return self._state(external_id, REPORTED)[1]

    def desired_state(self, external_id: str) -> JsonDict | None:
        return self._state(external_id, DESIRED)[1]

    def write_desired_remotely(self, external_id: str, patch: JsonDict) -> None:
        version, desired = self._state(external_id, DESIRED)
        with self.simulator() as sim:
            sim.publish_state(external_id, DESIRED, version + 1, merge_patch(desired or {}, patch))

    def emit_telemetry(
        self, messages_per_device: int, external_ids: Iterable[str] | None = None
    ) -> int:
        """QoS 1 readings; each device's `seq` carries on from its last emitted reading."""
        ids = sorted(external_ids if external_ids is not None else self.inventory())
        sent = 0
        with self.simulator() as sim:
            # one call per starting seq, so devices that joined later start at 0
            for start in sorted({self._next_seq.get(i, 0) for i in ids}):
                group = [i for i in ids if self._next_seq.get(i, 0) == start]
                sent += sim.publish_telemetry(group, messages_per_device, start_seq=start)
        for external_id in ids:
            self._next_seq[external_id] = self._next_seq.get(external_id, 0) + messages_per_device
        return sent

    def inject_fault(self, fault: str, *, times: int = 1) -> None:
        broker = self.running_broker
        if fault == AUTH_FAILURE:
            broker.set_users({self.username: f"rotated-{secrets.token_hex(8)}"})
        elif fault == SERVER_ERROR:
            broker.stop()
        elif fault == MALFORMED:
            with self.simulator() as sim:
                sim.publish_meta(MALFORMED_DEVICE, b"{this is not json")
        else:
            raise ValueError(
                f"the MQTT peer cannot inject {fault!r}: {self.unsupported_reasons.get(fault, 'unknown')}"
            )
        self._faults.add(fault)

    def clear_faults(self) -> None:
        broker = self.running_broker
        if SERVER_ERROR in self._faults:
            broker.start()
        if AUTH_FAILURE in self._faults:
            broker.set_users({self.username: self.password})
        if MALFORMED in self._faults:
            with self.simulator() as sim:
                sim.clear([MALFORMED_DEVICE])
        self._faults.clear()

    def _state(self, external_id: str, kind: str) -> tuple[int, JsonDict | None]:
        with self.simulator() as sim:
            payload = sim.read_document(external_id, kind)
        return state_of(json.loads(payload)) if payload else (0, None)
