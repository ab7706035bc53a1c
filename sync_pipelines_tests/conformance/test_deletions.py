"""Deletions against every provider's peer: a device deleted at the peer is soft-deleted by the
next complete scan and restored when it reappears; a scan that would delete everything (a broker
that lost its retained registry, a provider answering an empty list) is held by the guard."""

from __future__ import annotations

import sqlalchemy as sa

from sync_pipelines.alerts.deletion_guard import deletion_guard_key
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.alerts import list_incidents
from sync_pipelines.store.deletions import held_deletions
from sync_pipelines.store.sync_state import sync_log_rows
from sync_pipelines.sync.deletions import confirm_deletions
from sync_pipelines.sync.inventory import sync_devices

INVENTORY = 300
DELETED = 5


def _rows(store, integration) -> dict[str, dict]:
    with store.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT external_id, status, deleted_at FROM devices "
                "WHERE organization_id = :o AND integration_id = :i"
            ),
            {"o": integration.organization_id, "i": integration.integration_id},
        ).mappings()
        return {r["external_id"]: dict(r) for r in rows}


def _guard_incident(conn, organization_id: str, integration_id: str):
    key = deletion_guard_key(integration_id)
    found = [
        i for i in list_incidents(conn, organization_id, open_only=True) if i.dedupe_key == key
    ]
    return found[0] if found else None


def _deleted(rows: dict[str, dict]) -> set[str]:
    return {e for e, r in rows.items() if r["status"] == "deleted" and r["deleted_at"] is not None}


def test_devices_deleted_at_the_peer_are_soft_deleted_and_restored_when_re_added(
    peer, store, register_peer_integration, open_session
):
    ids = peer.seed(INVENTORY)
    integration = register_peer_integration(store, page_size=100)
    iid = integration.integration_id
    with open_session(store, iid) as session:
        assert sync_devices(session).counts.created == INVENTORY
    gone = sorted(ids)[10 : 10 + DELETED]
    peer.delete_devices(gone)
    with open_session(store, iid) as session:
        second = sync_devices(session)
    rows = _rows(store, integration)
    assert second.status == "success" and second.counts.deleted == DELETED
    assert _deleted(rows) == set(gone)
    assert len(rows) == INVENTORY  # soft: the rows stay
    with store.connect() as conn:
        log = sync_log_rows(conn, integration.organization_id, iid)[-1]
    assert log["deleted"] == DELETED

    peer.restore_devices(gone[:1])
    with open_session(store, iid) as session:
        third = sync_devices(session)
    rows = _rows(store, integration)
    assert third.counts.deleted == 0 and third.counts.updated >= 1
    assert rows[gone[0]]["deleted_at"] is None and rows[gone[0]]["status"] != "deleted"
    assert _deleted(rows) == set(gone[1:])


def test_a_scan_that_would_delete_every_device_is_held_alerted_and_confirmed_once(
    peer, sqlite_store, register_peer_integration, open_session
):
    store = sqlite_store
    peer.seed(INVENTORY)
    integration = register_peer_integration(store, page_size=100)
    o, iid = integration.organization_id, integration.integration_id
    with open_session(store, iid) as session:
        sync_devices(session)
    peer.seed(0)  # the provider answers an empty inventory
    with open_session(store, iid, run_id="run-empty") as session:
        empty = sync_devices(session)
    assert empty.counts.deleted == 0
    assert _deleted(_rows(store, integration)) == set()
    with store.connect() as conn:
        assert held_deletions(conn, o, iid).count == INVENTORY
        (tripped,) = activity_rows(
            conn, o, run_id="run-empty", activity_type="deletion_guard_tripped"
        )
        incident = _guard_incident(conn, o, iid)
    assert tripped["metadata"]["would_delete"] == INVENTORY
    assert incident is not None and incident.severity == "critical"

    assert confirm_deletions(store, integration).deleted == INVENTORY
    assert confirm_deletions(store, integration).deleted == 0  # once
    assert len(_deleted(_rows(store, integration))) == INVENTORY
    with store.connect() as conn:
        assert _guard_incident(conn, o, iid) is None
