"""How inventory batches are written: activity rows commit with the batch's data and are still
written when that transaction fails; a batch that fails to commit stops the sync with the
cursor at the last stored batch (the writer thread never commits past it)."""

from __future__ import annotations

import pytest

from sync_pipelines.observability.activity import HTTP_REQUEST, ActivityRecorder, ActivityScope
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.devices import count_devices
from sync_pipelines.store.sync_state import get_cursor, sync_log_rows
from sync_pipelines.sync.activity_sink import StoreActivitySink
from sync_pipelines.sync.inventory import sync_devices


class _Boom(Exception):
    pass


def test_activity_rows_of_a_failed_transaction_are_written_later(store, golioth, register_golioth):
    integ = register_golioth(store, golioth)
    recorder = ActivityRecorder(
        StoreActivitySink(store), ActivityScope(integ.organization_id, integ.integration_id)
    )
    for n in range(3):
        row = recorder.new_row(HTTP_REQUEST, status="success", request_id=f"req-{n}")
        recorder.record(row)
    taken = recorder.take_buffered()
    with pytest.raises(_Boom):
        try:
            with store.transaction() as conn:
                recorder.sink.insert_within(conn, taken)
                raise _Boom("the batch failed after its activity rows were inserted")
        except _Boom:
            recorder.put_back(taken)
            raise
    with store.connect() as conn:
        assert activity_rows(conn, integ.organization_id, integration_id=integ.integration_id) == []
    recorder.flush()
    with store.connect() as conn:
        stored = activity_rows(conn, integ.organization_id, integration_id=integ.integration_id)
    assert sorted(r["request_id"] for r in stored) == ["req-0", "req-1", "req-2"]


def test_sync_commits_every_call_row_with_the_batches(
    store, golioth, register_golioth, open_session
):
    integ = register_golioth(store, golioth, page_concurrency=1)
    with open_session(store, integ.integration_id, run_id="run-batches") as session:
        result = sync_devices(session, batch_size=100)
        assert session.recorder.take_buffered() == []  # nothing left behind for a later flush
    with store.connect() as conn:
        calls = activity_rows(
            conn, integ.organization_id, run_id="run-batches", activity_type=HTTP_REQUEST
        )
    sent = [r for r in golioth.emulator.requests() if r.path.endswith("/devices")]
    assert result.counts.created == 250 and len(calls) == len(sent) == result.counts.pages == 3


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_failed_batch_write_stops_the_sync_at_the_last_stored_batch(
    store, golioth, register_golioth, open_session
):
    """Postgres refuses text with a NUL byte: the second batch's write fails in the writer
    thread while the third is being fetched; the third is never written, the cursor stays
    after the first, and a re-run once the device is fixed stores everything exactly once."""
    integ = register_golioth(store, golioth, page_concurrency=1)
    poisoned = list(golioth.emulator.device_ids())[150]  # on the second page of 100
    golioth.emulator.patch_device(poisoned, {"name": "bad\u0000name"})
    with (
        open_session(store, integ.integration_id) as session,
        # text COPY: psycopg refuses the NUL; binary COPY: the server does, naming the column
        pytest.raises(Exception, match=r"NUL|0x00(.|\n)*column name"),
    ):
        sync_devices(session, batch_size=100)
    with store.connect() as conn:
        assert count_devices(conn, integ.organization_id, integ.integration_id) == 100
        assert get_cursor(conn, integ.organization_id, integ.integration_id, "devices") == {
            "next_page": 1,
            "per_page": 100,
        }
        (log,) = sync_log_rows(conn, integ.organization_id, integ.integration_id)
        calls = activity_rows(
            conn,
            integ.organization_id,
            integration_id=integ.integration_id,
            activity_type=HTTP_REQUEST,
        )
    assert log["status"] == "failed" and log["created"] == 100
    assert len(calls) == 3  # the calls of the failed batches still have their rows
    golioth.emulator.patch_device(poisoned, {"name": "fixed"})
    with open_session(store, integ.integration_id) as session:
        rerun = sync_devices(session, batch_size=100)
    assert rerun.status == "success" and rerun.counts.created == 150
    with store.connect() as conn:
        assert count_devices(conn, integ.organization_id, integ.integration_id) == 250
