"""Export details the conformance suite does not cover: merge semantics, changes already
applied on the provider, changes made before any state sync, unreadable devices, bad rules, an
export whose lease was taken over."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from sync_pipelines.errors import ConfigError, FencedError
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.desired import desired_changes, request_desired_change, sync_conflicts
from sync_pipelines.store.integrations import save_integration
from sync_pipelines.store.sync_state import sync_log_rows
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.export import STREAM, export_desired_states, merge_patch
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.sync.stream_lease import LEASE_HEARTBEAT_ENV, LEASE_TTL_ENV


def test_merge_patch_merges_objects_and_deletes_nulls():
    target = {"a": 1, "nested": {"keep": True, "drop": 2}, "gone": "x"}
    patch = {"a": 2, "nested": {"drop": None, "new": 3}, "gone": None, "added": [1]}
    assert merge_patch(target, patch) == {"a": 2, "nested": {"keep": True, "new": 3}, "added": [1]}
    assert target["nested"] == {"keep": True, "drop": 2}, "the target is not mutated"


def _synced(store, golioth, register_golioth, open_session, **settings):
    integ = register_golioth(store, golioth, **settings)
    with open_session(store, integ.integration_id) as session:
        sync_devices(session)
        sync_device_states(session)
    return integ


def test_several_changes_to_one_device_are_merged_into_one_push(
    store, golioth, register_golioth, open_session
):
    integ = _synced(store, golioth, register_golioth, open_session)
    device = next(golioth.emulator.device_ids())
    with store.transaction() as conn:
        request_desired_change(
            conn, "org-a", integ.integration_id, device, {"interval_s": 30, "led": True}
        )
        request_desired_change(
            conn, "org-a", integ.integration_id, device, {"led": None, "mode": "eco"}
        )
    golioth.emulator.clear_requests()
    with open_session(store, integ.integration_id) as session:
        result = export_desired_states(session)
    assert (result.status, result.counts.fetched, result.counts.updated) == ("success", 2, 1)
    desired = golioth.emulator.read_state(device, "desired")
    assert desired["interval_s"] == 30 and desired["mode"] == "eco"
    posts = [r for r in golioth.emulator.requests() if r.method == "POST"]
    assert len(posts) == 1
    with store.connect() as conn:
        assert {c["status"] for c in desired_changes(conn, "org-a", integ.integration_id)} == {
            "pushed"
        }


def test_a_change_the_provider_already_has_is_not_pushed_again(
    store, golioth, register_golioth, open_session
):
    integ = _synced(store, golioth, register_golioth, open_session)
    device = next(golioth.emulator.device_ids())
    current = golioth.emulator.read_state(device, "desired")
    with store.transaction() as conn:
        request_desired_change(conn, "org-a", integ.integration_id, device, dict(current))
    golioth.emulator.clear_requests()
    with open_session(store, integ.integration_id) as session:
        result = export_desired_states(session)
    assert (result.counts.unchanged, result.counts.updated, result.counts.conflicts) == (1, 0, 0)
    assert not [r for r in golioth.emulator.requests() if r.method == "POST"]


def test_a_change_made_before_any_state_sync_is_pushed_against_the_current_version(
    store, golioth, register_golioth, open_session
):
    integ = register_golioth(store, golioth)
    device = next(golioth.emulator.device_ids())
    with store.transaction() as conn:
        request_desired_change(conn, "org-a", integ.integration_id, device, {"interval_s": 45})
    with open_session(store, integ.integration_id) as session:
        result = export_desired_states(session)
    assert (result.counts.updated, result.counts.conflicts) == (1, 0)
    assert golioth.emulator.read_state(device, "desired")["interval_s"] == 45


def test_an_unknown_device_fails_its_change_and_the_rest_is_pushed(
    store, golioth, register_golioth, open_session
):
    integ = _synced(store, golioth, register_golioth, open_session)
    device = next(golioth.emulator.device_ids())
    with store.transaction() as conn:
        request_desired_change(conn, "org-a", integ.integration_id, "no-such-device", {"x": 1})
        request_desired_change(conn, "org-a", integ.integration_id, device, {"x": 1})
    with open_session(store, integ.integration_id) as session:
        result = export_desired_states(session)
    assert (result.status, result.counts.updated, result.counts.failed) == ("partial", 1, 1)
    with store.connect() as conn:
        failed = [
            c
            for c in desired_changes(conn, "org-a", integ.integration_id)
            if c["status"] == "failed"
        ]
    assert failed[0]["external_id"] == "no-such-device"
    assert "no-such-device" in failed[0]["error_message"]


def test_an_unknown_conflict_rule_is_a_recorded_config_error(
    store, golioth, register_golioth, open_session
):
    with pytest.raises(ConfigError, match="setting 'conflict_resolution': must be one of"):
        register_golioth(store, golioth, conflict_resolution="whoever_is_louder")
    # stored without the check (an older version, a hand edit): refused when the run resolves it
    integ = register_golioth(store, golioth)
    with store.transaction() as conn:
        save_integration(
            conn,
            replace(integ, settings={**integ.settings, "conflict_resolution": "whoever_is_louder"}),
        )
    with (
        pytest.raises(ConfigError, match="conflict_resolution"),
        open_session(store, integ.integration_id) as session,
    ):
        export_desired_states(session)
    with store.connect() as conn:
        (log,) = sync_log_rows(conn, "org-a", integ.integration_id)
        (op,) = activity_rows(
            conn, "org-a", integration_id=integ.integration_id, activity_type="export"
        )
    assert log["status"] == "failed" and "whoever_is_louder" in log["error_message"]
    assert op["status"] == "failed"


def test_an_empty_patch_is_refused_with_the_device_named(store, golioth, register_golioth):
    integ = register_golioth(store, golioth)
    with pytest.raises(ValueError, match="dev-1"), store.transaction() as conn:
        request_desired_change(conn, "org-a", integ.integration_id, "dev-1", {})


def test_an_export_whose_lease_was_taken_over_is_fenced_and_writes_nothing_more(
    store, golioth_factory, register_golioth, open_session, monkeypatch
):
    running = golioth_factory(device_count=5)
    integ = _synced(store, running, register_golioth, open_session)
    devices = list(running.emulator.device_ids())
    with store.transaction() as conn:
        for n, device in enumerate(devices):
            request_desired_change(conn, "org-a", integ.integration_id, device, {"interval_s": n})
    # the stale export stalls on its third push, past its (short) lease
    running.emulator.add_faults(
        {
            "kind": "latency",
            "method": "POST",
            "path": "/data/desired$",
            "latency_ms": 3000,
            "after": 2,
            "times": 1,
        }
    )
    monkeypatch.setenv(LEASE_TTL_ENV, "0.5")
    monkeypatch.setenv(LEASE_HEARTBEAT_ENV, "0")  # a stalled process: no heartbeat either
    outcome: dict[str, object] = {}

    def stale_export() -> None:
        try:
            with open_session(store, integ.integration_id, run_id="run-stale") as session:
                outcome["result"] = export_desired_states(session)
        except Exception as exc:
            outcome["error"] = exc

    stale = threading.Thread(target=stale_export)
    stale.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with store.connect() as conn:
            changes = desired_changes(conn, "org-a", integ.integration_id)
        if sum(c["status"] == "pushed" for c in changes) >= 2:
            break
        time.sleep(0.02)
    monkeypatch.delenv(LEASE_TTL_ENV)
    monkeypatch.delenv(LEASE_HEARTBEAT_ENV)

    with open_session(store, integ.integration_id, run_id="run-new") as session:
        result = export_desired_states(session)  # waits out the stale lease, takes over
    stale.join(timeout=30)

    assert result.status == "success" and result.counts.updated == 3
    assert isinstance(outcome.get("error"), FencedError), outcome
    with store.connect() as conn:
        changes = desired_changes(conn, "org-a", integ.integration_id)
        conflicts = sync_conflicts(conn, "org-a", integ.integration_id)
        log = {
            r["run_id"]: r
            for r in sync_log_rows(conn, "org-a", integ.integration_id)
            if r["stream"] == STREAM
        }
    # the stale export's third push never committed: the new export pushed changes 3-5
    assert [(c["status"], c["run_id"]) for c in changes] == [("pushed", "run-stale")] * 2 + [
        ("pushed", "run-new")
    ] * 3
    assert conflicts == []
    assert (log["run-stale"]["status"], log["run-stale"]["error_type"]) == ("fenced", "fenced")
    assert log["run-new"]["status"] == "success"
    assert [running.emulator.read_state(d, "desired")["interval_s"] for d in devices] == [
        0,
        1,
        2,
        3,
        4,
    ]
