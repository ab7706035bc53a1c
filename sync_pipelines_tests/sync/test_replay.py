"""Dead letters end to end against the real Golioth emulator (and one real Mosquitto), on SQLite
and PostgreSQL: poison records and failed reads and pushes become dead letters while the rest of
the sync completes; the same failure is one letter however often it is found; a record that
syncs fine later resolves it; replay resolves what it can exactly once, retries the rest with
backoff and quarantines it after its attempts; a replay whose lease was taken over writes
nothing more."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import FencedError
from sync_pipelines.observability.activity import RECORD_REJECTED, REPLAY
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.dead_letters import (
    PENDING,
    QUARANTINED,
    RESOLVED,
    RETRYING,
    DeadLetterPolicy,
    DeadLetterSelection,
    FailedRecord,
    list_dead_letters,
    record_dead_letters,
)
from sync_pipelines.store.desired import desired_changes, request_desired_change
from sync_pipelines.store.devices import count_devices, get_device
from sync_pipelines.store.sync_state import sync_log_rows
from sync_pipelines.store.telemetry import count_telemetry
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.export import export_desired_states
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.sync.replay import STREAM as REPLAY_STREAM
from sync_pipelines.sync.replay import replay_dead_letters
from sync_pipelines.sync.stream_lease import LEASE_HEARTBEAT_ENV, LEASE_TTL_ENV
from sync_pipelines.sync.telemetry import sync_telemetry

from ..mqtt_support import new_broker, register_mqtt, simulator, unique_prefix

#: letters are due a millisecond after they fail, so a replay without ids picks them up at once
DUE_AT_ONCE = {"dead_letter_backoff_s": 0.001}


def _letters(store, integ, **selection):
    with store.connect() as conn:
        return list_dead_letters(
            conn,
            integ.organization_id,
            DeadLetterSelection(integration_id=integ.integration_id, **selection),
        )


def _replay(open_session, store, integ, run_id, **kwargs):
    with open_session(store, integ.integration_id, run_id=run_id) as session:
        return replay_dead_letters(session, **kwargs)


def _sync(open_session, store, integ, run_id, *streams):
    with open_session(store, integ.integration_id, run_id=run_id) as session:
        return [stream(session) for stream in streams]


def test_a_poison_record_is_dead_lettered_with_its_payload_and_the_rest_is_stored(
    store, golioth, register_golioth, open_session
):
    integ = register_golioth(store, golioth)
    poisoned = list(golioth.emulator.device_ids())[5]
    golioth.emulator.add_faults({"kind": "poison_record", "device_index": 5})
    [result] = _sync(open_session, store, integ, "run-poison", sync_devices)

    assert (result.status, result.counts.failed, result.counts.created) == ("partial", 1, 249)
    [letter] = _letters(store, integ)
    assert (letter.stream, letter.external_id, letter.provider, letter.status, letter.attempts) == (
        "devices",
        poisoned,
        "golioth",
        PENDING,
        0,
    )
    assert letter.payload["id"] == poisoned and letter.payload["createdAt"] == "not-a-time"
    assert letter.error_type == "validation" and "hardwareIds" in letter.error_message
    assert letter.run_id == "run-poison" and letter.max_attempts == 5
    with store.connect() as conn:
        assert count_devices(conn, integ.organization_id, integ.integration_id) == 249
        [rejected] = activity_rows(
            conn, integ.organization_id, run_id="run-poison", activity_type=RECORD_REJECTED
        )
    assert rejected["metadata"]["external_id"] == poisoned, (
        "the activity row is kept beside the letter"
    )
    assert letter.request_id == rejected["request_id"], (
        "the letter names the page call it came from"
    )


def test_the_same_poison_found_by_the_next_sync_is_still_one_letter(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=30)
    integ = register_golioth(store, running)
    running.emulator.add_faults({"kind": "poison_record", "device_index": 3})
    _sync(open_session, store, integ, "run-1", sync_devices)
    [first] = _letters(store, integ)
    _sync(open_session, store, integ, "run-2", sync_devices)
    [again] = _letters(store, integ)
    assert again.id == first.id and (again.status, again.attempts) == (PENDING, 0)
    assert (
        again.first_failed_at == first.first_failed_at
        and again.last_failed_at > first.last_failed_at
    )
    assert again.run_id == "run-2"


def test_a_record_fixed_at_the_provider_resolves_its_letter_on_the_next_sync_and_replay_is_then_a_no_op(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=30)
    integ = register_golioth(store, running)
    target = list(running.emulator.device_ids())[7]
    running.emulator.patch_device(target, {"hardwareIds": "oops"})
    _sync(open_session, store, integ, "run-broken", sync_devices)
    [letter] = _letters(store, integ, statuses=(PENDING,))

    running.emulator.patch_device(target, {"hardwareIds": ["hw-fixed"]})
    [result] = _sync(open_session, store, integ, "run-fixed", sync_devices)

    assert result.status == "success"
    [resolved] = _letters(store, integ)
    assert (resolved.status, resolved.resolved_by_run_id) == (RESOLVED, "run-fixed")
    replay = _replay(open_session, store, integ, "run-replay", ids=[letter.id])
    assert (replay.counts.fetched, replay.resolved) == (0, 0), "a resolved letter is never replayed"
    assert _letters(store, integ)[0].resolved_by_run_id == "run-fixed"
    with store.connect() as conn:
        assert get_device(conn, integ.organization_id, integ.integration_id, target)[
            "hardware_ids"
        ] in (["hw-fixed"], '["hw-fixed"]')


def test_replaying_a_payload_that_normalises_now_stores_it_and_resolves_it_exactly_once(
    store, golioth_factory, register_golioth, open_session
):
    """A letter whose stored payload today's parser accepts (the bug that rejected it was fixed)."""
    running = golioth_factory(device_count=5)
    integ = register_golioth(store, running)
    target = next(running.emulator.device_ids())
    with store.transaction() as conn:
        record_dead_letters(
            conn,
            organization_id=integ.organization_id,
            integration_id=integ.integration_id,
            provider="golioth",
            records=[
                FailedRecord(
                    stream="devices",
                    dedupe_key=target,
                    error_type="validation",
                    error_message="rejected by an older parser",
                    payload=running.emulator.get_device(target),
                    external_id=target,
                    request_id="req-original",
                )
            ],
            policy=DeadLetterPolicy(),
            run_id="run-old",
            now=utc_now(),
        )
    [letter] = _letters(store, integ)

    first = _replay(open_session, store, integ, "run-replay-1", ids=[letter.id])
    second = _replay(open_session, store, integ, "run-replay-2", ids=[letter.id])

    assert (first.status, first.resolved, first.counts.created) == ("success", 1, 1)
    assert (second.counts.fetched, second.resolved, second.counts.created) == (0, 0, 0)
    [done] = _letters(store, integ)
    assert (done.status, done.resolved_by_run_id, done.attempts) == (RESOLVED, "run-replay-1", 1)
    with store.connect() as conn:
        device = get_device(conn, integ.organization_id, integ.integration_id, target)
        rows = activity_rows(conn, integ.organization_id, activity_type=REPLAY)
    assert (device["last_run_id"], device["last_request_id"]) == ("run-replay-1", "req-original")
    letter_rows = [r for r in rows if r["metadata"].get("dead_letter_id") == letter.id]
    assert [(r["run_id"], r["status"], r["metadata"]["outcome"]) for r in letter_rows] == [
        ("run-replay-1", "success", RESOLVED)
    ]


