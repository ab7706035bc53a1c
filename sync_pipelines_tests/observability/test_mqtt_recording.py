"""Every MQTT broker operation a provider makes is an activity row, against a real broker (the
MQTT peer: Mosquitto with a password file): structural recording through
`ProviderClients.mqtt`, as for HTTP and botocore calls."""

from __future__ import annotations

import json
import socket
import time
import uuid
from dataclasses import asdict

import pytest
from sync_pipelines_peers.launchers.mqtt import MqttPeer

from sync_pipelines.observability.activity import (
    MQTT_REQUEST,
    ActivityRecorder,
    ActivityRow,
    ActivityScope,
    MemorySink,
)
from sync_pipelines.observability.mqtt_recording import mqtt_endpoint
from sync_pipelines.providers.contract import IntegrationConfig
from sync_pipelines.providers.mqtt_client import _Awaiting
from sync_pipelines.sync.integration_config import open_provider

#: a desired value distinctive enough to find if a payload body ever leaked into a row
PAYLOAD_MARKER = f"payload-body-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def peer():
    running = MqttPeer()
    running.start()
    running.seed(12)
    yield running
    running.stop()


@pytest.fixture
def recorder() -> ActivityRecorder:
    return ActivityRecorder(
        MemorySink(), ActivityScope(organization_id="org-r", integration_id="m-r", run_id="run-r")
    )


def _provider(recorder: ActivityRecorder, settings: dict, password: str, username: str):
    config = IntegrationConfig(
        integration_id="m-r",
        organization_id="org-r",
        provider="mqtt",
        settings=settings,
        secrets={"username": username, "password": password},
    )
    return open_provider(config, recorder, timeout_s=3)


def _rows(recorder: ActivityRecorder) -> list[ActivityRow]:
    recorder.flush()
    return [r for r in recorder.sink.rows.values() if r.activity_type == MQTT_REQUEST]


def _text(row: ActivityRow) -> str:
    """Every field of a row, as the store would hold it."""
    return json.dumps(asdict(row), default=str)


def _sync_workload(peer: MqttPeer, recorder: ActivityRecorder) -> str:
    """Listing, state reads and one desired push inside an operation; returns its row id."""
    with (
        _provider(recorder, peer.integration_settings(), peer.password, peer.username) as provider,
        recorder.operation("import") as op,
    ):
        ids = [d.external_id for page in provider.list_devices() for d in page.devices]
        states, failures = provider.get_states(ids[:4])
        assert len(states) == 4 and not failures
        provider.push_desired(ids[0], {"note": PAYLOAD_MARKER}, expected_version=states[0].version)
    return op.id


def test_reads_and_a_push_leave_one_row_per_broker_operation(peer, recorder):
    operation_id = _sync_workload(peer, recorder)
    rows = _rows(recorder)
    broker = peer.running_broker
    base = f"mqtt://{broker.host}:{broker.port}"

    # one clean read connection: the listing, the states batch and push_desired's read are each
    # a SUBSCRIBE + UNSUBSCRIBE barrier; the push is one QoS 1 PUBLISH
    assert [r.method for r in rows] == [
        "CONNECT",
        *["SUBSCRIBE", "UNSUBSCRIBE"] * 3,
        "PUBLISH",
    ]
    for row in rows:
        assert (row.direction, row.status, row.error_type) == ("outgoing", "success", None)
        assert row.response_time_ms is not None and row.response_time_ms > 0
        assert row.completed_at is not None and row.completed_at >= row.created_at
        assert row.endpoint.startswith(base)
        assert row.parent_id == operation_id  # under the sync operation, like HTTP calls
        assert row.metadata["client_id"].startswith("sync-pipelines-m-r-read-")
        uuid.UUID(row.request_id)
    assert len({r.request_id for r in rows}) == len(rows)

    connect, listing = rows[0], rows[1]
    assert (connect.endpoint, connect.status_code) == (base, 0)
    assert connect.metadata["session_present"] is False
    assert connect.metadata["clean_start"] is True and connect.metadata["protocol"] == "5"
    assert listing.endpoint == f"{base}/{peer.prefix}/+/meta"
    assert listing.metadata["purpose"] == "retained_read" and listing.metadata["qos"] == 1
    states_read = rows[3]
    assert states_read.endpoint.endswith("/reported (+7 more)")  # 4 devices x reported/desired
    assert states_read.metadata["topics"] == 8

    publish = rows[-1]
    assert publish.endpoint.startswith(f"{base}/{peer.prefix}/")
    assert publish.endpoint.endswith("/desired")
    assert publish.status_code is not None and publish.status_code < 0x80  # a PUBACK success
    assert {k: publish.metadata[k] for k in ("qos", "retained")} == {"qos": 1, "retained": True}
    assert publish.metadata["payload_bytes"] > len(PAYLOAD_MARKER)
    assert all(PAYLOAD_MARKER not in _text(r) for r in recorder.sink.rows.values())

    # they count as the run's provider calls
    assert recorder.counts["mqtt_requests"] == len(rows) and recorder.counts["mqtt_failed"] == 0
    assert recorder.counts["http_requests"] == 0
    assert len(recorder.call_latencies_ms) == len(rows)


