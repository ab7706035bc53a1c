"""PostgreSQL restarted under a running sync, on a private server (the shared one serves the
other tests): a restart between two transactions is absorbed (the pool pings and reconnects);
a database that is down when a batch commits fails the sync as transient, and the re-run
resumes from the last committed cursor. Either way: nothing lost, nothing doubled."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from sync_pipelines.errors import category_of
from sync_pipelines.store.database import Store
from sync_pipelines.store.migrations import migrate
from sync_pipelines.store.sync_leases import read_lease
from sync_pipelines.store.sync_state import sync_log_rows
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines_tests.private_postgres import PrivatePostgres, running_private_postgres

DEVICES, PAGE, BATCH = 400, 50, 100


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    with running_private_postgres() as pg:
        yield pg


@pytest.fixture
def pg_store(private_pg) -> Iterator[Store]:
    store = Store(private_pg.url)
    with store.transaction() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    migrate(store)
    yield store
    store.dispose()


def _ids(store, integ) -> list[str]:
    with store.connect() as conn:
        return list(
            conn.execute(
                sa.text("SELECT external_id FROM devices WHERE integration_id = :i"),
                {"i": integ.integration_id},
            ).scalars()
        )


def _after_first_batch(store, integ, action) -> threading.Thread:
    """Run `action` once the first batch is committed (the sync is then waiting on page 2)."""

    def watch() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if len(_ids(store, integ)) >= BATCH:
                    break
            except Exception:
                pass
            time.sleep(0.02)
        action()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _lease_released(store, integ) -> bool:
    try:
        with store.connect() as conn:
            lease = read_lease(conn, integ.organization_id, integ.integration_id, "devices")
    except sa.exc.OperationalError:  # the restarted server is not answering yet
        return False
    return lease is not None and not lease.held


def _slow_page_two(running) -> None:
    # pages 0 and 1 (the first batch) come fast; page 2 takes long enough for the database to
    # go away and come back while the sync waits on the provider, between two transactions (a
    # restart takes ~1 s, several on a loaded 2-core machine: 6 s leaves room)
    running.emulator.add_faults(
        {"kind": "latency", "path": "/devices$", "latency_ms": 6000, "after": 2, "times": 1}
    )


def test_a_restart_between_transactions_is_absorbed(
    private_pg, pg_store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=DEVICES)
    integ = register_golioth(pg_store, running, page_concurrency=1, page_size=PAGE)
    _slow_page_two(running)
    watcher = _after_first_batch(pg_store, integ, private_pg.restart)
    with open_session(pg_store, integ.integration_id) as session:
        result = sync_devices(session, batch_size=BATCH)
    watcher.join(timeout=30)
    ids = _ids(pg_store, integ)
    assert result.status == "success" and result.counts.created == DEVICES
    assert len(ids) == len(set(ids)) == DEVICES and set(ids) == set(running.emulator.device_ids())


def test_a_database_down_at_commit_fails_the_sync_as_transient_and_the_rerun_completes(
    private_pg, pg_store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=DEVICES)
    integ = register_golioth(pg_store, running, page_concurrency=1, page_size=PAGE)
    _slow_page_two(running)
    watcher = _after_first_batch(pg_store, integ, private_pg.stop)
    with (
        pytest.raises(Exception) as failed,
        open_session(pg_store, integ.integration_id) as session,
    ):
        sync_devices(session, batch_size=BATCH)
    watcher.join(timeout=30)
    assert category_of(failed.value) == "transient", repr(failed.value)
    private_pg.start()
    # the lease release the dead store refused lands once it is back (retried in the
    # background), so a sync in another process need not wait for the lease to expire
    deadline = time.monotonic() + 20
    while not _lease_released(pg_store, integ):
        assert time.monotonic() < deadline, "the failed sync's lease was never released"
        time.sleep(0.2)

    with open_session(pg_store, integ.integration_id) as session:
        rerun = sync_devices(session, batch_size=BATCH)
    ids = _ids(pg_store, integ)
    assert rerun.status == "success"
    assert len(ids) == len(set(ids)) == DEVICES and set(ids) == set(running.emulator.device_ids())
    with pg_store.connect() as conn:
        first, second = sync_log_rows(conn, integ.organization_id, integ.integration_id)
    # the first sync could not record its own end (the database was down): the re-run, taking
    # the stream's lease, closed it `abandoned`; it started from the cursor the first one's last
    # committed batch left
    assert first["status"] == "abandoned" and second["status"] == "success"
    assert second["cursor_before"] is not None