def test_a_payload_that_still_fails_is_retried_with_backoff_then_quarantined_with_an_activity_row(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=12)
    integ = register_golioth(store, running, dead_letter_max_attempts=2, **DUE_AT_ONCE)
    running.emulator.add_faults({"kind": "poison_record", "device_index": 2})
    _sync(open_session, store, integ, "run-poison", sync_devices)
    time.sleep(0.01)

    first = _replay(open_session, store, integ, "run-r1")  # due letters, no ids
    [retrying] = _letters(store, integ)
    second = _replay(open_session, store, integ, "run-r2")
    [quarantined] = _letters(store, integ)
    third = _replay(open_session, store, integ, "run-r3")

    assert (first.status, first.retrying, first.counts.failed) == ("partial", 1, 1)
    assert (retrying.status, retrying.attempts) == (RETRYING, 1)
    assert retrying.next_attempt_at > retrying.last_failed_at, "the next attempt is leased ahead"
    assert (second.quarantined, quarantined.status, quarantined.attempts) == (1, QUARANTINED, 2)
    assert quarantined.next_attempt_at is None and quarantined.quarantined_at is not None
    assert third.counts.fetched == 0, "a quarantined letter waits for an operator"
    with store.connect() as conn:
        rows = activity_rows(conn, integ.organization_id, activity_type=REPLAY)
        log = [
            r
            for r in sync_log_rows(conn, integ.organization_id, integ.integration_id)
            if r["stream"] == "dead_letter_replay"
        ]
    by_run = {(r["run_id"], r["metadata"].get("outcome")): r for r in rows if r["parent_id"]}
    assert by_run[("run-r1", RETRYING)]["status"] == "retrying"
    quarantine_row = by_run[("run-r2", QUARANTINED)]
    assert quarantine_row["status"] == "failed" and "hardwareIds" in quarantine_row["error_message"]
    assert quarantine_row["metadata"]["dead_letter_id"] == quarantined.id
    assert [r["status"] for r in log] == ["partial", "partial", "success"]


