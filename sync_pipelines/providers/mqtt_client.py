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
  timed out or dropped → TransientError;
- opening is retried per the connection's `RetryPolicy` (observability.retrying): transient
  failures only, each attempt a fresh paho client and its own observed CONNECT; auth and other
  refusals never (a wrong password tried again only locks accounts).

The network loop runs in paho's background thread; received messages are handed over through a
queue, and SUBACK/UNSUBACK waits are keyed by packet id.

A connection built with an `observer` (what `ProviderClients.mqtt` hands providers; see
observability.mqtt_recording) reports each broker operation to it: CONNECT until its CONNACK,
SUBSCRIBE/UNSUBSCRIBE until their SUBACK/UNSUBACK, PUBLISH at QoS >= 1 until its PUBACK — with
the broker's reason code, or the taxonomy error the operation ended with. Received messages
are not operations. Without an observer nothing is tracked (the simulator, the emulators).
"""

from __future__ import annotations

import functools
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sync_pipelines.errors import AuthError, PermanentError, ProviderError, TransientError
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.observability.retrying import SINGLE_ATTEMPT, RetryPolicy

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
#: what a retained read's SUBSCRIBE/UNSUBSCRIBE are marked with for the observer
RETAINED_READ = "retained_read"

_log = get_logger("mqtt")


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


class MqttOperation(Protocol):
    """One observed broker operation, finished exactly once (possibly on paho's thread)."""

    def finish(
        self,
        *,
        error: BaseException | None = None,
        code: int | None = None,
        at: float | None = None,
        retrying: bool = False,
        **details: Any,
    ) -> None:
        """`error`: what the operation ended with (None: it succeeded); `code`: the broker's
        reason code; `at`: the `time.perf_counter()` of the broker's answer (default: now);
        `retrying`: it failed and another attempt follows; `details`: figures about the
        operation (never a payload or a credential)."""


class MqttObserver(Protocol):
    """Told of every broker operation of a connection, before its packet is sent."""

    def begin(
        self, connection: MqttConnection, packet: str, topics: Sequence[str], **details: Any
    ) -> MqttOperation:
        """`details` may carry `attempt` (1-based, CONNECT retries) besides figures."""


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
        observer: MqttObserver | None = None,
        retry_policy: RetryPolicy | None = None,
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
        self._observer = observer
        self._awaiting: _Awaiting | _NotAwaiting = _Awaiting() if observer else _NOT_AWAITING
        self._retry = retry_policy or SINGLE_ATTEMPT
        self._manual_ack = manual_ack
        self._max_inflight_out = max_inflight_out
        self._cond = threading.Condition()
        self._open = False
        self._fresh_client()

    def _fresh_client(self) -> None:
        """A new paho client and connection state: each CONNECT attempt starts from scratch
        (a paho client that failed to connect is not reused)."""
        endpoint = self.endpoint
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            # 3.1.1: the session flag lives on the client; v5 takes clean_start at connect time
            clean_session=None if self.protocol == "5" else not self.persistent,
            protocol=PROTOCOLS[self.protocol],
            reconnect_on_failure=False,
            manual_ack=self._manual_ack,
        )
        if endpoint.username:
            self._client.username_pw_set(endpoint.username, endpoint.password)
        self._client.max_inflight_messages_set(self._max_inflight_out)
        self._client.connect_timeout = endpoint.timeout_s
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_ack
        self._client.on_unsubscribe = self._on_ack
        self._client.on_publish = self._on_publish
        self.session_present = False
        self._messages: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._connack = threading.Event()
        self._connack_reason: Any = None
        self._connack_at: float | None = None
        self._acks: dict[int, list[Any]] = {}
        self._publish_failures: dict[int, str] = {}
        self._lost_reason: str | None = None
        self._closing = False

    # -- lifecycle ------------------------------------------------------------------------

    def open(self) -> MqttConnection:
        """CONNECT, retried per the connection's `RetryPolicy` (refused, unreachable, no
        CONNACK, "server unavailable"); auth and other refusals are final. Each attempt is
        one observed CONNECT; one that another attempt follows finishes as `retrying`."""
        clean = "clean_start" if self.protocol == "5" else "clean_session"
        held: list[Callable[..., None]] = []  # how to finish the last failed attempt

        def attempt(number: int) -> None:
            if number > 1:
                self._fresh_client()
            operation = self._begin(
                "CONNECT",
                (),
                attempt=number,
                **{clean: not self.persistent},
                keepalive_s=self.endpoint.keepalive_s,
            )
            try:
                self._connect()
            except BaseException as exc:
                held.append(
                    functools.partial(
                        operation.finish,
                        error=exc,
                        code=_code(self._connack_reason),
                        at=self._connack_at,
                    )
                )
                raise
            operation.finish(
                code=_code(self._connack_reason),
                at=self._connack_at,
                session_present=self.session_present,
            )

        def before_retry(state: Any) -> None:
            held.pop()(retrying=True, retry_in_s=round(state.upcoming_sleep, 3))

        try:
            self._retry.call(attempt, before_sleep=before_retry)
        finally:
            if held:  # the last attempt failed
                held.pop()()
        self._open = True
        return self

    def _connect(self) -> None:
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
        # Small request/ack exchanges (SUBSCRIBE, UNSUBSCRIBE) otherwise wait out Nagle's
        # algorithm against the broker's delayed ACK: ~40 ms each on loopback.
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
        self._subscribe(filters, qos, wait=wait)

    def unsubscribe(self, filters: Sequence[str]) -> None:
        self._unsubscribe(filters)

    def _subscribe(self, filters: Sequence[str], qos: int, *, wait: bool, **details: Any) -> None:
        for chunk in _chunks(filters):
            started = time.perf_counter()
            operation = self._begin("SUBSCRIBE", chunk, qos=qos, **details)
            try:
                _, mid = self._client.subscribe([(f, qos) for f in chunk])
            except BaseException as exc:  # an invalid filter (ValueError)
                operation.finish(error=exc)
                raise
            if mid is None:
                error = self._not_connected()
                operation.finish(error=error)
                raise error
            self._awaiting.expect(
                mid,
                operation,
                started,
                lambda codes, chunk=chunk: self._suback_outcome(chunk, codes),
            )
            if not wait:
                continue
            codes = self._wait_ack(mid, f"SUBACK for {chunk[0]}")
            refused = [f for f, rc in zip(chunk, codes, strict=False) if rc.is_failure]
            if refused:
                raise self._refused_subscription(refused)

    def _unsubscribe(self, filters: Sequence[str], **details: Any) -> None:
        for chunk in _chunks(filters):
            started = time.perf_counter()
            operation = self._begin("UNSUBSCRIBE", chunk, **details)
            try:
                _, mid = self._client.unsubscribe(list(chunk))
            except BaseException as exc:
                operation.finish(error=exc)
                raise
            if mid is None:
                error = self._not_connected()
                operation.finish(error=error)
                raise error
            self._awaiting.expect(mid, operation, started, self._unsuback_outcome)
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
        self._subscribe(filters, qos, wait=True, purpose=RETAINED_READ)
        self._unsubscribe(filters, purpose=RETAINED_READ)
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
        """Queue a publish. At QoS >= 1 it is an observed operation until its PUBACK (the
        observer sees the payload's size, never its body); QoS 0 has no answer to wait for."""
        if qos == 0 or self._observer is None:
            return self._client.publish(topic, payload, qos=qos, retain=retain)
        started = time.perf_counter()
        operation = self._begin(
            "PUBLISH", (topic,), qos=qos, retained=retain, payload_bytes=_size(payload)
        )
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
        except BaseException as exc:  # an invalid topic or QoS, an oversized payload
            operation.finish(error=exc)
            raise
        if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
            self._awaiting.expect(info.mid, operation, started, self._puback_outcome)
        else:
            operation.finish(error=self._publish_error(info.rc), packet_id=info.mid)
        return info

    def wait_published(self, infos: Iterable[mqtt.MQTTMessageInfo]) -> None:
        """Wait for the PUBACK of each QoS 1 publish (each within the timeout, in order); raises if one
        is refused or never acknowledged."""
        for info in infos:
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
                raise self._publish_error(info.rc)
            info.wait_for_publish(self.endpoint.timeout_s)
            if not info.is_published():
                reason = self._lost_reason or f"no PUBACK within {self.endpoint.timeout_s:g} s"
                error = self._error(TransientError, f"publish not acknowledged: {reason}")
                self._awaiting.abandon(info.mid, error)
                raise error
            failure = self._publish_failures.pop(info.mid, None)
            if failure:
                raise self._refused(failure, "publish")

    # -- paho callbacks (network thread) --------------------------------------------------

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: Any, _props: Any) -> None:
        self._connack_at = time.perf_counter()
        self.session_present = bool(flags.session_present)
        self._connack_reason = reason
        self._connack.set()

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._lost_reason = f"{reason}"
        self._connack.set()  # a connection dropped before its CONNACK
        self._messages.put(_LOST)
        with self._cond:
            self._cond.notify_all()
        self._abandon_unanswered(f"{reason}")

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._messages.put(message)

    def _on_ack(self, _c: Any, _u: Any, mid: int, reason_codes: list[Any], _props: Any) -> None:
        self._awaiting.answer(mid, reason_codes)  # before the waiter wakes: its row is in first
        with self._cond:
            self._acks[mid] = reason_codes
            self._cond.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _props: Any) -> None:
        if reason is not None and reason.is_failure:
            self._publish_failures[mid] = str(reason)
        # paho calls this before it marks the message published: wait_published returns after
        self._awaiting.answer(mid, reason)

    # -- internals ------------------------------------------------------------------------

    def _wait_ack(self, mid: int | None, what: str) -> list[Any]:
        if mid is None:
            raise self._not_connected()
        deadline = time.monotonic() + self.endpoint.timeout_s
        with self._cond:
            while mid not in self._acks:
                remaining = deadline - time.monotonic()
                error = None
                if self._lost_reason is not None:
                    error = self._error(
                        TransientError, f"connection lost waiting for {what}: {self._lost_reason}"
                    )
                elif remaining <= 0:
                    error = self._error(
                        TransientError, f"no {what} within {self.endpoint.timeout_s:g} s"
                    )
                if error is not None:
                    self._awaiting.abandon(mid, error)
                    raise error
                self._cond.wait(remaining)
            return self._acks.pop(mid)

    def _shutdown(self) -> None:
        # DISCONNECT goes out after every queued packet, then paho closes the socket and its
        # loop ends; without it a connection that never got its CONNACK would stay open.
        self._closing = True
        if self._lost_reason is None:
            self._client.disconnect()
        self._client.loop_stop()
        self._abandon_unanswered(self._lost_reason or "closed")

    # -- observed operations ----------------------------------------------------------------

    def _begin(self, packet: str, topics: Sequence[str], **details: Any) -> MqttOperation:
        if self._observer is None:
            return _NOT_OBSERVED
        return self._observer.begin(self, packet, topics, **details)

    def _abandon_unanswered(self, reason: str) -> None:
        """Finish the operations still waiting for an answer that will not come now."""
        how = "closed" if self._closing else "lost"
        self._awaiting.abandon_all(
            self._error(TransientError, f"connection {how} before the broker answered: {reason}")
        )

    def _suback_outcome(self, filters: Sequence[str], codes: Sequence[Any]) -> _Outcome:
        refused = [f for f, rc in zip(filters, codes, strict=False) if rc.is_failure]
        error = self._refused_subscription(refused) if refused else None
        return error, _highest(codes), {"refused": len(refused)} if refused else {}

    def _unsuback_outcome(self, codes: Sequence[Any]) -> _Outcome:
        # MQTT 3.1.1 UNSUBACKs carry no reason codes; v5's do, one per filter
        refused = [rc for rc in codes if rc.is_failure]
        error = self._refused(str(refused[0]), "unsubscribe") if refused else None
        return error, _highest(codes), {"refused": len(refused)} if refused else {}

    def _puback_outcome(self, reason: Any) -> _Outcome:
        failed = reason is not None and reason.is_failure
        return (self._refused(str(reason), "publish") if failed else None), _code(reason), {}

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

    def _refused_subscription(self, refused: Sequence[str]) -> ProviderError:
        return self._error(
            AuthError,
            f"broker refused the subscription to {', '.join(refused[:3])} (check this user's ACL)",
        )

    def _refused(self, reason: str, what: str) -> ProviderError:
        """A failure reason code in an acknowledgement (MQTT v5; 3.1.1 SUBACKs say 0x80 only)."""
        cls = AuthError if reason in _AUTH_REASONS else PermanentError
        return self._error(cls, f"broker refused the {what}: {reason}")

    def _publish_error(self, rc: int) -> ProviderError:
        return self._error(TransientError, f"publish failed: {mqtt.error_string(rc)}")

    def _not_connected(self) -> ProviderError:
        return self._error(
            TransientError, f"not connected ({self._lost_reason or 'no connection'})"
        )

    def _error(self, cls: type[ProviderError], message: str) -> ProviderError:
        return cls(message, provider=self.endpoint.provider, endpoint=self.endpoint.address)


