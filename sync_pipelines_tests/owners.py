"""Claim integration ids for tests that write an integration's rows without registering it.

On Postgres every table keyed by an integration references integration_owners (sql/026), whose
organization must exist; the product claims the id when it registers the integration
(`save_integration`). A test that writes devices, sync logs, dead letters… for an id it never
registered claims it here first. On SQLite the keys are not enforced; the claim is harmless.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import claim_integration_id, ensure_organization

#: the tables whose (organization_id, integration_id) references integration_owners on Postgres
#: (sql/026_service_role); the activity log, telemetry readings and the devices history
#: (device_changes, sql/027) carry no such key
OWNER_KEYED_TABLES = frozenset(
    {
        "alert_incidents",
        "dead_letters",
        "desired_changes",
        "device_scan_seen",
        "device_states",
        "devices",
        "event_failures",
        "held_deletions",
        "integration_check_results",
        "integration_shapes",
        "integration_sync_log",
        "integration_sync_state",
        "integrations",
        "provider_call_hours",
        "sync_conflicts",
        "sync_leases",
        "telemetry_gaps",
        "telemetry_sequences",
        "webhook_events",
    }
)


def own_integrations(
    store_or_conn: Store | Connection, organization_id: str, *integration_ids: str
) -> None:
    """Make each id `organization_id`'s (creating the organization if needed); idempotent.
    Refused (PermissionError) for an id another organization already holds."""
    if isinstance(store_or_conn, Store):
        with store_or_conn.transaction() as conn:
            own_integrations(conn, organization_id, *integration_ids)
        return
    ensure_organization(store_or_conn, organization_id)
    for integration_id in integration_ids:
        claim_integration_id(store_or_conn, organization_id, integration_id)


def own_row_integrations(
    store_or_conn: Store | Connection, rows: Iterable[Mapping[str, Any]]
) -> None:
    """Claim the (organization_id, integration_id) of each row seeded directly (activity rows,
    device rows…): the tables rolled up or keyed from them need the id owned."""
    by_organization: dict[str, set[str]] = {}
    for row in rows:
        if row.get("integration_id") is not None:
            by_organization.setdefault(row["organization_id"], set()).add(row["integration_id"])
    for organization_id, integration_ids in sorted(by_organization.items()):
        own_integrations(store_or_conn, organization_id, *sorted(integration_ids))
