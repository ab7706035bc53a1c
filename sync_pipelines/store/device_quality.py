"""Data-quality reads over an integration's stored devices (the checks in checks/data_quality.py).

The devices primary key (integration_id, external_id) makes exact duplicates impossible, so these
look for what can really go wrong: ids differing only by case or surrounding spaces, one hardware
id (MAC, IMEI) claimed by two devices, and empty required fields. SQL in the subset both engines
accept; only the expansion of the `hardware_ids` JSON array differs. (`lower` folds ASCII only on
SQLite, all letters on Postgres; `trim` strips spaces.)
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

_SCOPE = "d.organization_id = :o AND d.integration_id = :i"

_DUPLICATE_EXTERNAL_IDS = f"""
    SELECT lower(trim(d.external_id)) AS k, count(*) AS n
    FROM devices d WHERE {_SCOPE}
    GROUP BY lower(trim(d.external_id)) HAVING count(*) > 1
"""

#: each element of `hardware_ids` as `h.value` (a non-array value expands to nothing)
_HARDWARE_ID_ROWS = {
    "sqlite": f"FROM devices d, json_each(d.hardware_ids) h "
    f"WHERE {_SCOPE} AND json_type(d.hardware_ids) = 'array'",
    "postgresql": "FROM devices d CROSS JOIN LATERAL jsonb_array_elements_text("
    "CASE WHEN jsonb_typeof(d.hardware_ids) = 'array' THEN d.hardware_ids ELSE '[]'::jsonb END) "
    f"AS h(value) WHERE {_SCOPE}",
}


def _shared_hardware_ids(dialect: str) -> str:
    return f"""
        SELECT lower(trim(h.value)) AS k, count(DISTINCT d.external_id) AS n
        {_HARDWARE_ID_ROWS[dialect]} AND trim(h.value) <> ''
        GROUP BY lower(trim(h.value)) HAVING count(DISTINCT d.external_id) > 1
    """


@dataclass(frozen=True, slots=True)
class Collisions:
    """Keys shared by more than one device: how many, the devices involved, a few examples."""

    keys: int
    devices: int
    examples: list[str]


def external_id_collisions(
    conn: Connection, organization_id: str, integration_id: str, *, examples: int
) -> Collisions:
    """External ids that differ only by case or surrounding spaces."""
    return _collisions(conn, organization_id, integration_id, _DUPLICATE_EXTERNAL_IDS, examples)


def hardware_id_collisions(
    conn: Connection, organization_id: str, integration_id: str, *, examples: int
) -> Collisions:
    """Hardware ids (case and spaces ignored) claimed by more than one device."""
    groups_sql = _shared_hardware_ids(conn.dialect.name)
    return _collisions(conn, organization_id, integration_id, groups_sql, examples)


def _collisions(
    conn: Connection, organization_id: str, integration_id: str, groups_sql: str, examples: int
) -> Collisions:
    """The figures of a `k, n` grouping query."""
    params = {"o": organization_id, "i": integration_id}
    totals = conn.execute(
        sa.text(f"SELECT count(*) AS n_keys, coalesce(sum(n), 0) AS n_rows FROM ({groups_sql}) g"),
        params,
    ).one()
    found = conn.execute(
        sa.text(f"SELECT k FROM ({groups_sql}) g ORDER BY n DESC, k LIMIT :limit"),
        {**params, "limit": examples},
    ).scalars()
    return Collisions(int(totals.n_keys), int(totals.n_rows), list(found))


@dataclass(frozen=True, slots=True)
class RequiredFields:
    devices: int
    missing_external_id: int
    missing_name: int


def required_fields(conn: Connection, organization_id: str, integration_id: str) -> RequiredFields:
    """Devices with an empty external id, and with an empty (or no) name."""
    row = conn.execute(
        sa.text(
            "SELECT count(*) AS devices, "
            "coalesce(sum(CASE WHEN trim(d.external_id) = '' THEN 1 ELSE 0 END), 0) AS no_id, "
            "coalesce(sum(CASE WHEN d.name IS NULL OR trim(d.name) = '' THEN 1 ELSE 0 END), 0) AS no_name "
            f"FROM devices d WHERE {_SCOPE}"
        ),
        {"o": organization_id, "i": integration_id},
    ).one()
    return RequiredFields(int(row.devices), int(row.no_id), int(row.no_name))
