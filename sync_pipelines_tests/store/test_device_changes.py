"""The device history (sql/027, store/device_changes.py): the write paths record each change a
device undergoes in their own transaction, old -> new, and nothing for an unchanged device."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from sync_pipelines.providers.contract import DeviceRecord
from sync_pipelines.store.dead_letters import DeadLetterPolicy, record_dead_letters
from sync_pipelines.store.deletions import mark_deleted
from sync_pipelines.store.device_changes import (
    count_changes,
    device_changes_page,
    integration_changes,
    set_change_source,
)
from sync_pipelines.store.devices import upsert_device_states, upsert_devices
from sync_pipelines.store.event_order import DeviceRef, RegistryKey, apply_registry_write
from sync_pipelines.sync.failed_records import FailedRecord
from sync_pipelines.sync.records import device_row
from sync_pipelines_tests.owners import own_integrations

ORG, INTEG = "org-h", "integ-h"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _row(key: str, *, name: str | None = None, fw: str = "1.0", now: datetime = T0, run="run-1"):
    return device_row(
        DeviceRecord(
            external_id=key,
            name=name or f"name-{key}",
            tags=("t1",),
            status="enabled",
            attributes={"fw": fw, "site": "north"},
        ),
        organization_id=ORG,
        integration_id=INTEG,
        run_id=run,
        request_id=f"req-{run}",
        now=now,
    )


def _fleet(n: int, changed: dict[str, str] | None = None, *, now: datetime = T0, run="run-1"):
    changed = changed or {}
    return [
        _row(f"d{i:03d}", fw=changed.get(f"d{i:03d}", "1.0"), now=now, run=run) for i in range(n)
    ]


@pytest.fixture
def owned(store):
    own_integrations(store, ORG, INTEG)
    return store


def test_resync_with_k_changed_writes_exactly_k_updated_rows(owned):
    store = owned
    with store.transaction() as conn:
        upsert_devices(conn, _fleet(30))
    with store.connect() as conn:
        assert count_changes(conn, ORG, INTEG, kind="created") == 30
        assert count_changes(conn, ORG, INTEG) == 30
    # an unchanged poll writes nothing
    with store.transaction() as conn:
        upsert_devices(conn, _fleet(30, now=T0 + timedelta(minutes=5), run="run-2"))
    with store.connect() as conn:
        assert count_changes(conn, ORG, INTEG) == 30
    changed = {"d003": "2.0", "d017": "2.1", "d029": "3.0"}
    later = T0 + timedelta(minutes=10)
    with store.transaction() as conn:
        upsert_devices(conn, _fleet(30, changed, now=later, run="run-3"))
    with store.connect() as conn:
        updated = integration_changes(conn, ORG, INTEG, kind="updated")
    assert sorted(c.device_id for c in updated) == sorted(changed)
    for change in updated:
        assert change.changes == {"attributes.fw": ["1.0", changed[change.device_id]]}
        assert (change.source, change.run_id, change.request_id) == ("sync", "run-3", "req-run-3")
        assert change.at == later


def test_name_change_and_state_keys_old_to_new(owned):
    store = owned
    with store.transaction() as conn:
        upsert_devices(conn, [_row("d1")])
        upsert_device_states(conn, [_state("d1", {"temp": 20, "mode": "eco"}, T0)])
    later = T0 + timedelta(minutes=1)
    with store.transaction() as conn:
        upsert_devices(conn, [_row("d1", name="renamed", now=later, run="run-2")])
        upsert_device_states(conn, [_state("d1", {"temp": 21, "mode": "eco", "fan": True}, later)])
    with store.connect() as conn:
        page = device_changes_page(conn, ORG, INTEG, "d1")
    # newest first; the state change and the rename share a time: id breaks the tie
    assert [c.kind for c in page] == ["updated", "updated", "updated", "created"]
    assert page[0].changes == {"reported.temp": [20, 21], "reported.fan": [None, True]}
    assert page[1].changes == {"name": ["name-d1", "renamed"]}
    assert page[2].changes == {"reported.temp": [None, 20], "reported.mode": [None, "eco"]}
    assert page[3].changes == {"name": [None, "name-d1"], "status": [None, "enabled"]}
    # keyset: the page after the second entry is the last two
    with store.connect() as conn:
        rest = device_changes_page(conn, ORG, INTEG, "d1", after=(page[1].at, page[1].id))
    assert [c.id for c in rest] == [page[2].id, page[3].id]


def _state(key: str, reported: dict, now: datetime) -> dict:
    import json

    return {
        "organization_id": ORG,
        "integration_id": INTEG,
        "external_id": key,
        "reported": json.dumps(reported),
        "desired": None,
        "version": None,
        "observed_at": now,
        "content_hash": json.dumps(reported, sort_keys=True),
        "last_run_id": "run-s",
        "last_request_id": "req-s",
        "updated_at": now,
    }


def test_delete_restore_reject_and_webhook_source(owned):
    store = owned
    with store.transaction() as conn:
        upsert_devices(conn, [_row("d1"), _row("d2")])
    t1 = T0 + timedelta(minutes=1)
    with store.transaction() as conn:
        set_change_source(conn, "deletion_scan")
        assert mark_deleted(conn, ORG, INTEG, "d1", run_id="run-del", request_id=None, now=t1)
    t2 = T0 + timedelta(minutes=2)
    with store.transaction() as conn:  # listed again
        upsert_devices(conn, [_row("d1", now=t2, run="run-back")])
    t3 = T0 + timedelta(minutes=3)
    with store.transaction() as conn:
        set_change_source(conn, "webhook")
        ref = DeviceRef(ORG, INTEG, "d2", None, "evt-1", t3)
        row = _row("d2", name="from-event", now=t3)
        assert apply_registry_write(conn, ref, row, RegistryKey(at=t3)) == "updated"
    t4 = T0 + timedelta(minutes=4)
    with store.transaction() as conn:
        record_dead_letters(
            conn,
            organization_id=ORG,
            integration_id=INTEG,
            provider="golioth",
            records=[
                FailedRecord(
                    stream="devices",
                    dedupe_key="d2",
                    external_id="d2",
                    payload={"id": "d2"},
                    error_type="validation",
                    error_message="name: too long",
                )
            ],
            policy=DeadLetterPolicy(),
            run_id="run-4",
            now=t4,
        )
    with store.connect() as conn:
        d1 = device_changes_page(conn, ORG, INTEG, "d1")
        d2 = device_changes_page(conn, ORG, INTEG, "d2")
    assert [(c.kind, c.source, c.run_id) for c in d1] == [
        ("restored", "sync", "run-back"),
        ("deleted", "deletion_scan", "run-del"),
        ("created", "sync", "run-1"),
    ]
    assert d1[1].changes == {"status": ["enabled", "deleted"]}
    assert d1[0].changes == {"status": ["deleted", "enabled"]}
    assert [(c.kind, c.source) for c in d2] == [
        ("rejected", "sync"),
        ("updated", "webhook"),
        ("created", "sync"),
    ]
    assert d2[0].reason == "validation: name: too long"
    assert d2[1].changes == {"name": ["name-d2", "from-event"]}
    assert d2[1].request_id == "evt-1"


def test_a_failed_transaction_writes_no_change(owned):
    store = owned
    with store.transaction() as conn:
        upsert_devices(conn, [_row("d1")])
    with pytest.raises(RuntimeError), store.transaction() as conn:
        upsert_devices(conn, [_row("d1", name="never", now=T0 + timedelta(minutes=1))])
        raise RuntimeError("the batch's cursor write failed")
    with store.connect() as conn:
        assert [c.kind for c in integration_changes(conn, ORG, INTEG)] == ["created"]


def test_source_is_checked_and_does_not_outlive_its_transaction(owned):
    store = owned
    with pytest.raises(ValueError, match="source must be one of"), store.transaction() as conn:
        set_change_source(conn, "bogus")
    with store.transaction() as conn:
        set_change_source(conn, "replay")
        upsert_devices(conn, [_row("d1")])
    with store.transaction() as conn:
        upsert_devices(conn, [_row("d2")])
    with store.connect() as conn:
        assert [c.source for c in integration_changes(conn, ORG, INTEG)] == ["replay", "sync"]


def test_another_organization_cannot_read_them(service_store, owner_store):
    own_integrations(owner_store, ORG, INTEG)
    own_integrations(owner_store, "org-other", "integ-other")
    with service_store.scoped(ORG).transaction() as conn:
        upsert_devices(conn, [_row("d1")])
    with service_store.scoped("org-other").connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM device_changes")).scalar_one() == 0
        assert device_changes_page(conn, ORG, INTEG, "d1") == []
    with service_store.scoped(ORG).connect() as conn:
        assert len(device_changes_page(conn, ORG, INTEG, "d1")) == 1


def test_attributes_change_key_by_key_on_both_engines(owned):
    """A key removed, a key added and a nested value changed: one field each, the same rows on
    SQLite and Postgres."""
    store = owned

    def row(attributes: dict, now: datetime) -> dict:
        return device_row(
            DeviceRecord(external_id="d1", name="n", attributes=attributes),
            organization_id=ORG,
            integration_id=INTEG,
            run_id="run-a",
            request_id="req-a",
            now=now,
        )

    with store.transaction() as conn:
        upsert_devices(conn, [row({"gone": 1, "cfg": {"a": 1, "b": [1, 2]}, "same": "x"}, T0)])
    with store.transaction() as conn:
        upsert_devices(
            conn,
            [row({"cfg": {"a": 2, "b": [1, 2]}, "same": "x", "new": None}, T0 + timedelta(1))],
        )
    with store.connect() as conn:
        (change,) = integration_changes(conn, ORG, INTEG, kind="updated")
    # stored whole, read key by key (a key added with a null value is no change)
    assert change.changes == {
        "attributes.gone": [1, None],
        "attributes.cfg": [{"a": 1, "b": [1, 2]}, {"a": 2, "b": [1, 2]}],
    }
