"""States read from the device list (`state_source: list`, the default): the same rows as
per-device reads, 100 devices per call; whatever the listing does not give is read one by one, so
a device the provider no longer has is still dead-lettered and a failed listing loses nothing.
These are state syncs on their own (a run other than the inventory's, which then stored the
states already: test_listed_with_devices.py); on SQLite and PostgreSQL, against the Golioth
emulator."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sync_pipelines.errors import ConfigError
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.sync.seen_ids import SeenIds
from sync_pipelines_tests.device_state_rows import state_rows


def _calls(running) -> tuple[int, int]:
    """(device-list calls with `statePath`, per-device state reads) the emulator served."""
    paths = [(r.path, r.query) for r in running.emulator.request_log.entries()]
    listed = sum(1 for path, query in paths if path.endswith("/devices") and "statePath" in query)
    one_by_one = sum(1 for path, _ in paths if path.endswith("/data"))
    return listed, one_by_one


def _forget_states(store, integration_id: str) -> None:
    """Drop the integration's state rows (the inventory listing stored them): the state sync
    under test then loads them all."""
    with store.transaction() as conn:
        conn.execute(
            sa.text("DELETE FROM device_states WHERE integration_id = :i"), {"i": integration_id}
        )


def test_listed_states_equal_per_device_reads_at_one_call_per_100(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=250)
    listed = register_golioth(store, running, integration_id="g-list")
    single = register_golioth(store, running, integration_id="g-single", state_source="device")
    for integ in (listed, single):
        with open_session(store, integ.integration_id) as session:
            sync_devices(session)
    _forget_states(store, "g-list")
    running.emulator.request_log.clear()
    with open_session(store, listed.integration_id) as session:
        result = sync_device_states(session)
    assert (result.status, result.counts.fetched, result.counts.created) == ("success", 250, 250)
    assert _calls(running) == (3, 0)

    with open_session(store, single.integration_id) as session:
        sync_device_states(session)
    assert state_rows(store, "g-list") == state_rows(store, "g-single")
    assert len(state_rows(store, "g-list")) == 250

    # a re-run through the listing changes nothing: the same hashes as a per-device read
    with open_session(store, listed.integration_id) as session:
        again = sync_device_states(session)
    assert (again.counts.created, again.counts.updated, again.counts.unchanged) == (0, 0, 250)


def test_a_device_the_provider_no_longer_lists_is_read_alone_and_dead_lettered(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=30)
    integ = register_golioth(store, running, retry_max_attempts=1)
    with open_session(store, integ.integration_id) as session:
        sync_devices(session)
    with open_session(store, integ.integration_id) as session:
        gone = sorted(running.emulator.device_ids())[7]
        running.emulator.delete_device(gone)
        running.emulator.request_log.clear()
        result = sync_device_states(session)
    assert result.status == "partial"
    # the other 29 came with the device list already, and have not changed since
    assert (result.counts.unchanged, result.counts.failed) == (29, 1)
    assert _calls(running) == (1, 1)  # the listing, then the one device it did not give
    with store.connect() as conn:
        letters = conn.execute(
            sa.text(
                "SELECT external_id FROM dead_letters WHERE integration_id = :i AND stream = :s"
            ),
            {"i": integ.integration_id, "s": "device_states"},
        ).scalars()
        assert list(letters) == [gone]


def test_a_listing_that_fails_for_good_falls_back_to_reading_each_device(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=150)
    integ = register_golioth(store, running, retry_max_attempts=2)
    with open_session(store, integ.integration_id) as session:
        sync_devices(session)
    _forget_states(store, integ.integration_id)
    with open_session(store, integ.integration_id) as session:
        running.emulator.request_log.clear()
        # the listing's first page answers 503 to both attempts: every device comes one by one
        running.emulator.add_faults(
            {"kind": "server_error", "status": 503, "path": "/devices$", "times": 2}
        )
        result = sync_device_states(session)
    assert (result.status, result.counts.created, result.counts.failed) == ("success", 150, 0)
    assert _calls(running) == (2, 150)  # two attempts at the listing, then each device
    assert len(state_rows(store, integ.integration_id)) == 150


def test_a_listing_page_whose_connection_drops_is_read_device_by_device(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=150)
    integ = register_golioth(store, running, retry_max_attempts=2)
    with open_session(store, integ.integration_id) as session:
        sync_devices(session)
    _forget_states(store, integ.integration_id)
    with open_session(store, integ.integration_id) as session:
        running.emulator.request_log.clear()
        # page 0 of the listing goes through; page 1 loses its connection on both attempts
        running.emulator.add_faults(
            {"kind": "drop_connection", "path": "/devices$", "after": 1, "times": 2}
        )
        result = sync_device_states(session)
    assert (result.status, result.counts.created, result.counts.failed) == ("success", 150, 0)
    assert _calls(running)[1] == 50  # only page 1's devices, one by one
    assert len(state_rows(store, integ.integration_id)) == 150


def test_an_unknown_state_source_is_refused_naming_the_setting(
    store, golioth_factory, register_golioth
):
    running = golioth_factory(device_count=3)
    with pytest.raises(
        ConfigError, match="setting 'state_source': must be one of device, list \\(got 'bulk'\\)"
    ):
        register_golioth(store, running, state_source="bulk")


def test_seen_ids_answer_membership_in_8_bytes_an_id():
    seen = SeenIds()
    seen.add(f"dev-{i}" for i in range(0, 1000, 2))
    seen.add(["dev-1"])
    assert seen.missing(["dev-0", "dev-1", "dev-3", "dev-998", "dev-999", "x"]) == [
        "dev-3",
        "dev-999",
        "x",
    ]
    assert len(seen) == 501
    assert SeenIds().missing(["a", "b"]) == ["a", "b"]
