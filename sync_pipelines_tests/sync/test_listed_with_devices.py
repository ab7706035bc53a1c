"""A full sync reads a listing that carries devices and states once (Golioth's list with
`statePath`, Azure's twin query): the inventory sync writes both from the same pages, and the
state sync of the same run records those states as its own without reading them again — its
sync-log row and activity operation say where they came from. Only a device listed without its
state is read alone. On SQLite and PostgreSQL, against the Golioth emulator (Azure's: test_azure_iot_provider.py)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from sync_pipelines.errors import ProviderError
from sync_pipelines.store.sync_state import get_cursor, sync_log_rows
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.sync.listed_states import MAX_WITHOUT_STATE, ListedStates, resumed_or_new
from sync_pipelines_tests.device_state_rows import state_rows


def _golioth_calls(running) -> tuple[int, int, int]:
    """(device-list calls without `statePath`, with it, per-device state reads) served."""
    paths = [(r.path, r.query) for r in running.emulator.request_log.entries()]
    plain = sum(1 for p, q in paths if p.endswith("/devices") and "statePath" not in q)
    listed = sum(1 for p, q in paths if p.endswith("/devices") and "statePath" in q)
    return plain, listed, sum(1 for p, _ in paths if p.endswith("/data"))


def _states_operation(store, integration_id: str) -> dict:
    with store.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT metadata FROM integration_activity_log WHERE integration_id = :i "
                "AND activity_type = 'state_import' AND parent_id IS NULL "
                "ORDER BY created_at DESC LIMIT 1"
            ),
            {"i": integration_id},
        ).scalar_one()
    return row if isinstance(row, dict) else json.loads(row)


def test_a_golioth_full_sync_reads_the_device_list_once(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=250)
    integ = register_golioth(store, running, integration_id="g-once")
    single = register_golioth(store, running, integration_id="g-each", state_source="device")
    running.emulator.request_log.clear()
    with open_session(store, integ.integration_id) as session:
        devices = sync_devices(session)
        states = sync_device_states(session)
    # three pages of 100 with their states, nothing else: no plain list, no per-device read
    assert _golioth_calls(running) == (0, 3, 0)
    assert (devices.status, devices.counts.created) == ("success", 250)
    assert (states.status, states.counts.fetched, states.counts.created) == ("success", 250, 250)
    assert states.counts.pages == 3

    with open_session(store, single.integration_id) as session:
        sync_devices(session)
        sync_device_states(session)
    # the same state rows as one read per device, and the same device rows as a plain list
    assert state_rows(store, "g-once") == state_rows(store, "g-each")
    assert len(state_rows(store, "g-once")) == 250
    with store.connect() as conn:
        hashes = sa.text(
            "SELECT external_id, content_hash FROM devices WHERE integration_id = :i "
            "ORDER BY external_id"
        )
        once = conn.execute(hashes, {"i": "g-once"}).all()
        each = conn.execute(hashes, {"i": "g-each"}).all()
        assert once == each and len(once) == 250
        log = {r["stream"]: r for r in sync_log_rows(conn, "org-a", "g-once")}
        # the record is consumed: a later state sync reads for itself
        assert get_cursor(conn, "org-a", "g-once", "device_states") is None
    assert (log["device_states"]["fetched"], log["device_states"]["created"]) == (250, 250)
    assert log["device_states"]["status"] == "success"
    cursor_before = log["device_states"]["cursor_before"]  # JSON text on SQLite
    if isinstance(cursor_before, str):
        cursor_before = json.loads(cursor_before)
    assert ListedStates.from_cursor(cursor_before).sync_id == devices.sync_id
    operation = _states_operation(store, "g-once")
    assert operation["states_from"] == "device_listing"
    assert operation["listing_sync_id"] == devices.sync_id


def test_a_device_listed_without_state_is_read_alone(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=40)
    integ = register_golioth(store, running)
    silent = sorted(running.emulator.device_ids())[5]
    running.emulator.erase_state(silent)  # it never reported: the list leaves its `data` out
    running.emulator.request_log.clear()
    with open_session(store, integ.integration_id) as session:
        sync_devices(session)
        states = sync_device_states(session)
    assert _golioth_calls(running) == (0, 1, 1)
    assert (states.counts.fetched, states.counts.created, states.counts.failed) == (40, 40, 0)
    rows = state_rows(store, integ.integration_id)
    assert rows[silent][0] is None and len(rows) == 40  # reported: null, as its read answered


def test_a_state_sync_of_another_run_reads_the_states_itself(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=120)
    integ = register_golioth(store, running)
    with open_session(store, integ.integration_id) as session:
        sync_devices(session)
    running.emulator.write_state(sorted(running.emulator.device_ids())[0], "/", {"fw": "2.0"})
    running.emulator.request_log.clear()
    with open_session(store, integ.integration_id) as session:
        states = sync_device_states(session)
    # the inventory's record belongs to its own run: this one lists the states again
    assert _golioth_calls(running) == (0, 2, 0)
    assert (states.counts.updated, states.counts.unchanged) == (1, 119)


def test_a_listing_that_stopped_leaves_the_states_to_the_state_sync(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=250)
    # pages one at a time, so the third request is page 2 (fetched ahead concurrently, page 1
    # could be the third to arrive: CI saw the fault hit it)
    integ = register_golioth(store, running, retry_max_attempts=1, page_concurrency=1)
    # page 2 fails for good: the inventory keeps pages 0 and 1 (and their states), then fails
    running.emulator.add_faults(
        {"kind": "server_error", "status": 503, "path": "/devices$", "after": 2, "times": 1}
    )
    with open_session(store, integ.integration_id) as session:
        with pytest.raises(ProviderError):
            sync_devices(session)
        with store.connect() as conn:
            record = ListedStates.from_cursor(
                get_cursor(conn, "org-a", integ.integration_id, "device_states")
            )
        assert record is not None and not record.complete and record.fetched == 200
        running.emulator.request_log.clear()
        states = sync_device_states(session)
    # not taken as read: the state sync lists them all itself
    assert _golioth_calls(running) == (0, 3, 0)
    assert states.counts.unchanged == 200 and states.counts.created == 0


def test_the_record_serves_only_a_whole_listing_of_its_own_run():
    fresh = resumed_or_new(None, "epoch-1", "run-1", "sync-1", resumed=False)
    done = fresh.after_batch(
        run_id="run-1",
        sync_id="sync-1",
        pages=2,
        states=150,
        created=150,
        updated=0,
        unchanged=0,
        without_state=["d-7"],
        completes=True,
    )
    assert done.serves("run-1") and not done.serves("run-2")
    assert ListedStates.from_cursor(done.to_cursor()) == done
    # a scan resumed from a cursor without a record of this epoch stored no states before it
    resumed = resumed_or_new(None, "epoch-1", "run-2", "sync-2", resumed=True)
    assert not resumed.after_batch(
        run_id="run-2",
        sync_id="sync-2",
        pages=1,
        states=50,
        created=50,
        updated=0,
        unchanged=0,
        without_state=[],
        completes=True,
    ).serves("run-2")
    # a resumed scan of the same epoch carries the record on
    half = fresh.after_batch(
        run_id="run-1",
        sync_id="sync-1",
        pages=1,
        states=100,
        created=100,
        updated=0,
        unchanged=0,
        without_state=[],
        completes=False,
    )
    carried = resumed_or_new(half.to_cursor(), "epoch-1", "run-2", "sync-2", resumed=True)
    assert carried == half
    # too many devices without a state: the state sync reads for itself
    many = fresh.after_batch(
        run_id="run-1",
        sync_id="sync-1",
        pages=20,
        states=0,
        created=0,
        updated=0,
        unchanged=0,
        without_state=[f"d-{i}" for i in range(MAX_WITHOUT_STATE + 1)],
        completes=True,
    )
    assert many.overflow and many.without_state == () and not many.serves("run-1")


def test_every_batch_counts_its_states_while_the_next_is_already_written(
    store, golioth_factory, register_golioth, open_session, monkeypatch
):
    """The writer takes batch N+1 before the sync has counted batch N (two batches are handed
    over at once): the states each batch stored still add up, batch after batch. The sync is
    made slow to count, so the writer is always a batch ahead."""
    import time

    from sync_pipelines.sync import inventory

    running = golioth_factory(device_count=1200)
    integ = register_golioth(store, running, integration_id="g-queue")
    settle = inventory._BatchWriter._settle_oldest

    def late_settle(self) -> None:
        time.sleep(0.05)  # the writer meanwhile commits the batch queued behind this one
        settle(self)

    monkeypatch.setattr(inventory._BatchWriter, "_settle_oldest", late_settle)
    with open_session(store, integ.integration_id) as session:
        devices = sync_devices(session, batch_size=100)
        states = sync_device_states(session)
    assert (devices.status, devices.counts.created, devices.counts.pages) == ("success", 1200, 12)
    assert (states.status, states.counts.fetched, states.counts.created) == ("success", 1200, 1200)
    assert states.counts.pages == 12
    assert len(state_rows(store, "g-queue")) == 1200
