"""Devices and their state: keyed bulk upserts and scoped reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.store.bulk import KeyedTable, UpsertCounts, upsert_rows

#: what a provider says about a device (a sync or an event writes these; the rest is keys,
#: provenance and bookkeeping)
DEVICE_CONTENT_COLUMNS = (
    "name",
    "hardware_ids",
    "tags",
    "status",
    "enabled",
    "attributes",
    "provider_created_at",
    "provider_updated_at",
    "last_seen_at",
    "content_hash",
)

DEVICES = KeyedTable(
    name="devices",
    columns=(
        "organization_id",
        "integration_id",
        "external_id",
        *DEVICE_CONTENT_COLUMNS,
        "last_run_id",
        "last_request_id",
        "created_at",
        "updated_at",
        # None: a device listed again is restored (see store/deletions.py)
        "deleted_at",
    ),
    scope=("organization_id", "integration_id"),
    key="external_id",
)

DEVICE_STATES = KeyedTable(
    name="device_states",
    columns=(
        "organization_id",
        "integration_id",
        "external_id",
        "reported",
        "desired",
        "version",
        "observed_at",
        "content_hash",
        "last_run_id",
        "last_request_id",
        "updated_at",
    ),
    scope=("organization_id", "integration_id"),
    key="external_id",
    immutable=(),
)


def upsert_devices(conn: Connection, rows: Sequence[dict[str, Any]]) -> UpsertCounts:
    return upsert_rows(conn, DEVICES, rows)


def upsert_device_states(conn: Connection, rows: Sequence[dict[str, Any]]) -> UpsertCounts:
    return upsert_rows(conn, DEVICE_STATES, rows)


def count_devices(
    conn: Connection, organization_id: str, integration_id: str, *, deleted: bool = False
) -> int:
    """The integration's active devices, or (`deleted=True`) its soft-deleted ones."""
    which = "IS NOT NULL" if deleted else "IS NULL"
    return int(
        conn.execute(
            sa.text(
                "SELECT count(*) FROM devices WHERE organization_id = :o AND integration_id = :i "
                f"AND deleted_at {which}"
            ),
            {"o": organization_id, "i": integration_id},
        ).scalar_one()
    )


def count_device_states(conn: Connection, organization_id: str, integration_id: str) -> int:
    return int(
        conn.execute(
            sa.text(
                "SELECT count(*) FROM device_states WHERE organization_id = :o AND integration_id = :i"
            ),
            {"o": organization_id, "i": integration_id},
        ).scalar_one()
    )


def device_ids_after(
    conn: Connection, organization_id: str, integration_id: str, after: str, limit: int
) -> list[str]:
    """The next `limit` active device ids after `after`, in key order (keyset paging); a
    soft-deleted device has no state to read."""
    return list(
        conn.execute(
            sa.text(
                "SELECT external_id FROM devices WHERE organization_id = :o AND "
                "integration_id = :i AND external_id > :after AND deleted_at IS NULL "
                "ORDER BY external_id LIMIT :n"
            ),
            {"o": organization_id, "i": integration_id, "after": after, "n": limit},
        ).scalars()
    )


def known_device_ids(
    conn: Connection, organization_id: str, integration_id: str, external_ids: Sequence[str]
) -> list[str]:
    """Those of `external_ids` the store has a device for."""
    if not external_ids:
        return []
    return list(
        conn.execute(
            sa.text(
                "SELECT external_id FROM devices WHERE organization_id = :o AND "
                "integration_id = :i AND external_id IN :ids"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"o": organization_id, "i": integration_id, "ids": list(external_ids)},
        ).scalars()
    )


def get_device(
    conn: Connection, organization_id: str, integration_id: str, external_id: str
) -> dict[str, Any] | None:
    row = (
        conn.execute(
            sa.text(
                "SELECT * FROM devices WHERE organization_id = :o AND integration_id = :i "
                "AND external_id = :e"
            ),
            {"o": organization_id, "i": integration_id, "e": external_id},
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def get_device_state(
    conn: Connection, organization_id: str, integration_id: str, device_id: str
) -> dict[str, Any] | None:
    """The device's stored state row (reported, desired, version, observed_at...), or None."""
    row = (
        conn.execute(
            sa.text(
                "SELECT reported, desired, version, observed_at, updated_at, last_run_id "
                "FROM device_states WHERE organization_id = :o AND integration_id = :i "
                "AND external_id = :d"
            ),
            {"o": organization_id, "i": integration_id, "d": device_id},
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None
