"""Events apply in the provider's order, not in arrival order: a shuffled stream with duplicates
ends in exactly the store the ordered stream gives, for every provider's event shapes (Azure
connection sequenceNumbers and DeviceCreated/Deleted, AWS registry versionNumbers and lifecycle
versions, Golioth readings through the webhook inbox; MQTT readings with their per-device `seq`
through the telemetry drain's commit, cut into batches anywhere), and a processor whose lease was
taken over writes nothing."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import FencedError
from sync_pipelines.observability.activity import TELEMETRY_IMPORT
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.providers.contract import TelemetryBatch, TelemetryMessage
from sync_pipelines.store.database import dump_json, load_json, parse_timestamp
from sync_pipelines.store.devices import get_device
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.sync_state import sync_log_rows
from sync_pipelines.store.telemetry import (
    TelemetryRow,
    gap_rows,
    insert_telemetry,
    last_sequences,
    telemetry_rows,
)
from sync_pipelines.store.webhook_events import WebhookEvent, insert_event, list_events
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines.sync.stream_lease import LEASE_HEARTBEAT_ENV, LEASE_TTL_ENV
from sync_pipelines.sync.sync_run import SyncRun
from sync_pipelines.sync.telemetry import STREAM as TELEMETRY_STREAM
from sync_pipelines.sync.telemetry import _commit as commit_telemetry_batch
from sync_pipelines.sync.webhook_processing import process_webhook_events
from sync_pipelines_tests.webhook_support import (
    azure_event,
    insert_pending,
    register_webhook_integration,
)

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
DEVICES = ("d1", "d2", "d3")
ACTIONS = {
    "azure_iot": ("create", "delete", "connect", "disconnect", "reading"),
    "aws_iot": ("create", "delete", "connect", "disconnect", "reading"),
    "golioth": ("reading",),
    "mqtt": ("reading",),
}


@dataclass(frozen=True)
class Sent:
    """One event as the provider sent it: (inbox event id, type, device, payload)."""

    event_id: str
    event_type: str
    device: str
    payload: Any


def provider_stream(provider: str, steps: list[tuple[str, str, int]]) -> list[Sent]:
    """The events a provider sends for `steps` (device, action, choice), in the order they
    happened: each device's keys (times, sequence and version numbers) increase."""
    sent: list[Sent] = []
    thing: dict[str, tuple[str, int] | None] = {}  # AWS: thingId and versionNumber, while it exists
    connections: dict[str, int] = {}
    for n, (device, action, choice) in enumerate(steps):
        at = T0 + timedelta(seconds=n)
        if provider == "azure_iot":
            sent.append(_azure(device, action, choice, at, sequence=n + 1))
        elif provider == "aws_iot":
            sent.append(_aws(device, action, choice, at, thing, connections))
        else:
            sent.append(_golioth(device, choice, at))
    return sent


def _azure(device: str, action: str, choice: int, at: datetime, *, sequence: int) -> Sent:
    time_text = at.isoformat().replace("+00:00", "Z")
    kind, data = {
        "create": ("DeviceCreated", {"twin": _twin(device, choice)}),
        "delete": ("DeviceDeleted", {"twin": _twin(device, choice)}),
        "connect": ("DeviceConnected", {}),
        "disconnect": ("DeviceDisconnected", {}),
        "reading": ("DeviceTelemetry", {"body": {"temp": choice}}),
    }[action]
    if action in ("connect", "disconnect"):
        # the real shape: 64 hex digits, compared as strings
        data["deviceConnectionStateEventInfo"] = {"sequenceNumber": f"{sequence:064X}"}
    event = azure_event(kind, device, data, event_time=time_text)
    return Sent(event["id"], event["eventType"], device, event)


