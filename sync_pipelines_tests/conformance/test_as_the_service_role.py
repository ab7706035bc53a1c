"""Every provider's sync as the sync service's Postgres role (`sync_app`, sql/026): inventory,
states, deletions and restores against each peer while row-level security holds every
transaction to the integration's organization."""

from __future__ import annotations

import sqlalchemy as sa

from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.inventory import sync_devices

INVENTORY = 60
DELETED = 3


def _devices(store, integration) -> dict[str, str | None]:
    with store.scoped(integration.organization_id).connect() as conn:
        return dict(conn.execute(sa.text("SELECT external_id, status FROM devices")).tuples().all())


def test_a_provider_syncs_deletes_and_restores_as_the_service_role(
    peer, service_store, register_peer_integration, open_session
):
    ids = sorted(peer.seed(INVENTORY))
    integration = register_peer_integration(service_store, page_size=25)
    with open_session(service_store, integration.integration_id) as session:
        assert sync_devices(session).status == "success"
        assert sync_device_states(session).status == "success"
    assert set(_devices(service_store, integration)) == set(ids)
    peer.delete_devices(ids[:DELETED])
    with open_session(service_store, integration.integration_id) as session:
        assert sync_devices(session).counts.deleted == DELETED
    peer.restore_devices(ids[:1])
    with open_session(service_store, integration.integration_id) as session:
        assert sync_devices(session).status == "success"
    devices = _devices(service_store, integration)
    assert {i for i, status in devices.items() if status == "deleted"} == set(ids[1:DELETED])
    # nothing of it is visible outside its organization
    with service_store.scoped("another-organization").connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM devices")).scalar_one() == 0
