"""MQTT provider (PROVIDERS.md §4): inventory and state from retained topics, telemetry drained
from a persistent session with at-least-once delivery into the store.

Topics (mqtt_topics.py): `{prefix}/{id}/meta|reported|desired` are retained JSON documents,
`{prefix}/{id}/telemetry` carries QoS 1 readings with a per-device `seq`.

Reads (list_devices, get_states, push_desired's read) use a *clean* connection with its own
client id (`{client_id}-read-…`, opened on first use, closed with the provider), so they never
disturb the telemetry session. They read retained messages with a subscribe/unsubscribe barrier
(MqttConnection.read_retained) instead of waiting for silence. A wildcard read (the listing) is
one burst of every retained meta, and brokers bound bursts: on 3.1.1 it goes through the
per-client queue, and Mosquitto's default `max_queued_messages 1000` silently drops the rest —
1,020 of 10,000 metas arrived at QoS 1, about 17,500 of 50,000 at QoS 0 (measured on 2.0.11).
So reads default to MQTT v5 (`read_protocol`) and read wildcards at QoS 1: the broker then sends
up to our Receive Maximum (65,535) unacknowledged messages without queueing them. Small reads of
exact topics (get_states' batches) use QoS 0, which saves a PUBACK per message. On 3.1.1
(`read_protocol: "3.1.1"`, e.g. amqtt) reads use QoS 0 and the broker must allow a burst as
large as the inventory.

Connections come from `clients.mqtt`, so each broker operation (CONNECT, SUBSCRIBE,
UNSUBSCRIBE, QoS 1 PUBLISH, each until the broker's answer) is an activity row without this
module recording anything (observability.mqtt_recording); received messages are not rows.

Listing: MQTT has no server-side filter or paging, so every listing receives every retained
meta, sorts by device id and pages client-side; a scan resumed from a page's cursor
(`{"after_id": ...}`) skips the ids already yielded, and the last page's cursor is None. The
next sync lists everything again and the store's content hash leaves unchanged devices alone
(a meta's `version` is imported as attribute `meta_version`, so a bumped version is a change).

push_desired reads the retained reported/desired versions, compares `"{reported}:{desired}"`
with `expected_version`, then publishes the merged desired with version+1 (retained, QoS 1,
waiting for the PUBACK). MQTT has no compare-and-set: the check is not atomic, and a writer
publishing between our read and our publish is not detected (last write wins).

Telemetry (drain_telemetry): a stable client id (default `sync-pipelines-{integration_id}`), a
persistent session on every connect (3.1.1 `clean_session=False`, the default because Mosquitto
2.0.11 loses v5 sessions on restart; or v5 `clean_start=False` + SessionExpiryInterval), QoS 1
and manual acks: a batch is acknowledged only after the engine committed it, so a sync killed
in between gets the messages redelivered (DUP) next time. The broker sends at most its in-flight
window of unacknowledged messages (Mosquitto `max_inflight_messages`, default 20, on 3.1.1; our
Receive Maximum on v5), so a batch is cut when that many are held (`broker_max_inflight`) or
after `batch_linger_s` without a message. The drain ends after `idle_timeout_s` of silence or
`window_s`. Subscription starts with the first drain: telemetry published before the session
existed is not queued for us. Messages a broker drops on queue overflow never reach the client:
the drain reads the broker's dropped-message counter before connecting and after draining, and
notices a session the broker lost (mqtt_loss.py); both make the sync `partial`. The engine also
finds drops as gaps in `seq` once a device publishes again.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Sequence
from typing import Any

import paho.mqtt.client as mqtt

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import (
    AuthError,
    ConflictError,
    MalformedResponseError,
    ProviderError,
)
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.providers.contract import (
    ConnectionResult,
    DevicePage,
    DeviceRecord,
    DeviceState,
    IntegrationConfig,
    JsonDict,
    Provider,
    ProviderClients,
    PushResult,
    RejectedRecord,
    StateFailure,
    TelemetryBatch,
    TelemetryLoss,
    TelemetryMessage,
)
from sync_pipelines.providers.mqtt_client import (
    MAX_RECEIVE_MAXIMUM,
    BrokerEndpoint,
    MqttConnection,
)
from sync_pipelines.providers.mqtt_documents import (
    DocumentError,
    decode_object,
    merge_patch,
    meta_to_device,
    payload_preview,
    state_document,
    state_of,
    telemetry_message,
)
from sync_pipelines.providers.mqtt_loss import (
    COUNTER_TOPICS,
    DROPPED_TOPIC,
    BrokerCounters,
    judge_loss,
    parse_counters,
)
from sync_pipelines.providers.mqtt_topics import (
    DEFAULT_PREFIX,
    DESIRED,
    META,
    REPORTED,
    TELEMETRY,
    TopicLayout,
)
from sync_pipelines.providers.settings import MqttSettings

DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 5000
#: retained messages a read may expect at QoS 0 (half Mosquitto's default max_queued_messages)
SMALL_BURST = 500
_WILDCARDS = frozenset("+#")

_log = get_logger("providers.mqtt")


class MqttProvider(Provider):
    """Settings: `host` (required), `port` (1883), `topic_prefix` ("devices"), `client_id`
    ("sync-pipelines-{integration_id}"), `protocol` of the telemetry session ("3.1.1" | "5"),
    `read_protocol` of reads ("5" | "3.1.1"), `page_size` (500, ≤ 5000), `drain_window_s` (30,
    caps any drain), `idle_timeout_s` (1.0), `batch_linger_s` (0.05), `broker_max_inflight` (the
    broker's max_inflight_messages, 20; 0 = unlimited), `max_message_bytes` (256 KiB),
    `session_expiry_s` (86400, v5), `broker_counters` (true: read Mosquitto's `$SYS` dropped
    counter around each drain). Secrets: `username`, `password`."""

    name = "mqtt"
    settings_model = MqttSettings
    required_settings = ("host",)
    required_secrets = ("username", "password")
    supports_desired = True
    supports_telemetry = True

    def __init__(self, config: IntegrationConfig, clients: ProviderClients) -> None:
        self.config = config
        self.clients = clients  # its MQTT connections record each broker operation
        setting = MqttSettings.of(config)  # a ConfigError names a bad setting
        self.layout = TopicLayout(setting.topic_prefix or DEFAULT_PREFIX)
        self.endpoint = BrokerEndpoint(
            host=setting.host,
            port=setting.port,
            username=config.secrets.get("username"),
            password=config.secrets.get("password"),
            timeout_s=clients.request_timeout_s,
            provider=self.name,
        )
        self.client_id = setting.client_id or f"sync-pipelines-{config.integration_id}"
        self.protocol = setting.protocol
        self.read_protocol = setting.read_protocol
        self.page_size = min(setting.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        self.drain_window_s = setting.drain_window_s
        self.idle_timeout_s = setting.idle_timeout_s
        self.batch_linger_s = setting.batch_linger_s
        self.broker_max_inflight = setting.broker_max_inflight
        self.max_message_bytes = setting.max_message_bytes
        self.session_expiry_s = setting.session_expiry_s
        self.broker_counters = setting.broker_counters
        self._reader: MqttConnection | None = None

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # -- contract -------------------------------------------------------------------------

    def test_connection(self) -> ConnectionResult:
        started = time.perf_counter()
        try:
            with self._connection("check"):
                pass
        except ProviderError as exc:
            reason = str(exc) if isinstance(exc, AuthError) else f"cannot use the broker: {exc}"
            return ConnectionResult(False, _ms_since(started), reason, {"category": exc.category})
        return ConnectionResult(
            True,
            _ms_since(started),
            None,
            {"broker": self.endpoint.address, "protocol": self.read_protocol},
        )

    def list_devices(self, since: JsonDict | None = None) -> Iterator[DevicePage]:
        # No server-side filter or paging in MQTT: every retained meta arrives in one burst; they
        # are sorted by id and paged here. Resuming skips the ids up to the cursor's `after_id`.
        after = str((since or {}).get("after_id") or "")
        entries: dict[str, DeviceRecord | RejectedRecord] = {}
        for message in self._read_retained([self.layout.wildcard(META)]):
            external_id = self._device_of(message.topic)
            if external_id is None or not message.payload or external_id <= after:
                continue  # an empty retained payload is a deleted device
            try:
                entries[external_id] = meta_to_device(external_id, self._decode(message.payload))
            except DocumentError as exc:
                entries[external_id] = self._rejected(message, external_id, exc)
        ordered = sorted(entries)
        chunks = [
            ordered[i : i + self.page_size] for i in range(0, len(ordered), self.page_size)
        ] or [[]]
        for number, ids in enumerate(chunks):
            items = [entries[i] for i in ids]
            yield DevicePage(
                devices=[e for e in items if isinstance(e, DeviceRecord)],
                rejected=[e for e in items if isinstance(e, RejectedRecord)],
                cursor_after={"after_id": ids[-1]} if number < len(chunks) - 1 else None,
                page_number=number,
                total=len(ordered),
            )

    def get_states(
        self, external_ids: Sequence[str]
    ) -> tuple[list[DeviceState], list[StateFailure]]:
        states: list[DeviceState] = []
        failures: list[StateFailure] = []
        topics: dict[str, tuple[str, str]] = {}
        for external_id in external_ids:
            try:
                topics[external_id] = (
                    self.layout.topic(external_id, REPORTED),
                    self.layout.topic(external_id, DESIRED),
                )
            except ValueError as exc:
                failures.append(StateFailure(external_id, "validation", str(exc)))
        retained = self._latest(self._read_retained([t for pair in topics.values() for t in pair]))
        observed_at = utc_now()
        for external_id, (reported_topic, desired_topic) in topics.items():
            try:
                rv, reported = self._state(retained.get(reported_topic), reported_topic)
                dv, desired = self._state(retained.get(desired_topic), desired_topic)
            except DocumentError as exc:
                failures.append(
                    StateFailure(external_id, "validation", f"device {external_id}: {exc}")
                )
                continue
            states.append(
                DeviceState(external_id, reported, desired, _state_version(rv, dv), observed_at)
            )
        return states, failures

    def push_desired(
        self, external_id: str, patch: JsonDict, *, expected_version: str | None
    ) -> PushResult:
        reported_topic, desired_topic = (
            self.layout.topic(external_id, REPORTED),
            self.layout.topic(external_id, DESIRED),
        )
        retained = self._latest(self._read_retained([reported_topic, desired_topic]))
        try:
            rv, _ = self._state(retained.get(reported_topic), reported_topic)
            dv, desired = self._state(retained.get(desired_topic), desired_topic)
        except DocumentError as exc:
            raise MalformedResponseError(
                f"device {external_id}: {exc}", provider=self.name, endpoint=desired_topic
            ) from exc
        current = _state_version(rv, dv)
        if expected_version is not None and expected_version != current:
            raise ConflictError(
                f"device {external_id}: state version is {current}, expected {expected_version} "
                "(reported or desired changed since it was read)",
                provider=self.name,
                endpoint=desired_topic,
            )
        merged = merge_patch(desired or {}, patch)
        conn = self._reader_connection()
        conn.wait_published(
            [
                conn.publish(
                    desired_topic, state_document(dv + 1, merged, utc_now()), qos=1, retain=True
                )
            ]
        )
        return PushResult(external_id, version=_state_version(rv, dv + 1), desired=merged)

    def drain_telemetry(
        self, *, max_messages: int, window_s: float, loss: TelemetryLoss | None = None
    ) -> Iterator[TelemetryBatch]:
        loss = loss if loss is not None else TelemetryLoss()
        self.close()  # a drain needs no read connection: do not hold one open beside the session
        receive_maximum = min(max_messages, MAX_RECEIVE_MAXIMUM) if self.protocol == "5" else None
        # the broker stops sending at its in-flight window until we ack: cut the batch there
        window = receive_maximum or self.broker_max_inflight
        batch_cap = min(max_messages, window) if window > 0 else max_messages
        reading = _CounterReading(self) if self.broker_counters else None
        before = reading.take() if reading else None  # before the session: dropped meanwhile
        conn = self.clients.mqtt(
            self.endpoint,
            self.client_id,
            protocol=self.protocol,
            persistent=True,
            session_expiry_s=self.session_expiry_s,
            manual_ack=True,
            receive_maximum=receive_maximum,
        ).open()
        session_present = conn.session_present
        try:
            expected = (loss.since or {}).get("client_id") == self.client_id
            self._log_session(session_present, expected=expected)
            # A resumed session already holds the subscription; sending it again is harmless (it
            # replaces it, and covers a changed topic_prefix) but is not waited for: see subscribe().
            conn.subscribe([self.layout.wildcard(TELEMETRY)], qos=1, wait=not session_present)
            deadline = time.monotonic() + min(window_s, self.drain_window_s)
            while time.monotonic() < deadline:
                first = conn.next_message(_until(deadline, self.idle_timeout_s))
                if first is None:
                    break  # idle: the session's queue is drained
                held = [first]
                while len(held) < batch_cap and time.monotonic() < deadline:
                    more = conn.next_message(_until(deadline, self.batch_linger_s))
                    if more is None:
                        break
                    held.append(more)
                acknowledge = _Acknowledgement(conn, held)
                messages, rejected = self._telemetry(held)
                if not messages and not rejected:  # only strays: nothing to commit
                    acknowledge()
                    continue
                yield TelemetryBatch(messages, rejected, acknowledge)
                if not acknowledge.done:
                    raise RuntimeError(
                        "drain_telemetry: acknowledge() the batch (after committing it) "
                        "before asking for the next one"
                    )
        finally:
            conn.close()  # unacknowledged messages stay with the broker and come back with DUP
        judge_loss(
            loss,
            client_id=self.client_id,
            session_present=session_present,
            before=before,
            after=reading.take() if reading else None,
        )

    def _log_session(self, present: bool, *, expected: bool) -> None:
        where = {"client_id": self.client_id, "protocol": self.protocol}
        if present:
            _log.info("telemetry_session_resumed", **where)
        elif expected:  # the sync engine reports the loss (mqtt_loss.judge_loss)
            _log.error(
                "telemetry_session_lost",
                **where,
                hint="the broker restarted without persistence or the session expired: "
                "telemetry published since the previous drain was not queued for this client",
            )
        else:
            _log.info(
                "telemetry_session_created",
                **where,
                hint="telemetry published while no session existed was not queued for this client",
            )

    def parse_device(self, payload: Any) -> DeviceRecord:
        external_id, raw = self._stored_message(payload, META)
        return meta_to_device(external_id, self._decode(raw))

    def parse_telemetry(self, payload: Any) -> TelemetryMessage:
        external_id, raw = self._stored_message(payload, TELEMETRY)
        return telemetry_message(
            external_id, payload["topic"], self._decode(raw), received_at=utc_now(), duplicate=False
        )

    def _stored_message(self, payload: Any, kind: str) -> tuple[str, bytes]:
        """(device, bytes) of a message as `_rejected` stored it (its topic and a preview that
        is the whole payload up to the preview limit, UTF-8)."""
        if not isinstance(payload, dict) or not isinstance(payload.get("topic"), str):
            raise DocumentError("a stored MQTT message needs its `topic`")
        parsed = self.layout.parse(payload["topic"])
        if parsed is None or parsed[1] != kind:
            raise DocumentError(
                f"topic {payload['topic']!r} is not a {kind} topic under this prefix"
            )
        text = payload.get("payload")
        if not isinstance(text, str) or len(text.encode()) != payload.get("bytes"):
            raise DocumentError(
                "the stored payload is a truncated or lossy preview; it cannot be replayed"
            )
        return parsed[0], text.encode()

    # -- reading retained documents -------------------------------------------------------

    def _connection(self, purpose: str) -> MqttConnection:
        # a random suffix: two reads of one integration must not take over each other's connection
        return self.clients.mqtt(
            self.endpoint,
            f"{self.client_id}-{purpose}-{secrets.token_hex(3)}",
            protocol=self.read_protocol,
            receive_maximum=MAX_RECEIVE_MAXIMUM if self.read_protocol == "5" else None,
            max_inflight_out=100,
        )

    def _reader_connection(self) -> MqttConnection:
        if self._reader is None:
            self._reader = self._connection("read").open()
        return self._reader

    def _read_retained(self, filters: Sequence[str]) -> list[mqtt.MQTTMessage]:
        if not filters:
            return []
        # QoS 0 skips a PUBACK per message (~30 % faster) but is dropped once the broker's
        # outgoing queue holds max_queued_messages (1,000 by default): safe for a known small
        # burst of exact topics only. Wildcards on v5 use QoS 1 and the Receive Maximum window.
        small = len(filters) <= SMALL_BURST and not any(_WILDCARDS & set(f) for f in filters)
        qos = 0 if small or self.read_protocol == "3.1.1" else 1
        try:
            return self._reader_connection().read_retained(filters, qos=qos)
        except ProviderError:
            self.close()  # the next call reconnects
            raise

    @staticmethod
    def _latest(messages: Sequence[mqtt.MQTTMessage]) -> dict[str, bytes]:
        return {m.topic: m.payload for m in messages}

    def _state(self, payload: bytes | None, topic: str) -> tuple[int, JsonDict | None]:
        """(version, state) of a retained document; a missing document is version 0."""
        if not payload:
            return 0, None
        try:
            return state_of(self._decode(payload))
        except DocumentError as exc:
            raise DocumentError(f"mqtt topic {topic}: {exc}") from exc

    def _decode(self, payload: bytes) -> JsonDict:
        return decode_object(payload, max_bytes=self.max_message_bytes)

    def _device_of(self, topic: str) -> str | None:
        parsed = self.layout.parse(topic)
        return parsed[0] if parsed else None

    def _rejected(
        self, message: mqtt.MQTTMessage, external_id: str | None, exc: Exception
    ) -> RejectedRecord:
        return RejectedRecord(
            external_id=external_id,
            payload={
                "topic": message.topic,
                "bytes": len(message.payload),
                "payload": payload_preview(message.payload),
                "duplicate": bool(message.dup),
            },
            error_type="validation",
            error_message=f"mqtt topic {message.topic} (device {external_id}): {exc}",
        )

    def _telemetry(
        self, held: Sequence[mqtt.MQTTMessage]
    ) -> tuple[list[TelemetryMessage], list[RejectedRecord]]:
        messages: list[TelemetryMessage] = []
        rejected: list[RejectedRecord] = []
        received_at = utc_now()
        stray = 0
        for message in held:
            parsed = self.layout.parse(message.topic)
            if parsed is None or parsed[1] != TELEMETRY:
                stray += 1  # outside our subscription (amqtt 0.12 sends such retained messages)
                continue
            external_id = parsed[0]
            try:
                document = self._decode(message.payload)
                messages.append(
                    telemetry_message(
                        external_id,
                        message.topic,
                        document,
                        received_at=received_at,
                        duplicate=bool(message.dup),
                    )
                )
            except DocumentError as exc:
                rejected.append(self._rejected(message, external_id, exc))
        if stray:
            _log.warning(
                "telemetry_stray_messages_ignored",
                count=stray,
                subscription=self.layout.wildcard(TELEMETRY),
            )
        return messages, rejected


class _CounterReading:
    """The broker's dropped-message counter (mqtt_loss), read on a clean connection of its own
    (the session's would take its telemetry). None when the broker publishes none or refuses
    the read: the drain goes on without it, and a refused read is not tried again in it."""

    def __init__(self, provider: MqttProvider) -> None:
        self.provider, self.refused = provider, False

    def take(self) -> BrokerCounters | None:
        if self.refused:
            return None
        try:
            with self.provider._connection("sys") as conn:
                found = conn.read_retained(COUNTER_TOPICS, qos=0)
        except ProviderError as exc:
            self.refused = isinstance(exc, AuthError)
            _log.warning(
                "broker_dropped_counter_unreadable",
                topic=DROPPED_TOPIC,
                error={"type": type(exc).__name__, "message": str(exc)},
                hint="set broker_counters false where an ACL denies $SYS",
            )
            return None
        counters = parse_counters({m.topic: m.payload for m in found})
        if counters is None:
            _log.warning(
                "broker_dropped_counter_missing",
                topic=DROPPED_TOPIC,
                hint="the broker has published no dropped-message counter (not Mosquitto, an ACL "
                "on $SYS, or started less than its sys_interval ago): what it drops shows only as "
                "sequence gaps; set broker_counters false on a broker that has none",
            )
        return counters


class _Acknowledgement:
    """PUBACKs every message of a batch — rejected ones too: they are recorded, so acking them
    loses nothing, and an unacked poison message would come back forever."""

    def __init__(self, conn: MqttConnection, held: Sequence[mqtt.MQTTMessage]) -> None:
        self.conn, self.held, self.done = conn, held, False

    def __call__(self) -> None:
        if self.done:
            return
        for message in self.held:
            if message.qos > 0:
                self.conn.ack(message.mid, message.qos)
        self.done = True


def _state_version(reported_version: int, desired_version: int) -> str:
    """The state's version as the contract sees it: changes when either document changes."""
    return f"{reported_version}:{desired_version}"


def _until(deadline: float, cap: float) -> float:
    return max(0.0, min(cap, deadline - time.monotonic()))


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