def _twin(device: str, choice: int) -> dict[str, Any]:
    return {
        "deviceId": device,
        "version": choice + 1,
        "status": ("enabled", "disabled")[choice % 2],
        "connectionState": ("Connected", "Disconnected")[choice // 2 % 2],
        "tags": {"site": f"s{choice % 3}"},
    }


def _aws(device, action, choice, at, thing, connections) -> Sent:
    ms = int(at.timestamp() * 1000)
    if action in ("create", "delete"):
        current = thing.get(device)
        if action == "create":
            operation = "UPDATED" if current else "CREATED"
            thing_id, version = current or (str(uuid.uuid4()), 0)
            thing[device] = (thing_id, version + 1)
            thing_id, version = thing[device]
        else:
            operation = "DELETED"
            thing_id, version = current or (str(uuid.uuid4()), 1)
            thing[device] = None  # created again later: a new thingId, versions from 1
        payload = {
            "eventType": "THING_EVENT",
            "eventId": str(uuid.uuid4()),
            "timestamp": ms,
            "operation": operation,
            "accountId": "123456789012",
            "thingId": thing_id,
            "thingName": device,
            "versionNumber": version,
            "thingTypeName": None,
            "attributes": {"site": f"s{choice % 3}", "tags": f"t{choice % 2}"},
        }
        return Sent(payload["eventId"], "THING_EVENT", device, payload)
    if action in ("connect", "disconnect"):
        if action == "connect":
            connections[device] = connections.get(device, 0) + 1
        event_type = "connected" if action == "connect" else "disconnected"
        payload = {
            "clientId": device,
            "timestamp": ms,
            "eventType": event_type,
            "sessionIdentifier": str(uuid.uuid4()),
            "principalIdentifier": "cert",
            "versionNumber": connections.get(device, 0),
        }
        return Sent(f"evt-{uuid.uuid4().hex}", event_type, device, payload)
    payload = {"thingName": device, "topic": f"dt/{device}/env", "temp": choice, "timestamp": ms}
    return Sent(f"evt-{uuid.uuid4().hex}", "aws.iot.rule", device, payload)


def _golioth(device: str, choice: int, at: datetime) -> Sent:
    envelope = {
        "data": {"temp": choice},
        "device_id": device,
        "project_id": "p",
        "timestamp": {"seconds": str(int(at.timestamp())), "nanos": 0},
    }
    return Sent(f"evt-{uuid.uuid4().hex}", "io.golioth.data.v1/.s/env", device, envelope)


def deliver(store, integ, sent: list[Sent]) -> None:
    """Into the inbox in this order. A repeated event id is the inbox's duplicate; a copy whose
    id was changed (`re-id:`, a relay's retry) reaches processing and must change nothing."""
    for n, event in enumerate(sent):
        row = WebhookEvent(
            id=str(uuid.uuid4()),
            organization_id=integ.organization_id,
            integration_id=integ.integration_id,
            provider=integ.provider,
            event_id=event.event_id,
            event_type=event.event_type,
            external_id=event.device,
            payload=event.payload,
            headers={},
            delivery_id=str(uuid.uuid4()),
            received_at=T0 + timedelta(milliseconds=n),
        )
        with store.transaction() as conn:
            insert_event(conn, row)


def shuffled_with_duplicates(sent: list[Sent], rng: random.Random) -> list[Sent]:
    copies = [*sent]
    for event in rng.sample(sent, k=len(sent) // 2):
        copies.append(event)  # redelivered with its id: the inbox drops it
        if not event.event_type.startswith(
            ("io.golioth", "aws.iot.rule", "Microsoft.Devices.DeviceTelemetry")
        ):
            copies.append(Sent(f"re-id:{uuid.uuid4().hex}", *_rest(event)))
    rng.shuffle(copies)
    return copies


def _rest(event: Sent) -> tuple[str, str, Any]:
    return event.event_type, event.device, event.payload


_ORDER_COLUMNS = (
    "status",
    "registry_generation",
    "registry_version",
    "registry_at",
    "connection_sequence",
    "connection_at",
    "connection_status",
    "last_seen_at",
)
_ACTIVE_COLUMNS = ("name", "enabled", "tags", "attributes")


def store_outcome(store, integ) -> dict[str, Any]:
    """What the events left: each device's state and order keys, and the telemetry."""
    devices = {}
    with store.connect() as conn:
        for device in DEVICES:
            row = get_device(conn, integ.organization_id, integ.integration_id, device)
            if row is None:
                devices[device] = None
                continue
            deleted = row["deleted_at"] is not None
            seen = {c: _plain(c, row[c]) for c in _ORDER_COLUMNS}
            if not deleted:  # a tombstone knows nothing of the device but that it is gone
                seen.update({c: _plain(c, row[c]) for c in _ACTIVE_COLUMNS})
            devices[device] = {"deleted": deleted, **seen}
        readings = sorted(
            (r["external_id"], str(load_json(r["payload"])))
            for r in telemetry_rows(conn, integ.organization_id, integ.integration_id)
        )
        failed = [
            e.error_message
            for e in list_events(conn, integ.organization_id, integ.integration_id, "failed")
        ]
    return {"devices": devices, "readings": readings, "failed": failed}


def _plain(column: str, value: Any) -> Any:
    """A column's value as both stores give it back (SQLite: text)."""
    if column.endswith("_at"):
        parsed = parse_timestamp(value)
        return parsed.astimezone(UTC) if parsed else None
    if column in ("tags", "attributes") and isinstance(value, str):
        return load_json(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    return value


def ordered_and_shuffled(store, monkeypatch, open_session, provider, steps, seed):
    """Process the stream in order into one integration, shuffled with duplicates into another."""
    sent = provider_stream(provider, steps)
    outcomes = []
    for arrival in (sent, shuffled_with_duplicates(sent, random.Random(seed))):
        integration_id = f"{provider[:3]}-{uuid.uuid4().hex[:8]}"
        integ, _ = register_webhook_integration(
            store, monkeypatch, provider=provider, integration_id=integration_id
        )
        deliver(store, integ, arrival)
        with open_session(store, integration_id) as session:
            process_webhook_events(session, limit=1000)
        outcomes.append(store_outcome(store, integ))
    return outcomes


def _steps(provider: str):
    return st.lists(
        st.tuples(st.sampled_from(DEVICES), st.sampled_from(ACTIONS[provider]), st.integers(0, 5)),
        min_size=1,
        max_size=14,
    )


@pytest.mark.parametrize("provider", ["azure_iot", "aws_iot", "golioth"])
def test_a_shuffled_duplicated_stream_ends_in_the_store_the_ordered_stream_gives(
    sqlite_store, monkeypatch, open_session, provider
):
    @settings(
        max_examples=int(os.environ.get("EVENT_ORDER_EXAMPLES", "30")),  # more for a deep run
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(steps=_steps(provider), seed=st.integers(0, 2**32 - 1))
    def check(steps, seed):
        ordered, shuffled = ordered_and_shuffled(
            sqlite_store, monkeypatch, open_session, provider, steps, seed
        )
        assert ordered["failed"] == [] and shuffled["failed"] == []
        assert shuffled == ordered

    check()


# -- MQTT: readings with a per-device `seq`, drained in batches -------------------------------------


def mqtt_stream(steps: list[tuple[str, str, int]]) -> list[TelemetryMessage]:
    """The readings the devices publish for `steps`, in order: each device's `seq` counts up
    (a choice of 0 skips one: a reading the broker dropped, which must show as a gap)."""
    sent, next_seq = [], dict.fromkeys(DEVICES, 0)
    for n, (device, _action, choice) in enumerate(steps):
        seq = next_seq[device] + (choice == 0)
        next_seq[device] = seq + 1
        at = T0 + timedelta(seconds=n)
        payload = {"seq": seq, "ts": at.isoformat(), "temp": choice}
        sent.append(
            TelemetryMessage(
                external_id=device,
                topic=f"devices/{device}/telemetry",
                payload=payload,
                received_at=at,
                sequence=seq,
                device_time=at,
            )
        )
    return sent


def mqtt_arrival(sent: list[TelemetryMessage], rng: random.Random) -> list[TelemetryMessage]:
    """Out of order (a device flushing a buffer late) and some twice (a QoS 1 redelivery)."""
    copies = [*sent, *(replace(m, duplicate=True) for m in rng.sample(sent, k=len(sent) // 2))]
    rng.shuffle(copies)
    return copies


def drain_in_batches(store, open_session, integration_id, messages, rng) -> None:
    """What sync_telemetry does with each batch the broker hands over, batches cut anywhere."""
    with (
        open_session(store, integration_id) as session,
        SyncRun(session, TELEMETRY_STREAM, TELEMETRY_IMPORT, log=_log) as run,
    ):
        rest = list(messages)
        while rest:
            size = rng.randint(1, 4)
            batch, rest = rest[:size], rest[size:]
            commit_telemetry_batch(session, run, TelemetryBatch(batch, [], lambda: None))


def mqtt_outcome(store, integ) -> dict[str, Any]:
    """Readings, sequence baselines, and which sequences the store counts as never arrived."""
    o, i = integ.organization_id, integ.integration_id
    with store.connect() as conn:
        readings = sorted(
            (r["external_id"], r["message_key"], str(load_json(r["payload"])))
            for r in telemetry_rows(conn, o, i)
        )
        baselines = last_sequences(conn, o, i, list(DEVICES))
        missing = sorted(
            (g["external_id"], seq)
            for g in gap_rows(conn, o, i)
            for seq in range(int(g["first_missing"]), int(g["last_missing"]) + 1)
        )
    return {"readings": readings, "baselines": baselines, "missing": missing}


def mqtt_ordered_and_shuffled(store, open_session, steps, seed):
    sent = mqtt_stream(steps)
    rng = random.Random(seed)
    outcomes = []
    for arrival in (sent, mqtt_arrival(sent, rng)):
        integ = Integration(
            integration_id=f"mqt-{uuid.uuid4().hex[:8]}",
            organization_id="org-a",
            provider="mqtt",
            name="mqtt events",
            settings={"host": "127.0.0.1"},
        )
        register_integration(store, integ)
        drain_in_batches(store, open_session, integ.integration_id, arrival, rng)
        outcomes.append(mqtt_outcome(store, integ))
    return outcomes


_log = get_logger("tests.event_order")


def test_a_shuffled_duplicated_mqtt_stream_ends_in_the_store_the_ordered_stream_gives(
    sqlite_store, open_session
):
    @settings(
        max_examples=int(os.environ.get("EVENT_ORDER_EXAMPLES", "30")),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(steps=_steps("mqtt"), seed=st.integers(0, 2**32 - 1))
    def check(steps, seed):
        ordered, shuffled = mqtt_ordered_and_shuffled(sqlite_store, open_session, steps, seed)
        assert shuffled == ordered

    check()


def test_late_mqtt_readings_fill_the_gap_they_belong_to_and_open_one_below_the_floor(
    store, open_session
):
    integ = Integration(
        integration_id=f"mqt-{uuid.uuid4().hex[:8]}",
        organization_id="org-a",
        provider="mqtt",
        name="mqtt late readings",
        settings={"host": "127.0.0.1"},
    )
    register_integration(store, integ)
    by_seq = {m.sequence: m for m in mqtt_stream([("d1", "reading", 1)] * 8)}  # seq 0..7
    with (
        open_session(store, integ.integration_id) as session,
        SyncRun(session, TELEMETRY_STREAM, TELEMETRY_IMPORT, log=_log) as run,
    ):
        for batch in ([3, 7], [5], [0]):  # 4..6 missing, then 5 late, then 0 below the floor
            messages = [by_seq[s] for s in batch]
            commit_telemetry_batch(session, run, TelemetryBatch(messages, [], lambda: None))
    assert mqtt_outcome(store, integ)["missing"] == [("d1", 1), ("d1", 2), ("d1", 4), ("d1", 6)]


# one stream of each provider, on SQLite and on PostgreSQL
_EXAMPLE = [
    ("d1", "create", 1),
    ("d1", "connect", 0),
    ("d2", "connect", 0),
    ("d1", "disconnect", 0),
    ("d2", "reading", 3),
    ("d1", "delete", 2),
    ("d2", "disconnect", 0),
    ("d1", "create", 4),
    ("d1", "connect", 0),
    ("d3", "delete", 0),
    ("d2", "create", 5),
]


@pytest.mark.parametrize("provider", ["azure_iot", "aws_iot"])
def test_the_same_stream_in_any_order_gives_the_same_store(
    store, monkeypatch, open_session, provider
):
    ordered, shuffled = ordered_and_shuffled(
        store, monkeypatch, open_session, provider, _EXAMPLE, seed=7
    )
    assert shuffled == ordered
    d1, d2, d3 = (ordered["devices"][d] for d in DEVICES)
    assert (d1["deleted"], d1["status"]) == (False, "connected")  # re-created, then connected
    assert (d2["deleted"], d2["status"]) == (False, "disconnected")
    assert (d3["deleted"], d3["status"]) == (True, "deleted")  # a tombstone: never created


def _azure_connection(integ, store, kind, sequence, at, received_at):
    event = azure_event(
        kind,
        "dev-1",
        {"deviceConnectionStateEventInfo": {"sequenceNumber": sequence}},
        event_time=at,
    )
    return insert_pending(
        store,
        integ,
        event_type=event["eventType"],
        payload=event,
        external_id="dev-1",
        event_id=event["id"],
        received_at=received_at,
    )


def test_a_late_connected_after_a_disconnected_leaves_the_device_disconnected(
    store, monkeypatch, open_session
):
    integ, _ = register_webhook_integration(
        store, monkeypatch, provider="azure_iot", integration_id="az-late"
    )
    # sequenceNumbers as IoT Hub writes them; the later one differs in a hex letter digit
    earlier = "000000000000000001D4132452F67CE200000002000000000000000000000009"
    later = "000000000000000001D4132452F67CE20000000200000000000000000000000A"
    now = utc_now()
    _azure_connection(integ, store, "DeviceDisconnected", later, "2026-03-01T10:00:01Z", now)
    _azure_connection(
        integ, store, "DeviceConnected", earlier, "2026-03-01T10:00:00Z", now + timedelta(seconds=1)
    )
    with open_session(store, "az-late") as session:
        result = process_webhook_events(session)
    with store.connect() as conn:
        device = get_device(conn, "org-a", "az-late", "dev-1")
    assert (device["status"], device["connection_sequence"]) == ("disconnected", later)
    assert (result.status, result.counts.created, result.counts.unchanged) == ("success", 1, 1)


def test_an_aws_registry_event_applies_only_a_higher_version(store, monkeypatch, open_session):
    integ, _ = register_webhook_integration(
        store, monkeypatch, provider="aws_iot", integration_id="aws-reg"
    )
    steps = [("d1", "create", 1), ("d1", "create", 2), ("d1", "create", 3)]
    v1, v2, v3 = provider_stream("aws_iot", steps)
    deliver(store, integ, [v1, v3, v2, v3])  # v2 late, v3 redelivered: the inbox keeps one
    with open_session(store, "aws-reg") as session:
        result = process_webhook_events(session)
    with store.connect() as conn:
        device = get_device(conn, "org-a", "aws-reg", "d1")
    assert (result.counts.fetched, result.counts.created, result.counts.updated) == (3, 1, 1)
    assert device["registry_version"] == 3
    assert load_json(device["attributes"])["attributes"] == v3.payload["attributes"]
    assert device["tags"] in (["t1"], '["t1"]')


def connect_holding(store, event):
    """A transaction that has inserted, undecided, the telemetry row `event` would write."""
    conn = store.engine.connect()
    conn.begin()
    insert_telemetry(
        conn,
        [
            TelemetryRow(
                organization_id=event.organization_id,
                integration_id=event.integration_id,
                external_id="d",
                message_key=f"webhook:{event.event_id}",
                sequence=None,
                topic="t",
                payload=dump_json({"held": True}),
                device_time=None,
                received_at=event.received_at,
                run_id="test",
                request_id=event.event_id,
            )
        ],
    )
    return _Held(conn)


class _Held:
    def __init__(self, conn):
        self.conn = conn

    def rollback(self):
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()


def test_a_webhook_processor_whose_lease_was_taken_over_writes_nothing_more(
    postgres_url, monkeypatch, open_session
):
    """Processor A stalls on its second event (a row lock held here) past its lease; processor
    B takes the stream over and applies the rest; A wakes up, is fenced and commits nothing."""
    from sync_pipelines.store.database import Store

    store = Store(postgres_url)
    integ, _ = register_webhook_integration(
        store, monkeypatch, provider="golioth", integration_id=f"gl-{uuid.uuid4().hex[:8]}"
    )
    i = integ.integration_id
    events = [
        insert_pending(
            store,
            integ,
            event_type="t",
            payload={"temp": n},
            external_id="d",
            received_at=utc_now() + timedelta(milliseconds=n),
        )
        for n in range(3)
    ]
    monkeypatch.setenv(LEASE_TTL_ENV, "0.5")
    monkeypatch.setenv(LEASE_HEARTBEAT_ENV, "0")  # a stalled process: no heartbeat either
    outcome: dict[str, object] = {}
    # A is held in its first event (its reading's key is taken by a transaction not yet decided)
    # until the second event is locked here, after A's claim: A then stalls on that row
    first_key = connect_holding(store, events[0])
    second_lock = store.engine.connect()
    second_locking = second_lock.begin()

    def stale_processor() -> None:
        try:
            with open_session(store, i, run_id="run-stale") as session:
                outcome["result"] = process_webhook_events(session)
        except Exception as exc:
            outcome["error"] = exc

    stale = threading.Thread(target=stale_processor)
    stale.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # A claimed the three
            with store.connect() as conn:
                if all(e.run_id == "run-stale" for e in list_events(conn, "org-a", i)):
                    break
            time.sleep(0.02)
        second_lock.execute(
            sa.text("SELECT id FROM webhook_events WHERE id = :id FOR UPDATE"),
            {"id": events[1].id},
        )
        first_key.rollback()  # A applies its first event, then waits on the second
        while time.monotonic() < deadline:
            with store.connect() as conn:
                if len(telemetry_rows(conn, "org-a", i)) == 1:
                    break
            time.sleep(0.02)
        time.sleep(0.6)  # past A's lease
        monkeypatch.delenv(LEASE_TTL_ENV)
        monkeypatch.delenv(LEASE_HEARTBEAT_ENV)
        with open_session(store, i, run_id="run-new") as session:
            # takes the stream over; A's claim of the third event has lapsed for it
            taken_over = process_webhook_events(session, lease_s=0)
    finally:
        first_key.rollback()
        second_locking.rollback()
        second_lock.close()
    stale.join(timeout=30)

    assert isinstance(outcome.get("error"), FencedError), outcome
    assert (taken_over.status, taken_over.counts.fetched) == ("success", 1)
    with store.connect() as conn:
        runs = {r["run_id"]: r["status"] for r in sync_log_rows(conn, "org-a", i)}
        by_event = {e.id: (e.status, e.run_id) for e in list_events(conn, "org-a", i)}
        readings = {
            load_json(r["payload"])["temp"]: r["run_id"] for r in telemetry_rows(conn, "org-a", i)
        }
    assert runs == {"run-stale": "fenced", "run-new": "success"}
    # A's second event never committed: still claimed by A, for a later run to take
    assert by_event[events[1].id] == ("processing", "run-stale")
    assert by_event[events[2].id] == ("processed", "run-new")
    assert readings == {0: "run-stale", 2: "run-new"}

    with open_session(store, i, run_id="run-later") as session:
        assert process_webhook_events(session, lease_s=0).counts.fetched == 1
    with store.connect() as conn:
        assert len(telemetry_rows(conn, "org-a", i)) == 3
    store.dispose()