def test_an_unreadable_state_is_dead_lettered_and_replayed_once_the_fault_clears(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=10)
    integ = register_golioth(store, running, state_source="device")  # per-device reads
    target = list(running.emulator.device_ids())[4]
    _sync(open_session, store, integ, "run-devices", sync_devices)
    running.emulator.add_faults(
        {"kind": "server_error", "status": 400, "method": "GET", "path": f"{target}/data$"}
    )
    [states] = _sync(open_session, store, integ, "run-states", sync_device_states)
    [letter] = _letters(store, integ)
    assert (states.status, states.counts.failed, states.counts.created) == ("partial", 1, 9)
    assert (letter.stream, letter.external_id, letter.payload) == (
        "device_states",
        target,
        {"external_id": target},
    )

    still = _replay(open_session, store, integ, "run-still-failing", ids=[letter.id])
    running.emulator.clear_faults()
    fixed = _replay(open_session, store, integ, "run-fixed", ids=[letter.id])

    assert (still.retrying, fixed.resolved, fixed.counts.created) == (1, 1, 1)
    [done] = _letters(store, integ)
    assert (done.status, done.resolved_by_run_id, done.attempts) == (RESOLVED, "run-fixed", 2)
    with store.connect() as conn:
        from sync_pipelines.store.devices import count_device_states

        assert count_device_states(conn, integ.organization_id, integ.integration_id) == 10


def test_a_state_that_reads_fine_on_the_next_state_sync_resolves_its_letter(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=6)
    integ = register_golioth(store, running, state_source="device")  # per-device reads
    target = list(running.emulator.device_ids())[1]
    _sync(open_session, store, integ, "run-devices", sync_devices)
    running.emulator.add_faults(
        {"kind": "server_error", "status": 400, "method": "GET", "path": f"{target}/data$"}
    )
    _sync(open_session, store, integ, "run-failing", sync_device_states)
    running.emulator.clear_faults()
    _sync(open_session, store, integ, "run-ok", sync_device_states)
    assert [(d.status, d.resolved_by_run_id) for d in _letters(store, integ)] == [
        (RESOLVED, "run-ok")
    ]


def test_a_failed_push_is_dead_lettered_and_replay_pushes_it_exactly_once(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=5)
    integ = register_golioth(store, running, **DUE_AT_ONCE)
    target = next(running.emulator.device_ids())
    _sync(open_session, store, integ, "run-sync", sync_devices, sync_device_states)
    with store.transaction() as conn:
        change_id = request_desired_change(
            conn, integ.organization_id, integ.integration_id, target, {"interval_s": 15}
        )
    running.emulator.add_faults(
        {"kind": "server_error", "status": 400, "method": "POST", "path": "/data/desired$"}
    )
    [exported] = _sync(open_session, store, integ, "run-export", export_desired_states)
    [letter] = _letters(store, integ)
    assert (exported.status, exported.counts.failed) == ("partial", 1)
    assert (letter.stream, letter.source_id, letter.external_id) == (
        "desired_exports",
        change_id,
        target,
    )
    assert letter.payload == {
        "external_id": target,
        "change_ids": [change_id],
        "patch": {"interval_s": 15},
    }

    running.emulator.clear_faults()
    running.emulator.clear_requests()
    time.sleep(0.01)
    first = _replay(open_session, store, integ, "run-replay-1")
    second = _replay(open_session, store, integ, "run-replay-2", ids=[letter.id])

    assert (first.resolved, second.counts.fetched) == (1, 0)
    assert running.emulator.read_state(target, "desired")["interval_s"] == 15
    assert len([r for r in running.emulator.requests() if r.method == "POST"]) == 1, "pushed once"
    with store.connect() as conn:
        [change] = desired_changes(conn, integ.organization_id, integ.integration_id)
    assert (change["status"], change["run_id"]) == ("pushed", "run-replay-1")
    assert [(d.status, d.resolved_by_run_id) for d in _letters(store, integ)] == [
        (RESOLVED, "run-replay-1")
    ]


