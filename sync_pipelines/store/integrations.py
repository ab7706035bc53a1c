"""Organizations and integrations: the tenants and their configured provider connections."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.store.database import (
    dump_json,
    load_json,
    parse_timestamp,
    use_organization,
    utc_now,
)

#: seconds between polls of an integration unless it says otherwise
DEFAULT_POLL_INTERVAL_S = 300


@dataclass(frozen=True, slots=True)
class Integration:
    integration_id: str
    organization_id: str
    provider: str
    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    # setting name -> name of the environment variable holding the secret
    secret_refs: dict[str, str] = field(default_factory=dict)
    enabled: bool = True
    poll_interval_s: int = DEFAULT_POLL_INTERVAL_S
    created_at: datetime | None = None
    updated_at: datetime | None = None


def ensure_organization(conn: Connection, organization_id: str, name: str | None = None) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO organizations (organization_id, name, created_at) VALUES (:o, :n, :t) "
            "ON CONFLICT (organization_id) DO NOTHING"
        ),
        {"o": organization_id, "n": name or organization_id, "t": utc_now()},
    )


def organization_exists(conn: Connection, organization_id: str) -> bool:
    return (
        conn.execute(
            sa.text("SELECT 1 FROM organizations WHERE organization_id = :o"),
            {"o": organization_id},
        ).first()
        is not None
    )


def save_integration(conn: Connection, integration: Integration) -> None:
    """Create or replace an integration's configuration (its organization must exist)."""
    claim_integration_id(conn, integration.organization_id, integration.integration_id)
    now = utc_now()
    result = conn.execute(
        sa.text(
            "INSERT INTO integrations (integration_id, organization_id, provider, name, settings, "
            "secret_refs, enabled, poll_interval_s, created_at, updated_at) "
            "VALUES (:integration_id, :organization_id, :provider, :name, :settings, :secret_refs, "
            ":enabled, :poll_interval_s, :now, :now) "
            "ON CONFLICT (integration_id) DO UPDATE SET provider = excluded.provider, "
            "name = excluded.name, settings = excluded.settings, secret_refs = excluded.secret_refs, "
            "enabled = excluded.enabled, poll_interval_s = excluded.poll_interval_s, "
            "updated_at = excluded.updated_at "
            "WHERE integrations.organization_id = excluded.organization_id"
        ),
        {
            "integration_id": integration.integration_id,
            "organization_id": integration.organization_id,
            "provider": integration.provider,
            "name": integration.name,
            "settings": dump_json(integration.settings),
            "secret_refs": dump_json(integration.secret_refs),
            "enabled": integration.enabled,
            "poll_interval_s": integration.poll_interval_s,
            "now": now,
        },
    )
    if result.rowcount == 0:
        raise PermissionError(
            f"integration {integration.integration_id!r} already belongs to another organization"
        )


def claim_integration_id(conn: Connection, organization_id: str, integration_id: str) -> None:
    """Make the id this organization's for ever (integration_owners: its history is keyed by
    it); refused if another organization holds it, even one whose configuration was removed."""
    conn.execute(
        sa.text(
            "INSERT INTO integration_owners (integration_id, organization_id) VALUES (:i, :o) "
            "ON CONFLICT (integration_id) DO NOTHING"
        ),
        {"i": integration_id, "o": organization_id},
    )
    # Filtered by organization: under row security another tenant's row is invisible anyway.
    mine = conn.execute(
        sa.text(
            "SELECT 1 FROM integration_owners WHERE integration_id = :i AND organization_id = :o"
        ),
        {"i": integration_id, "o": organization_id},
    ).first()
    if mine is None:
        raise PermissionError(
            f"integration {integration_id!r} already belongs to another organization"
        )


def delete_integration(conn: Connection, organization_id: str, integration_id: str) -> bool:
    """Delete the integration's row only: its history (sync logs, activity, devices) stays."""
    result = conn.execute(
        sa.text("DELETE FROM integrations WHERE organization_id = :o AND integration_id = :i"),
        {"o": organization_id, "i": integration_id},
    )
    return result.rowcount > 0