#: what an acknowledgement means for its operation: (error or None, reason code, details)
_Outcome = tuple[ProviderError | None, int | None, dict[str, Any]]


class _Awaiting:
    """Observed operations waiting for their acknowledgement, by packet id. Thread-safe.

    Answers arrive on paho's network thread and can beat the caller: paho sends the packet before
    it returns the packet id. An early answer is held until `expect` claims it; one older than the
    operation (a late answer to an abandoned use of the id, a QoS 0 publish's) is ignored.
    """

    _EARLY_LIMIT = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[MqttOperation, Callable[[Any], _Outcome]]] = {}
        self._early: dict[int, tuple[float, Any]] = {}

    def expect(
        self,
        mid: int,
        operation: MqttOperation,
        started: float,
        outcome: Callable[[Any], _Outcome],
    ) -> None:
        with self._lock:
            early = self._early.pop(mid, None)
            if early is None or early[0] < started:
                self._waiting[mid] = (operation, outcome)
                return
        self._finish(mid, operation, outcome, *early)

    def answer(self, mid: int, answer: Any) -> None:
        at = time.perf_counter()
        with self._lock:
            waiting = self._waiting.pop(mid, None)
            if waiting is None:
                self._early[mid] = (at, answer)
                if len(self._early) > self._EARLY_LIMIT:
                    del self._early[next(iter(self._early))]
                return
        self._finish(mid, *waiting, at, answer)

    def abandon(self, mid: int, error: ProviderError) -> None:
        with self._lock:
            waiting = self._waiting.pop(mid, None)
        if waiting is not None:
            _finish_safely(waiting[0], error=error, packet_id=mid)

    def abandon_all(self, error: ProviderError) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, {}
            self._early.clear()
        for mid, (operation, _) in waiting.items():
            _finish_safely(operation, error=error, packet_id=mid)

    @staticmethod
    def _finish(
        mid: int,
        operation: MqttOperation,
        outcome: Callable[[Any], _Outcome],
        at: float,
        answer: Any,
    ) -> None:
        try:
            error, code, details = outcome(answer)
        except Exception as exc:  # never let recording break paho's network loop
            _log.warning("mqtt_outcome_failed", error={"type": type(exc).__name__})
            error, code, details = None, None, {}
        _finish_safely(operation, error=error, code=code, at=at, packet_id=mid, **details)


