"""The device state sync, on SQLite and PostgreSQL. Tests of per-device reads say so
(`state_source: device`); the listing paths: test_state_listing.py, test_listed_with_devices.py."""

from __future__ import annotations

import json

import sqlalchemy as sa

from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.devices import count_device_states
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.inventory import sync_devices


def test_states_are_stored_for_every_device_and_unchanged_on_rerun(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=60)
    integ = register_golioth(store, running, state_source="device")
    with open_session(store, integ.integration_id) as session:
        sync_devices(session)
        first = sync_device_states(session, batch_size=25)
        second = sync_device_states(session, batch_size=25)
    assert (first.counts.fetched, first.counts.created, first.counts.pages) == (60, 60, 3)
    assert (second.counts.created, second.counts.updated, second.counts.unchanged) == (0, 0, 60)
    with store.connect() as conn:
        assert count_device_states(conn, integ.organization_id, integ.integration_id) == 60


def test_a_desired_change_is_written_as_an_update(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=10)
    integ = register_golioth(store, running)
    target = next(running.emulator.device_ids())
    with open_session(store, integ.integration_id) as session:
        sync_devices(session)
        sync_device_states(session)
        running.emulator.write_state(target, "desired/interval_s", 42)
        result = sync_device_states(session)
    assert (result.counts.updated, result.counts.unchanged) == (1, 9)
    with store.connect() as conn:
        desired = conn.execute(
            sa.text(
                "SELECT desired FROM device_states WHERE organization_id = :o AND external_id = :e"
            ),
            {"o": integ.organization_id, "e": target},
        ).scalar_one()
    desired = desired if isinstance(desired, dict) else json.loads(desired)
    assert desired["interval_s"] == 42


def test_failed_state_reads_are_counted_and_the_rest_stored(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=20)
    integ = register_golioth(store, running, retry_max_attempts=1, state_source="device")
    with open_session(store, integ.integration_id) as session:
        sync_devices(session)
        running.emulator.add_faults(
            {"kind": "server_error", "status": 500, "path": "/data$", "times": 2}
        )
        result = sync_device_states(session)
    assert result.status == "partial" and (result.counts.failed, result.counts.created) == (2, 18)


def test_each_unreadable_state_is_an_activity_row_naming_integration_and_device(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=12)
    integ = register_golioth(store, running, state_source="device")
    with open_session(store, integ.integration_id) as session:
        sync_devices(session)
        # a 200 whose body is not JSON: the call itself succeeded, the document is bad
        running.emulator.add_faults({"kind": "malformed_json", "path": "/data$", "times": 1})
        result = sync_device_states(session)
    assert (result.status, result.counts.failed) == ("partial", 1)
    with store.connect() as conn:
        (row,) = activity_rows(
            conn,
            integ.organization_id,
            integration_id=integ.integration_id,
            activity_type="record_rejected",
        )
    device = row["metadata"]["external_id"]
    assert row["status"] == "failed" and row["error_type"] == "validation"
    assert integ.integration_id in row["error_message"] and device in row["error_message"]
    assert row["metadata"]["stream"] == "device_states" and row["run_id"]