def test_no_row_carries_the_password(peer, recorder):
    # the secrets are not registered for redaction here (no resolve_config): the password must
    # never reach a row at all, on success or on an auth failure
    _sync_workload(peer, recorder)
    with _provider(
        recorder, peer.integration_settings(), f"{peer.password}-wrong", peer.username
    ) as provider:
        assert not provider.test_connection().ok
    recorder.flush()
    rows = list(recorder.sink.rows.values())
    assert len(rows) == 10  # the import operation, its 8 broker operations, the failed CONNECT
    for row in rows:
        assert peer.password not in _text(row)


def test_a_wrong_password_is_a_failed_connect_row_of_category_auth(peer, recorder):
    with _provider(
        recorder, peer.integration_settings(), "not-the-password-1234", peer.username
    ) as provider:
        result = provider.test_connection()
    (row,) = _rows(recorder)
    assert (result.ok, result.details["category"]) == (False, "auth")
    assert (row.method, row.status, row.error_type) == ("CONNECT", "failed", "auth")
    assert row.status_code in (0x86, 0x87)  # bad user name or password / not authorized
    assert "CONNACK" in row.error_message and row.response_time_ms > 0
    assert "not-the-password-1234" not in _text(row)
    assert recorder.counts["mqtt_failed"] == 1


def test_an_unreachable_broker_is_a_failed_connect_row_of_category_transient(peer, recorder):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = {
        **peer.integration_settings(),
        "host": "127.0.0.1",
        "port": port,
        "retry_max_attempts": 1,
    }
    with _provider(recorder, settings, peer.password, peer.username) as provider:
        result = provider.test_connection()
    (row,) = _rows(recorder)
    assert (result.ok, result.details["category"]) == (False, "transient")
    assert (row.method, row.status, row.error_type) == ("CONNECT", "failed", "transient")
    assert row.endpoint == f"mqtt://127.0.0.1:{port}" and row.status_code is None
    assert "cannot reach the broker" in row.error_message


def test_received_telemetry_is_not_a_row_per_message(peer, recorder):
    settings = {**peer.integration_settings(), "idle_timeout_s": 0.2}
    with _provider(recorder, settings, peer.password, peer.username) as provider:
        for _ in provider.drain_telemetry(max_messages=100, window_s=2):  # creates the session
            pass
        peer.emit_telemetry(3)
        received = 0
        for batch in provider.drain_telemetry(max_messages=100, window_s=2):
            received += len(batch.messages)
            batch.acknowledge()
    assert received == 3 * len(peer.inventory())
    # two sessions' CONNECT + SUBSCRIBE (the resumed one does not wait for its SUBACK, which
    # still arrives and finishes the row), and around each drain a read of the broker's dropped
    # counter (CONNECT, SUBSCRIBE, UNSUBSCRIBE); no row per message, no PUBLISH for the acks
    rows = _rows(recorder)
    counter_reads = [r for r in rows if r.endpoint and "$SYS/broker" in r.endpoint]
    assert sorted(r.method for r in counter_reads) == ["SUBSCRIBE"] * 4 + ["UNSUBSCRIBE"] * 4
    assert sorted(r.method for r in rows if r not in counter_reads) == [
        *["CONNECT"] * 6,
        "SUBSCRIBE",
        "SUBSCRIBE",
    ]
    assert all(r.status == "success" for r in rows)


def test_an_answer_that_beats_the_caller_is_held_until_claimed():
    """paho sends a packet before it returns its packet id, so the ack can come first."""

    class Operation:
        def __init__(self) -> None:
            self.finished: list[dict] = []

        def finish(self, **outcome) -> None:
            self.finished.append(outcome)

    awaiting = _Awaiting()
    stale_answer_from_a_previous_use = "stale"
    awaiting.answer(7, stale_answer_from_a_previous_use)
    started = time.perf_counter()
    early, late, stale = Operation(), Operation(), Operation()
    awaiting.answer(8, "early")
    awaiting.expect(8, early, started, lambda a: (None, 0, {"answer": a}))
    awaiting.expect(7, stale, started, lambda a: (None, 0, {"answer": a}))
    awaiting.expect(9, late, started, lambda a: (None, 0, {"answer": a}))
    assert [o["answer"] for o in early.finished] == ["early"]
    assert early.finished[0]["at"] >= started and early.finished[0]["packet_id"] == 8
    assert stale.finished == [] and late.finished == []  # still waiting for their own answers
    awaiting.answer(9, "late")
    awaiting.answer(7, "fresh")
    assert [o["answer"] for o in late.finished] == ["late"]
    assert [o["answer"] for o in stale.finished] == ["fresh"]


def test_endpoints_name_the_broker_and_topic_only():
    assert mqtt_endpoint("broker.local", 8883) == "mqtt://broker.local:8883"
    assert mqtt_endpoint("::1", 1883, ["a/+/meta"]) == "mqtt://[::1]:1883/a/+/meta"
    assert mqtt_endpoint("h", 1, ["a/1", "a/2", "a/3"]) == "mqtt://h:1/a/1 (+2 more)"