class _NotAwaiting:
    """The unobserved connection's `_Awaiting`: tracks nothing."""

    def expect(self, *_: Any) -> None:
        pass

    def answer(self, *_: Any) -> None:
        pass

    def abandon(self, *_: Any) -> None:
        pass

    def abandon_all(self, *_: Any) -> None:
        pass


class _NotObserved:
    def finish(self, **_: Any) -> None:
        pass


_NOT_AWAITING = _NotAwaiting()
_NOT_OBSERVED = _NotObserved()


def _finish_safely(operation: MqttOperation, **outcome: Any) -> None:
    # runs on paho's network thread too, where an exception would stop the loop
    try:
        operation.finish(**outcome)
    except Exception as exc:
        _log.warning(
            "mqtt_operation_record_failed",
            error={"type": type(exc).__name__, "message": str(exc)},
        )


def _code(reason: Any) -> int | None:
    return None if reason is None else int(reason.value)


def _highest(codes: Sequence[Any]) -> int | None:
    """One status for a multi-filter ack: its highest reason code (a refusal, when any)."""
    return max((int(rc.value) for rc in codes), default=None)


def _size(payload: Any) -> int:
    if payload is None:
        return 0
    if isinstance(payload, bytes | bytearray):
        return len(payload)
    return len(str(payload).encode("utf-8"))


def _chunks(filters: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(filters), _FILTERS_PER_PACKET):
        yield filters[start : start + _FILTERS_PER_PACKET]