def test_a_replay_whose_lease_was_taken_over_is_fenced_and_writes_nothing_more(
    store, golioth_factory, register_golioth, open_session, monkeypatch
):
    running = golioth_factory(device_count=4)
    integ = register_golioth(store, running, state_source="device")  # per-device reads
    target = list(running.emulator.device_ids())[2]
    _sync(open_session, store, integ, "run-devices", sync_devices)
    running.emulator.add_faults(
        {"kind": "server_error", "status": 400, "method": "GET", "path": f"{target}/data$"}
    )
    _sync(open_session, store, integ, "run-states", sync_device_states)
    [letter] = _letters(store, integ)
    running.emulator.clear_faults()
    # the stale replay stalls reading the device's state again, past its (short) lease
    running.emulator.add_faults(
        {
            "kind": "latency",
            "method": "GET",
            "path": f"{target}/data$",
            "latency_ms": 3000,
            "times": 1,
        }
    )
    monkeypatch.setenv(LEASE_TTL_ENV, "0.5")
    monkeypatch.setenv(LEASE_HEARTBEAT_ENV, "0")  # a stalled process: no heartbeat either
    outcome: dict[str, object] = {}

    def stale_replay() -> None:
        try:
            outcome["result"] = _replay(open_session, store, integ, "run-stale", ids=[letter.id])
        except Exception as exc:
            outcome["error"] = exc

    stale = threading.Thread(target=stale_replay)
    stale.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _letters(store, integ)[0].attempts < 1:
        time.sleep(0.02)  # claimed by the stale replay
    monkeypatch.delenv(LEASE_TTL_ENV)
    monkeypatch.delenv(LEASE_HEARTBEAT_ENV)

    new = _replay(open_session, store, integ, "run-new", ids=[letter.id])  # takes over
    stale.join(timeout=30)

    assert (new.status, new.resolved, new.counts.created) == ("success", 1, 1)
    assert isinstance(outcome.get("error"), FencedError), outcome
    [done] = _letters(store, integ)
    assert (done.status, done.resolved_by_run_id, done.attempts) == (RESOLVED, "run-new", 2)
    with store.connect() as conn:
        rows = activity_rows(conn, integ.organization_id, activity_type=REPLAY)
        log = {
            r["run_id"]: r
            for r in sync_log_rows(conn, integ.organization_id, integ.integration_id)
            if r["stream"] == REPLAY_STREAM
        }
    # the stale replay's state write and its letter's outcome never committed
    assert [(r["run_id"], r["metadata"]["outcome"]) for r in rows if r["parent_id"]] == [
        ("run-new", RESOLVED)
    ]
    assert (log["run-stale"]["status"], log["run-stale"]["error_type"]) == ("fenced", "fenced")
    assert log["run-new"]["status"] == "success"


@pytest.fixture(scope="module")
def broker():
    running = new_broker()
    yield running
    running.cleanup()


def test_mqtt_messages_rejected_for_their_size_are_replayed_once_the_limit_is_raised(
    store, broker, monkeypatch, open_session
):
    prefix = unique_prefix()
    integ = register_mqtt(store, broker, monkeypatch, prefix, max_message_bytes=200)
    _sync(
        open_session, store, integ, "run-session", sync_telemetry
    )  # creates the persistent session
    big = b'{"seq": 1, "note": "' + b"x" * 300 + b'"}'
    with simulator(broker, prefix) as sim:
        sim.publish_meta(
            "big-meta",
            b'{"version": 1, "name": "big", "attributes": {"blob": "' + b"y" * 300 + b'"}}',
        )
        sim.publish_meta("small", {"version": 1, "name": "small"})
        sim.publish_raw(f"{prefix}/chatty/telemetry", big)
    devices, messages = _sync(
        open_session,
        store,
        integ,
        "run-rejecting",
        sync_devices,
        lambda s: sync_telemetry(s, window_s=5.0),
    )
    assert (devices.counts.failed, messages.counts.failed) == (1, 1)
    assert sorted((d.stream, d.external_id) for d in _letters(store, integ)) == [
        ("devices", "big-meta"),
        ("telemetry", "chatty"),
    ]

    register_integration(
        store, dataclasses.replace(integ, settings={**integ.settings, "max_message_bytes": 4096})
    )
    replay = _replay(
        open_session, store, integ, "run-replay", ids=[d.id for d in _letters(store, integ)]
    )

    assert (replay.resolved, replay.counts.created) == (2, 2)
    assert {d.status for d in _letters(store, integ)} == {RESOLVED}
    with store.connect() as conn:
        assert (
            get_device(conn, integ.organization_id, integ.integration_id, "big-meta")["name"]
            == "big"
        )
        assert count_telemetry(conn, integ.organization_id, integ.integration_id) == 1