_COLUMNS = (
    "integration_id, organization_id, provider, name, settings, secret_refs, enabled, "
    "poll_interval_s, created_at, updated_at"
)


def get_integration(
    conn: Connection, organization_id: str, integration_id: str
) -> Integration | None:
    row = (
        conn.execute(
            sa.text(
                f"SELECT {_COLUMNS} FROM integrations WHERE organization_id = :o AND integration_id = :i"
            ),
            {"o": organization_id, "i": integration_id},
        )
        .mappings()
        .first()
    )
    return _to_integration(row) if row else None


def list_integrations(conn: Connection, organization_id: str) -> list[Integration]:
    rows = conn.execute(
        sa.text(
            f"SELECT {_COLUMNS} FROM integrations WHERE organization_id = :o ORDER BY integration_id"
        ),
        {"o": organization_id},
    ).mappings()
    return [_to_integration(r) for r in rows]


# --- System-level reads -----------------------------------------------------------------
# Dagster's partitions, sensors and schedules are keyed by integration id alone, and a webhook's
# URL names an integration, not its organization, so these reads span tenants. They are the
# only ones; everything they return is then handled with the organization_id it carries. On
# Postgres they go through the named function of sql/026 (the service role sees one
# organization at a time otherwise).


def _across_tenants(
    conn: Connection, *, enabled: bool = False, provider: str | None = None, one: str | None = None
) -> list[Integration]:
    params: dict[str, Any] = {"e": enabled, "p": provider, "i": one}
    if conn.dialect.name == "postgresql":
        sql = (
            f"SELECT {_COLUMNS} FROM sync_integrations_across_tenants("
            "CAST(:e AS boolean), CAST(:p AS text), CAST(:i AS text))"
        )
    else:
        sql = (
            f"SELECT {_COLUMNS} FROM integrations WHERE (NOT :e OR enabled) "
            "AND (:p IS NULL OR provider = :p) AND (:i IS NULL OR integration_id = :i) "
            "ORDER BY organization_id, integration_id"
        )
    return [_to_integration(r) for r in conn.execute(sa.text(sql), params).mappings()]


def find_integration_owner(conn: Connection, integration_id: str) -> Integration | None:
    """Resolve a partition key or a webhook's URL (an integration id) to its integration."""
    found = _across_tenants(conn, one=integration_id)
    return found[0] if found else None


def list_enabled_integrations(conn: Connection, provider: str | None = None) -> list[Integration]:
    found = _across_tenants(conn, enabled=True, provider=provider)
    return sorted(found, key=lambda i: i.integration_id)


def list_every_integration(conn: Connection) -> list[Integration]:
    """Every organization's integrations, enabled or not (the operator's health views list a
    disabled integration as such)."""
    return _across_tenants(conn)


def organization_ids(conn: Connection) -> list[str]:
    """Every organization: per-organization jobs loop over them, each scoped to one."""
    if conn.dialect.name == "postgresql":
        sql = "SELECT sync_organization_ids()"
    else:
        sql = "SELECT organization_id FROM organizations ORDER BY organization_id"
    return list(conn.execute(sa.text(sql)).scalars())


def for_each_organization(conn: Connection) -> Iterator[str]:
    """Every organization in turn, the open transaction switched to each (`use_organization`)
    before it is yielded: a job's per-organization work on one connection. Queries inside still
    filter by the organization (SQLite has no row security)."""
    for organization_id in organization_ids(conn):
        use_organization(conn, organization_id)
        yield organization_id


def _to_integration(row: Any) -> Integration:
    return Integration(
        integration_id=row["integration_id"],
        organization_id=row["organization_id"],
        provider=row["provider"],
        name=row["name"],
        settings=load_json(row["settings"]) or {},
        secret_refs=load_json(row["secret_refs"]) or {},
        enabled=bool(row["enabled"]),
        poll_interval_s=int(row["poll_interval_s"]),
        created_at=parse_timestamp(row["created_at"]),
        updated_at=parse_timestamp(row["updated_at"]),
    )
