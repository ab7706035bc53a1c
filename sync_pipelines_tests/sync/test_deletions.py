"""Deletions in the inventory engine (Golioth emulator, SQLite and PostgreSQL): only a complete,
clean scan deletes; a resumed scan is the same epoch; the mass-deletion guard holds a scan that
would delete more than `max_delete_fraction`, fails the inventory-volume check, and
`devices confirm-deletions` applies the hold once; Azure's DeviceDeleted event deletes at once."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from sync_pipelines.checks.context import CheckContext
from sync_pipelines.checks.inventory_volume import inventory_volume_as_expected
from sync_pipelines.checks.outcome import ERROR
from sync_pipelines.cli import main
from sync_pipelines.clock import utc_now
from sync_pipelines.errors import ConfigError, MalformedResponseError
from sync_pipelines.observability.activity import DELETIONS_CONFIRMED
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.deletions import held_deletions
from sync_pipelines.store.devices import count_devices, get_device
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.sync.webhook_processing import process_webhook_events
from sync_pipelines_tests.webhook_support import (
    azure_event,
    insert_pending,
    register_webhook_integration,
)


def _sync(open_session, store, integ, **kwargs):
    with open_session(store, integ.integration_id) as session:
        return sync_devices(session, **kwargs)


def _statuses(store, integ, ids) -> dict[str, tuple[str | None, bool]]:
    with store.connect() as conn:
        rows = {e: get_device(conn, integ.organization_id, integ.integration_id, e) for e in ids}
    return {e: (r["status"], r["deleted_at"] is not None) for e, r in rows.items()}


def _delete_at_peer(golioth, count: int, start: int = 120) -> list[str]:
    ids = list(golioth.emulator.device_ids())[start : start + count]
    for external_id in ids:
        golioth.emulator.delete_device(external_id)
    return ids


def test_a_partial_scan_deletes_nothing(store, golioth, register_golioth, open_session):
    integ = register_golioth(store, golioth)
    _sync(open_session, store, integ)
    gone = _delete_at_peer(golioth, 3)
    golioth.emulator.add_faults({"kind": "poison_record", "device_index": 7})
    partial = _sync(open_session, store, integ)
    assert (partial.status, partial.counts.deleted) == ("partial", 0)
    assert all(not deleted for _s, deleted in _statuses(store, integ, gone).values())
    golioth.emulator.clear_faults()
    assert _sync(open_session, store, integ).counts.deleted == 3


def test_a_failed_scan_deletes_nothing_and_its_resumed_rest_is_the_same_epoch(
    store, golioth, register_golioth, open_session
):
    integ = register_golioth(store, golioth, page_concurrency=1)
    _sync(open_session, store, integ)
    gone = _delete_at_peer(golioth, 4, start=10)  # on the first page, seen before the failure
    golioth.emulator.add_faults(
        {"kind": "malformed_json", "path": "/devices$", "after": 1, "times": 1}
    )
    with pytest.raises(MalformedResponseError):
        _sync(open_session, store, integ, batch_size=1)
    assert all(not deleted for _s, deleted in _statuses(store, integ, gone).values())
    resumed = _sync(open_session, store, integ, batch_size=1)
    # the resumed sync listed pages 1-2 only; devices of page 0, seen by the failed sync of the
    # same epoch, are not deleted
    assert resumed.counts.deleted == 4
    assert all(deleted for _s, deleted in _statuses(store, integ, gone).values())
    with store.connect() as conn:
        assert count_devices(conn, integ.organization_id, integ.integration_id) == 246


def test_deletions_within_max_delete_fraction_are_applied(
    store, golioth, register_golioth, open_session
):
    integ = register_golioth(store, golioth, max_delete_fraction=0.05)
    _sync(open_session, store, integ)
    gone = _delete_at_peer(golioth, 12)  # 4.8 % of 250
    assert _sync(open_session, store, integ).counts.deleted == 12
    assert set(_statuses(store, integ, gone).values()) == {("deleted", True)}


def test_a_scan_deleting_more_than_max_delete_fraction_is_held_and_fails_the_volume_check(
    store, golioth, register_golioth, open_session
):
    integ = register_golioth(store, golioth, max_delete_fraction=0.01)
    _sync(open_session, store, integ)
    gone = _delete_at_peer(golioth, 5)  # 2 % of 250
    result = _sync(open_session, store, integ)
    assert result.counts.deleted == 0
    # the sync's own figures say what was held (the CLI prints them and a warning)
    assert result.deletions_held == 5 and result.metadata()["deletions_held"] == 5
    assert all(not deleted for _s, deleted in _statuses(store, integ, gone).values())
    with store.connect() as conn:
        assert held_deletions(conn, integ.organization_id, integ.integration_id).count == 5
        outcome = inventory_volume_as_expected(CheckContext.of(conn, integ, now=utc_now()))
    assert (outcome.passed, outcome.severity) == (False, ERROR)
    assert outcome.metadata["held_deletions"] == 5
    assert "confirm-deletions" in outcome.description


def test_a_later_complete_scan_replaces_an_unconfirmed_hold(
    store, golioth, register_golioth, open_session
):
    integ = register_golioth(store, golioth, max_delete_fraction=0.01)
    _sync(open_session, store, integ)
    gone = _delete_at_peer(golioth, 5)
    _sync(open_session, store, integ)
    for external_id in gone:  # the provider had them all along
        golioth.emulator.restore_device(external_id)
    assert _sync(open_session, store, integ).counts.deleted == 0
    with store.connect() as conn:
        assert held_deletions(conn, integ.organization_id, integ.integration_id).count == 0


def test_confirm_deletions_applies_the_held_set_once(
    store, golioth, register_golioth, open_session, monkeypatch
):
    integ = register_golioth(store, golioth, max_delete_fraction=0.01)
    _sync(open_session, store, integ)
    gone = _delete_at_peer(golioth, 5)
    _sync(open_session, store, integ)
    monkeypatch.setenv("SYNC_DATABASE_URL", store.url)
    first = CliRunner().invoke(main, ["devices", "confirm-deletions", integ.integration_id])
    assert first.exit_code == 0, first.output
    assert json.loads(first.output.splitlines()[0])["deleted"] == 5
    assert set(_statuses(store, integ, gone).values()) == {("deleted", True)}
    again = CliRunner().invoke(main, ["devices", "confirm-deletions", integ.integration_id])
    assert json.loads(again.output.splitlines()[0])["deleted"] == 0
    unknown = CliRunner().invoke(main, ["devices", "confirm-deletions", "no-such"])
    assert unknown.exit_code != 0 and "no integration 'no-such'" in unknown.output


def test_confirm_deletions_records_one_activity_row_naming_the_count_and_the_epoch(
    store, golioth, register_golioth, open_session, monkeypatch
):
    integ = register_golioth(store, golioth, max_delete_fraction=0.01)
    _sync(open_session, store, integ)
    gone = _delete_at_peer(golioth, 5)
    _sync(open_session, store, integ)
    with store.connect() as conn:
        hold = held_deletions(conn, integ.organization_id, integ.integration_id)
    monkeypatch.setenv("SYNC_DATABASE_URL", store.url)
    first = CliRunner().invoke(main, ["devices", "confirm-deletions", integ.integration_id])
    again = CliRunner().invoke(main, ["devices", "confirm-deletions", integ.integration_id])
    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output

    with store.connect() as conn:
        rows = activity_rows(
            conn,
            integ.organization_id,
            integration_id=integ.integration_id,
            activity_type=DELETIONS_CONFIRMED,
        )
        devices = [get_device(conn, integ.organization_id, integ.integration_id, e) for e in gone]
    [row] = rows  # confirming again, with nothing held, records nothing
    assert row["id"] == json.loads(first.output.splitlines()[0])["activity_id"]
    assert (row["status"], row["step_key"], row["run_id"][:4]) == (
        "success",
        "cli_confirm_deletions",
        "cli-",
    )
    assert row["metadata"] == {
        "deleted": 5,
        "held": 5,
        "scan_epoch": hold.epoch,
        "held_at": hold.held_at.isoformat(),
        "by": "cli",
    }
    assert {d["last_run_id"] for d in devices} == {row["run_id"]}


@pytest.mark.parametrize("value", [0, 1.5, "lots", True])
def test_max_delete_fraction_must_be_above_0_and_at_most_1(
    sqlite_store, golioth, register_golioth, value
):
    # refused where it enters: at registration, naming the setting
    with pytest.raises(ConfigError, match="setting 'max_delete_fraction'"):
        register_golioth(sqlite_store, golioth, max_delete_fraction=value)


def test_azure_device_deleted_event_soft_deletes_at_once(store, monkeypatch, open_session):
    integ, _ = register_webhook_integration(
        store, monkeypatch, provider="azure_iot", integration_id="az-del"
    )
    created = azure_event("DeviceCreated", "dev-1", {"twin": {"deviceId": "dev-1"}})
    deleted = azure_event("DeviceDeleted", "dev-1")
    for event in (created, deleted):
        insert_pending(
            store,
            integ,
            event_type=event["eventType"],
            payload=event,
            external_id="dev-1",
            event_id=event["id"],
        )
    with open_session(store, "az-del", run_id="run-del") as session:
        result = process_webhook_events(session)
    assert (result.counts.created, result.counts.deleted) == (1, 1)
    with store.connect() as conn:
        device = get_device(conn, "org-a", "az-del", "dev-1")
    assert (device["status"], device["last_request_id"], device["last_run_id"]) == (
        "deleted",
        deleted["id"],
        "run-del",
    )
    assert device["deleted_at"] is not None
