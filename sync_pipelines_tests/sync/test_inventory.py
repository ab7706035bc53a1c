"""The inventory sync against the real Golioth emulator, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from sync_pipelines.errors import MalformedResponseError
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.devices import count_devices, get_device
from sync_pipelines.store.sync_state import get_cursor, sync_log_rows
from sync_pipelines.sync.inventory import sync_devices


def _device_count(store, integ) -> int:
    with store.connect() as conn:
        return count_devices(conn, integ.organization_id, integ.integration_id)


def test_first_sync_stores_every_device(store, golioth, register_golioth, open_session):
    integ = register_golioth(store, golioth)
    with open_session(store, integ.integration_id) as session:
        result = sync_devices(session)
    assert result.status == "success"
    assert (result.counts.fetched, result.counts.created, result.counts.failed) == (250, 250, 0)
    assert result.counts.pages == 3
    assert _device_count(store, integ) == golioth.emulator.device_count == 250


def test_second_sync_changes_nothing_and_leaves_exactly_n_rows(
    store, golioth, register_golioth, open_session
):
    integ = register_golioth(store, golioth)
    with open_session(store, integ.integration_id) as session:
        sync_devices(session)
    with open_session(store, integ.integration_id) as session:
        again = sync_devices(session)
    assert (again.counts.created, again.counts.updated, again.counts.unchanged) == (0, 0, 250)
    assert _device_count(store, integ) == 250


def test_changed_device_is_updated_with_provenance(store, golioth, register_golioth, open_session):
    integ = register_golioth(store, golioth)
    with open_session(store, integ.integration_id) as session:
        sync_devices(session)
    target = next(iter(golioth.emulator.device_ids()))
    golioth.emulator.patch_device(target, {"name": "renamed-device"})
    with open_session(store, integ.integration_id, run_id="run-two") as session:
        result = sync_devices(session)
    assert (result.counts.updated, result.counts.unchanged) == (1, 249)
    with store.connect() as conn:
        row = get_device(conn, integ.organization_id, integ.integration_id, target)
        page_requests = activity_rows(
            conn, integ.organization_id, run_id="run-two", activity_type="http_request"
        )
    assert row["name"] == "renamed-device"
    assert row["last_run_id"] == "run-two"
    assert row["last_request_id"] in {r["request_id"] for r in page_requests}


def test_new_devices_are_picked_up(store, golioth, register_golioth, open_session):
    integ = register_golioth(store, golioth)
    with open_session(store, integ.integration_id) as session:
        sync_devices(session)
    golioth.emulator.add_devices(30)
    with open_session(store, integ.integration_id) as session:
        result = sync_devices(session)
    assert result.counts.created == 30
    assert _device_count(store, integ) == 280


def test_every_http_request_has_an_activity_row_with_the_request_id_sent(
    store, golioth, register_golioth, open_session
):
    integ = register_golioth(store, golioth, per_page=100)
    golioth.emulator.clear_requests()
    with open_session(store, integ.integration_id, run_id="run-ids") as session:
        sync_devices(session)
    received = [r for r in golioth.emulator.requests() if r.path.startswith("/v1/")]
    with store.connect() as conn:
        rows = activity_rows(
            conn, integ.organization_id, run_id="run-ids", activity_type="http_request"
        )
    assert len(received) == 3  # 250 devices at page size 100
    assert sorted(r.request_id for r in received) == sorted(r["request_id"] for r in rows)
    assert all(r["run_id"] == "run-ids" and r["step_key"] == "test_step" for r in rows)
    assert all(
        r["status"] == "success" and r["status_code"] == 200 and r["response_time_ms"] > 0
        for r in rows
    )
    assert all("/devices?page=" in r["endpoint"] for r in rows)


def test_import_operation_has_started_and_completed_with_counts(
    store, golioth, register_golioth, open_session
):
    integ = register_golioth(store, golioth)
    with open_session(store, integ.integration_id, run_id="run-op") as session:
        sync_devices(session)
    with store.connect() as conn:
        (op,) = activity_rows(conn, integ.organization_id, run_id="run-op", activity_type="import")
        calls = activity_rows(
            conn, integ.organization_id, run_id="run-op", activity_type="http_request"
        )
    assert op["status"] == "success" and op["completed_at"] is not None
    assert all(c["parent_id"] == op["id"] for c in calls)


def test_sync_log_row_records_counts_and_cursor(store, golioth, register_golioth, open_session):
    integ = register_golioth(store, golioth)
    with open_session(store, integ.integration_id, run_id="run-log") as session:
        sync_devices(session)
    with store.connect() as conn:
        (row,) = sync_log_rows(conn, integ.organization_id, integ.integration_id)
    assert row["status"] == "success" and row["run_id"] == "run-log"
    assert (row["fetched"], row["created"], row["pages"]) == (250, 250, 3)
    assert row["cursor_after"] is None  # a complete scan: the next one starts afresh


def test_malformed_page_fails_the_sync_and_keeps_only_whole_pages(
    store, golioth, register_golioth, open_session
):
    integ = register_golioth(store, golioth, page_concurrency=1)
    golioth.emulator.add_faults(
        {"kind": "malformed_json", "path": "/devices$", "after": 2, "times": 1}
    )
    with (
        open_session(store, integ.integration_id) as session,
        pytest.raises(MalformedResponseError) as failure,
    ):
        sync_devices(session, batch_size=1)
    assert "not valid JSON" in str(failure.value) and "request_id=" in str(failure.value)
    with store.connect() as conn:
        assert count_devices(conn, integ.organization_id, integ.integration_id) == 200
        assert get_cursor(conn, integ.organization_id, integ.integration_id, "devices") == {
            "next_page": 2,
            "per_page": 100,
        }
        (log,) = sync_log_rows(conn, integ.organization_id, integ.integration_id)
    assert log["status"] == "failed" and log["error_type"] == "validation"


def test_rerun_after_failure_resumes_from_the_cursor_without_duplicates(
    store, golioth, register_golioth, open_session
):
    integ = register_golioth(store, golioth, page_concurrency=1)
    golioth.emulator.add_faults(
        {"kind": "truncated_json", "path": "/devices$", "after": 2, "times": 1}
    )
    with (
        open_session(store, integ.integration_id) as session,
        pytest.raises(MalformedResponseError),
    ):
        sync_devices(session, batch_size=1)
    golioth.emulator.clear_requests()
    with open_session(store, integ.integration_id) as session:
        result = sync_devices(session, batch_size=1)
    pages_asked = sorted(
        int(r.query.split("page=")[1].split("&")[0])
        for r in golioth.emulator.requests()
        if r.path.endswith("/devices")
    )
    assert pages_asked == [1, 2]  # resumed at the cursor, with one page of overlap
    assert result.status == "success"
    assert _device_count(store, integ) == 250


def test_poison_record_is_counted_failed_and_the_rest_are_stored(
    store, golioth, register_golioth, open_session
):
    integ = register_golioth(store, golioth)
    golioth.emulator.add_faults({"kind": "poison_record", "device_index": 7})
    with open_session(store, integ.integration_id, run_id="run-poison") as session:
        result = sync_devices(session)
    assert result.status == "partial"
    assert (result.counts.fetched, result.counts.created, result.counts.failed) == (250, 249, 1)
    with store.connect() as conn:
        (rejected,) = activity_rows(
            conn, integ.organization_id, run_id="run-poison", activity_type="record_rejected"
        )
        (op,) = activity_rows(
            conn, integ.organization_id, run_id="run-poison", activity_type="import"
        )
    assert rejected["status"] == "failed" and rejected["error_type"] == "validation"
    assert rejected["error_message"]
    assert op["status"] == "partial"


def test_counts_sent_as_strings_are_understood(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=120, int64_as_string=True)
    integ = register_golioth(store, running)
    with open_session(store, integ.integration_id) as session:
        result = sync_devices(session)
    assert result.counts.created == 120


def test_devices_of_another_organization_are_not_visible(
    store, golioth, register_golioth, open_session
):
    integ = register_golioth(store, golioth)
    with open_session(store, integ.integration_id) as session:
        sync_devices(session)
    with store.connect() as conn:
        assert count_devices(conn, "org-other", integ.integration_id) == 0
        assert activity_rows(conn, "org-other", integration_id=integ.integration_id) == []


def test_activity_log_switched_off_stores_devices_and_no_activity_rows(
    sqlite_store, golioth, register_golioth, open_session, monkeypatch
):
    """`SYNC_ACTIVITY_LOG=off` (what the benchmark compares against): data as usual, no rows,
    while the run's figures (calls, latency) are still counted."""
    monkeypatch.setenv("SYNC_ACTIVITY_LOG", "off")
    integ = register_golioth(sqlite_store, golioth)
    with open_session(sqlite_store, integ.integration_id) as session:
        result = sync_devices(session)
    assert (
        result.status == "success"
        and _device_count(sqlite_store, integ) == result.counts.fetched > 0
    )
    with sqlite_store.connect() as conn:
        assert activity_rows(conn, integ.organization_id, integration_id=integ.integration_id) == []
    assert result.metadata()["http_requests"] > 0
