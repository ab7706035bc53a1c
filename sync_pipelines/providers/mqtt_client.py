"""One paho-mqtt 2.x connection, opened and closed deliberately, with broker answers mapped to
the error taxonomy (PROVIDERS.md §4.2).

Rules this module enforces so callers cannot get them wrong:
- `CallbackAPIVersion.VERSION2` always;
- a persistent session is persistent on *every* connect: `clean_session=False` on 3.1.1, and on
  v5 `clean_start=False` plus a SessionExpiryInterval — never paho's default
  MQTT_CLEAN_START_FIRST_ONLY, which wipes the session on the first connect of each process,
  i.e. on every batch run; without an expiry a v5 session dies at disconnect;
- no automatic reconnect: after a reconnect the broker redelivers unacknowledged messages, and
  acknowledging by packet id across connections could ack the wrong message; a lost
  connection surfaces as TransientError instead;
- CONNACK "bad user name or password" / "not authorized" → AuthError; refused, unreachable,
  timed out or dropped → TransientError.

The network loop runs in paho's background thread; received messages are handed over through a
queue, and SUBACK/UNSUBACK waits are keyed by packet id.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sync_pipelines.errors import AuthError, PermanentError, ProviderError, TransientError

PROTOCOLS = {"3.1.1": mqtt.MQTTv311, "5": mqtt.MQTTv5}
#: the largest Receive Maximum MQTT v5 allows
MAX_RECEIVE_MAXIMUM = 65535
_AUTH_REASONS = frozenset(
    {"Bad user name or password", "Not authorized", "Bad authentication method"}
)
_TRANSIENT_REASONS = frozenset(
    {"Server unavailable", "Server busy", "Connection rate exceeded", "Quota exceeded"}
)
#: filters per SUBSCRIBE/UNSUBSCRIBE packet (keeps packets small on any broker)
_FILTERS_PER_PACKET = 500
_WILDCARD_CHARS = frozenset("+#")
_LOST = object()  # queued after the last message when the connection drops


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    """Where the broker is and who we are to it. `password` is a secret: never log it."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0
    keepalive_s: int = 60
    provider: str = "mqtt"

    @property
    def address(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


class MqttConnection:
    """A connected paho client. Use as a context manager, or `open()` / `close()`."""

    def __init__(
        self,
        endpoint: BrokerEndpoint,
        client_id: str,
        *,
        protocol: str = "3.1.1",
        persistent: bool = False,
        session_expiry_s: int = 0,
        manual_ack: bool = False,
        receive_maximum: int | None = None,
        max_inflight_out: int = 20,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(
                f"MQTT protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}"
            )
        self.endpoint = endpoint
        self.client_id = client_id
        self.protocol = protocol
        self.persistent = persistent
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.session_present = False
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            # 3.1.1: the session flag lives on the client; v5 takes clean_start at connect time
            clean_session=None if protocol == "5" else not persistent,
            protocol=PROTOCOLS[protocol],
            reconnect_on_failure=False,
            manual_ack=manual_ack,
        )
        if endpoint.username:
            self._client.username_pw_set(endpoint.username, endpoint.password)
        self._client.max_inflight_messages_set(max_inflight_out)
        self._client.connect_timeout = endpoint.timeout_s
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_ack
        self._client.on_unsubscribe = self._on_ack
        self._client.on_publish = self._on_publish
        self._messages: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._connack = threading.Event()
        self._connack_reason: Any = None
        self._acks: dict[int, list[Any]] = {}
        self._publish_failures: dict[int, str] = {}
        self._cond = threading.Condition()
        self._lost_reason: str | None = None
        self._open = False

    # -- lifecycle ------------------------------------------------------------------------

    def open(self) -> MqttConnection:
        ep = self.endpoint
        kwargs: dict[str, Any] = {}
        if self.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.session_expiry_s if self.persistent else 0
            if self.receive_maximum:
                props.ReceiveMaximum = min(self.receive_maximum, MAX_RECEIVE_MAXIMUM)
            kwargs = {"clean_start": not self.persistent, "properties": props}
        try:
            self._client.connect(ep.host, ep.port, keepalive=ep.keepalive_s, **kwargs)
        except OSError as exc:
            raise self._error(
                TransientError, f"cannot reach the broker: {type(exc).__name__}: {exc}"
            ) from exc
        self._client.loop_start()
        if not self._connack.wait(ep.timeout_s):
            self._shutdown()
            raise self._error(
                TransientError,
                f"no CONNACK within {ep.timeout_s:g} s (is this an MQTT {self.protocol} broker?)",
            )
        reason = self._connack_reason
        if reason is None or reason.is_failure:
            self._shutdown()
            raise self._connack_error(reason)
        self._open = True
        return self

    def close(self) -> None:
        """Disconnect cleanly (a persistent session stays on the broker) and stop the loop.

        Packets queued before the DISCONNECT (acks, publishes) are sent first, in order."""
        if self._open:
            self._open = False
            self._shutdown()

    def __enter__(self) -> MqttConnection:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- subscriptions --------------------------------------------------------------------

    def subscribe(self, filters: Sequence[str], qos: int, *, wait: bool = True) -> None:
        """Subscribe and wait for the SUBACK; a refused filter raises (usually an ACL).

        `wait=False` sends the SUBSCRIBE only: a broker that redelivers a resumed session's
        messages one at a time, each awaiting its PUBACK before reading our next packet (amqtt),
        would otherwise never answer while we hold those messages unacknowledged."""
        for chunk in _chunks(filters):
            _, mid = self._client.subscribe([(f, qos) for f in chunk])
            if not wait:
                continue
            codes = self._wait_ack(mid, f"SUBACK for {chunk[0]}")
            refused = [f for f, rc in zip(chunk, codes, strict=False) if rc.is_failure]
            if refused:
                raise self._error(
                    AuthError,
                    f"broker refused the subscription to {', '.join(refused[:3])} "
                    "(check this user's ACL)",
                )

    def unsubscribe(self, filters: Sequence[str]) -> None:
        for chunk in _chunks(filters):
            _, mid = self._client.unsubscribe(list(chunk))
            self._wait_ack(mid, f"UNSUBACK for {chunk[0]}")

    def read_retained(self, filters: Sequence[str], qos: int) -> list[mqtt.MQTTMessage]:
        """The retained messages matching `filters`, without waiting for silence.

        The broker sends a subscription's retained messages while it handles the SUBSCRIBE,
        before it reads our next packet; so once the UNSUBACK that follows is in, every retained
        message is already in the queue (verified on Mosquitto 2.0 and amqtt 0.12). The
        unsubscribe also keeps the connection from collecting live updates afterwards. Messages
        outside `filters` are dropped: amqtt 0.12 sends every connecting client the retained
        messages of *any* filter ever subscribed on the broker.
        """
        self.subscribe(filters, qos)
        self.unsubscribe(filters)
        exact = {f for f in filters if not _WILDCARD_CHARS & set(f)}
        wildcards = [f for f in filters if f not in exact]
        received = []
        while (message := self.next_message(0)) is not None:
            topic = message.topic
            if topic in exact or any(mqtt.topic_matches_sub(w, topic) for w in wildcards):
                received.append(message)
        return received

    # -- messages -------------------------------------------------------------------------

    def next_message(self, timeout_s: float) -> mqtt.MQTTMessage | None:
        """The next received message, None after `timeout_s` without one; TransientError once the
        connection is lost and every message received before that has been taken."""
        try:
            item = (
                self._messages.get(timeout=timeout_s)
                if timeout_s > 0
                else self._messages.get_nowait()
            )
        except queue.Empty:
            return None
        if item is _LOST:
            self._messages.put(_LOST)
            raise self._error(TransientError, f"connection lost: {self._lost_reason}")
        return item

    def ack(self, mid: int, qos: int) -> bool:
        """PUBACK a message received with manual_ack; False if the connection is gone (the broker
        will redeliver it, which the store's dedupe absorbs)."""
        return self._client.ack(mid, qos) == mqtt.MQTT_ERR_SUCCESS

    def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        return self._client.publish(topic, payload, qos=qos, retain=retain)

    def wait_published(self, infos: Iterable[mqtt.MQTTMessageInfo]) -> None:
        """Wait for the PUBACK of each QoS 1 publish (each within the timeout, in order); raises if one
        is refused or never acknowledged."""
        for info in infos:
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
                raise self._error(TransientError, f"publish failed: {mqtt.error_string(info.rc)}")
            info.wait_for_publish(self.endpoint.timeout_s)
            if not info.is_published():
                reason = self._lost_reason or f"no PUBACK within {self.endpoint.timeout_s:g} s"
                raise self._error(TransientError, f"publish not acknowledged: {reason}")
            failure = self._publish_failures.pop(info.mid, None)
            if failure:
                raise self._error(
                    AuthError if failure in _AUTH_REASONS else PermanentError,
                    f"broker refused the publish: {failure}",
                )

    # -- paho callbacks (network thread) --------------------------------------------------

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: Any, _props: Any) -> None:
        self.session_present = bool(flags.session_present)
        self._connack_reason = reason
        self._connack.set()

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._lost_reason = f"{reason}"
        self._connack.set()  # a connection dropped before its CONNACK
        self._messages.put(_LOST)
        with self._cond:
            self._cond.notify_all()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._messages.put(message)

    def _on_ack(self, _c: Any, _u: Any, mid: int, reason_codes: list[Any], _props: Any) -> None:
        with self._cond:
            self._acks[mid] = reason_codes
            self._cond.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _props: Any) -> None:
        if reason is not None and reason.is_failure:
            self._publish_failures[mid] = str(reason)

    # -- internals ------------------------------------------------------------------------

    def _wait_ack(self, mid: int | None, what: str) -> list[Any]:
        if mid is None:
            raise self._error(
                TransientError, f"not connected ({self._lost_reason or 'no connection'})"
            )
        deadline = time.monotonic() + self.endpoint.timeout_s
        with self._cond:
            while mid not in self._acks:
                remaining = deadline - time.monotonic()
                if self._lost_reason is not None:
                    raise self._error(
                        TransientError, f"connection lost waiting for {what}: {self._lost_reason}"
                    )
                if remaining <= 0:
                    raise self._error(
                        TransientError, f"no {what} within {self.endpoint.timeout_s:g} s"
                    )
                self._cond.wait(remaining)
            return self._acks.pop(mid)

    def _shutdown(self) -> None:
        # DISCONNECT goes out after every queued packet, then paho closes the socket and its
        # loop ends; without it a connection that never got its CONNACK would stay open.
        if self._lost_reason is None:
            self._client.disconnect()
        self._client.loop_stop()

    def _connack_error(self, reason: Any) -> ProviderError:
        text = (
            str(reason)
            if reason is not None
            else f"connection closed before CONNACK ({self._lost_reason})"
        )
        if text in _AUTH_REASONS:
            return self._error(
                AuthError,
                f"authentication failed: broker answered CONNACK {text!r} for user "
                f"{self.endpoint.username!r}",
            )
        if reason is None or text in _TRANSIENT_REASONS:
            return self._error(TransientError, f"broker refused the connection: {text}")
        return self._error(
            PermanentError,
            f"broker refused the connection: {text} (client id {self.client_id!r}, "
            f"MQTT {self.protocol})",
        )

    def _error(self, cls: type[ProviderError], message: str) -> ProviderError:
        return cls(message, provider=self.endpoint.provider, endpoint=self.endpoint.address)


def _chunks(filters: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(filters), _FILTERS_PER_PACKET):
        yield filters[start : start + _FILTERS_PER_PACKET]
