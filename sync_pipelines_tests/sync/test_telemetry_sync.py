"""The telemetry sync against a real Mosquitto, on SQLite and PostgreSQL: every message stored
exactly once across redeliveries, crashes and restarts; bad messages rejected and recorded;
messages a broker dropped reported as gaps, never silently."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

import pytest

from sync_pipelines.observability.activity import MQTT_MESSAGE, TELEMETRY_GAP
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.database import load_json
from sync_pipelines.store.sync_state import sync_log_rows
from sync_pipelines.store.telemetry import count_telemetry, gap_rows, telemetry_rows
from sync_pipelines.sync.telemetry import HOLD_BEFORE_COMMIT_ENV, sync_telemetry

from ..mqtt_support import new_broker, register_mqtt, simulator, unique_prefix

# A sync in a process of its own, as a scheduled run would be.
_SYNC_IN_A_PROCESS = """
import sys
from sync_pipelines.store.database import Store
from sync_pipelines.sync.session import RunContext, integration_session
from sync_pipelines.sync.telemetry import sync_telemetry
with integration_session(Store(), sys.argv[1], RunContext(run_id=sys.argv[2])) as session:
    sync_telemetry(session, max_messages=1000, window_s=10)
"""


@pytest.fixture(scope="module")
def broker():
    running = new_broker(max_queued_messages=100_000, max_inflight_messages=1000)
    yield running
    running.cleanup()


def _sync(open_session, store, integ, **kwargs):
    with open_session(store, integ.integration_id) as session:
        return sync_telemetry(session, **{"window_s": 10.0, **kwargs})


def _sync_in_subprocess(store, integ, run_id, **env):
    return subprocess.Popen(
        [sys.executable, "-c", _SYNC_IN_A_PROCESS, integ.integration_id, run_id],
        env={**os.environ, "SYNC_DATABASE_URL": store.url, "SYNC_LOG_LEVEL": "WARNING", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _batch_rows(store, integ, run_id=None):
    with store.connect() as conn:
        rows = activity_rows(
            conn,
            integ.organization_id,
            integration_id=integ.integration_id,
            activity_type=MQTT_MESSAGE,
            run_id=run_id,
        )
    return [(r, load_json(r["metadata"])) for r in rows]


def test_every_message_is_stored_once_and_a_repeated_seq_is_absorbed(
    store, broker, monkeypatch, open_session
):
    prefix = unique_prefix()
    integ = register_mqtt(store, broker, monkeypatch, prefix)
    _sync(open_session, store, integ)  # the first sync creates the persistent session
    with simulator(broker, prefix) as sim:
        sim.publish_telemetry(["d1", "d2", "d3"], 20)
        sim.publish_telemetry(["d1"], 5, start_seq=5)  # the device sends seq 5..9 again

    result = _sync(open_session, store, integ, max_messages=25)

    assert result.status == "success"
    c = result.counts
    assert (c.fetched, c.created, c.unchanged, c.failed, c.gaps) == (65, 60, 5, 0, 0)
    assert c.pages >= 3  # batches of at most 25
    with store.connect() as conn:
        stored = telemetry_rows(conn, integ.organization_id, integ.integration_id)
        (_, log) = sync_log_rows(conn, integ.organization_id, integ.integration_id)
    assert Counter(r["external_id"] for r in stored) == {"d1": 20, "d2": 20, "d3": 20}
    assert sorted(r["sequence"] for r in stored if r["external_id"] == "d2") == list(range(20))
    assert (log["status"], log["created"], log["unchanged"], log["gaps"]) == ("success", 60, 5, 0)
    batches = [meta for row, meta in _batch_rows(store, integ, _run_id_of(stored))]
    assert sum(m["messages"] for m in batches) == 65 and sum(m["stored"] for m in batches) == 60
    assert {r["request_id"] for r in stored} <= {m["batch_id"] for m in batches}  # row → its batch


def _run_id_of(stored_rows):
    (run_id,) = {r["run_id"] for r in stored_rows}
    return run_id


def test_non_json_and_oversized_messages_are_rejected_and_recorded_while_the_rest_commits(
    store, broker, monkeypatch, open_session
):
    prefix = unique_prefix()
    integ = register_mqtt(store, broker, monkeypatch, prefix, max_message_bytes=1024)
    _sync(open_session, store, integ)
    with simulator(broker, prefix) as sim:
        sim.publish_telemetry(["good"], 10)
        sim.publish_raw(f"{prefix}/garbled/telemetry", b"\x00not json at all")
        sim.publish_raw(f"{prefix}/chatty/telemetry", b'{"seq": 1, "blob": "' + b"x" * 4000 + b'"}')
        sim.publish_raw(
            f"{prefix}/nul/telemetry", b'{"seq": 1, "note": "a\\u0000b"}'
        )  # JSON, not storable

    result = _sync(open_session, store, integ)
    again = _sync(open_session, store, integ)  # rejected messages were acknowledged too

    assert result.status == "partial"
    assert (result.counts.fetched, result.counts.created, result.counts.failed) == (13, 10, 3)
    assert again.counts.fetched == 0
    with store.connect() as conn:
        assert count_telemetry(conn, integ.organization_id, integ.integration_id) == 10
    failed = {
        row["endpoint"]: row for row, _ in _batch_rows(store, integ) if row["status"] == "failed"
    }
    assert set(failed) == {f"{prefix}/{d}/telemetry" for d in ("garbled", "chatty", "nul")}
    garbled, chatty = failed[f"{prefix}/garbled/telemetry"], failed[f"{prefix}/chatty/telemetry"]
    assert (
        "device garbled" in garbled["error_message"]
        and "not valid JSON" in garbled["error_message"]
    )
    assert (
        "device chatty" in chatty["error_message"]
        and "exceeds max_message_bytes=1024" in chatty["error_message"]
    )
    assert garbled["direction"] == "incoming" and garbled["error_type"] == "validation"


def test_a_sync_killed_before_its_commit_loses_nothing_and_doubles_nothing(
    store, broker, monkeypatch, open_session, tmp_path
):
    prefix = unique_prefix()
    integ = register_mqtt(store, broker, monkeypatch, prefix)
    _sync(open_session, store, integ)
    with simulator(broker, prefix) as sim:
        sim.publish_telemetry([f"k{i}" for i in range(4)], 50)
    marker = tmp_path / "holding"
    proc = _sync_in_subprocess(store, integ, "killed-run", **{HOLD_BEFORE_COMMIT_ENV: str(marker)})
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():  # rows inserted, transaction open, messages not acknowledged
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the sync never reached its commit"
            time.sleep(0.01)
        held = int(marker.read_text() or 0)
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    with store.connect() as conn:
        assert count_telemetry(conn, integ.organization_id, integ.integration_id) == 0

    result = _sync(open_session, store, integ)

    assert held > 0
    assert (result.counts.created, result.counts.unchanged, result.status) == (200, 0, "success")
    with store.connect() as conn:
        stored = telemetry_rows(conn, integ.organization_id, integ.integration_id)
    assert sorted((r["external_id"], r["sequence"]) for r in stored) == [
        (f"k{i}", s) for i in range(4) for s in range(50)
    ]
    redelivered = sum(
        meta["redelivered"] for _, meta in _batch_rows(store, integ, _run_id_of(stored))
    )
    assert redelivered == held  # the killed batch came back flagged DUP


def test_a_queue_overflow_on_the_broker_is_reported_as_gaps_not_silently(
    store, monkeypatch, open_session
):
    """Mosquitto keeps max_queued_messages for an offline session and drops the rest — still
    PUBACKing the publisher. The newest are dropped, so the hole shows once devices publish
    again: the next sync sees each device jump over it."""
    small = new_broker(max_queued_messages=50, max_inflight_messages=20)
    try:
        prefix = unique_prefix()
        integ = register_mqtt(store, small, monkeypatch, prefix)
        _sync(open_session, store, integ)
        devices = ["o1", "o2", "o3", "o4"]
        with simulator(small, prefix) as sim:
            assert sim.publish_telemetry(devices, 50) == 200  # all PUBACKed
        first = _sync(open_session, store, integ)
        with simulator(small, prefix) as sim:
            sim.publish_telemetry(devices, 1, start_seq=50)
        second = _sync(open_session, store, integ)
        dropped_notices = small.dropped_message_notices()
    finally:
        small.cleanup()

    assert dropped_notices > 0
    assert 0 < first.counts.created < 200 and first.counts.gaps == 0
    assert second.status == "partial" and second.counts.gaps == 4 and second.counts.created == 4
    with store.connect() as conn:
        gaps = gap_rows(conn, integ.organization_id, integ.integration_id)
        stored = telemetry_rows(conn, integ.organization_id, integ.integration_id)
        logs = sync_log_rows(conn, integ.organization_id, integ.integration_id)
        gap_activity = activity_rows(
            conn,
            integ.organization_id,
            integration_id=integ.integration_id,
            activity_type=TELEMETRY_GAP,
        )
    last_stored = {
        d: max(r["sequence"] for r in stored if r["external_id"] == d and r["sequence"] < 50)
        for d in devices
    }
    assert [(g["external_id"], g["first_missing"], g["last_missing"]) for g in gaps] == [
        (d, last_stored[d] + 1, 49) for d in devices
    ]
    assert len(stored) + sum(g["missing_count"] for g in gaps) == 4 * 51  # every seq accounted for
    assert [log["gaps"] for log in logs][-1] == 4 and logs[-1]["status"] == "partial"
    assert len(gap_activity) == 4 and all(r["status"] == "failed" for r in gap_activity)
    assert (
        f"device o1: telemetry seq {last_stored['o1'] + 1}..49 never arrived"
        in gap_activity[0]["error_message"]
    )


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_new_process_with_the_same_client_id_gets_what_was_queued_meanwhile(
    sqlite_store, broker, monkeypatch, open_session, protocol
):
    """paho's default clean_start (FIRST_ONLY) would wipe the session on each process's first
    connect; the provider's sessions survive from one process to the next."""
    prefix = unique_prefix()
    integ = register_mqtt(sqlite_store, broker, monkeypatch, prefix, protocol=protocol)
    creator = _sync_in_subprocess(sqlite_store, integ, "session-creator")
    assert creator.wait(60) == 0, creator.stderr.read().decode()[-2000:]
    with simulator(broker, prefix) as sim:
        sim.publish_telemetry(["f1", "f2"], 15)

    result = _sync(open_session, sqlite_store, integ)

    assert (result.counts.fetched, result.counts.created) == (30, 30)


def test_a_broker_restart_keeps_the_messages_queued_for_a_311_session(
    sqlite_store, monkeypatch, open_session
):
    own = new_broker(max_queued_messages=10_000, max_inflight_messages=1000)
    try:
        prefix = unique_prefix()
        integ = register_mqtt(sqlite_store, own, monkeypatch, prefix, protocol="3.1.1")
        _sync(open_session, sqlite_store, integ)
        with simulator(own, prefix) as sim:
            sim.publish_telemetry(["r1", "r2"], 50)
        own.restart()  # SIGTERM: the broker saves sessions and queues, then loads them back
        result = _sync(open_session, sqlite_store, integ)
    finally:
        own.cleanup()
    assert (result.counts.created, result.status) == (100, "success")
