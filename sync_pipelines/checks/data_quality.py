"""Data-quality checks on an integration's stored devices.

The devices primary key (integration_id, external_id) makes exact duplicates impossible, so these
look for what can really go wrong: one device stored twice under ids differing only by case or
surrounding spaces, one hardware id (MAC, IMEI) claimed by two devices, and required fields
(external id, name) that are empty. SQL in the subset both engines accept; only the expansion of
the `hardware_ids` JSON array differs. (`lower` folds ASCII only on SQLite, all letters on
Postgres; `trim` strips spaces.)
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from sync_pipelines.checks.context import CheckContext
from sync_pipelines.checks.outcome import ERROR, WARN, CheckOutcome, failed, passed

EXTERNAL_IDS_DISTINCT = "external_ids_distinct_ignoring_case"
HARDWARE_IDS_UNIQUE = "hardware_ids_claimed_once"
REQUIRED_FIELDS = "required_fields_present"

#: colliding ids named in a description
_EXAMPLES = 3
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


def _collisions(ctx: CheckContext, groups_sql: str) -> tuple[int, int, list[str]]:
    """(colliding keys, rows involved, a few example keys) of a `k, n` grouping query."""
    params = {"o": ctx.organization_id, "i": ctx.integration_id}
    totals = ctx.conn.execute(
        sa.text(f"SELECT count(*) AS n_keys, coalesce(sum(n), 0) AS n_rows FROM ({groups_sql}) g"),
        params,
    ).one()
    examples = ctx.conn.execute(
        sa.text(f"SELECT k FROM ({groups_sql}) g ORDER BY n DESC, k LIMIT :limit"),
        {**params, "limit": _EXAMPLES},
    ).scalars()
    return int(totals.n_keys), int(totals.n_rows), list(examples)


def _device_count(ctx: CheckContext) -> int:
    return int(
        ctx.conn.execute(
            sa.text(f"SELECT count(*) FROM devices d WHERE {_SCOPE}"),
            {"o": ctx.organization_id, "i": ctx.integration_id},
        ).scalar_one()
    )


def external_ids_distinct_ignoring_case(ctx: CheckContext) -> CheckOutcome:
    """Two stored devices whose ids differ only by case or spaces are almost always one device the
    provider (or a webhook) spelled two ways: an ERROR, every reading of it is split."""
    keys, rows, examples = _collisions(ctx, _DUPLICATE_EXTERNAL_IDS)
    figures: dict[str, Any] = dict(
        devices=_device_count(ctx), duplicate_ids=keys, duplicate_devices=rows
    )
    if keys:
        return failed(
            EXTERNAL_IDS_DISTINCT,
            ERROR,
            f"{rows} devices share {keys} external id(s) differing only by case or spaces, e.g. "
            f"{', '.join(repr(e) for e in examples)}",
            **figures,
        )
    return passed(
        EXTERNAL_IDS_DISTINCT,
        f"{figures['devices']} devices, no id differing only by case or spaces",
        **figures,
    )


def hardware_ids_claimed_once(ctx: CheckContext) -> CheckOutcome:
    """A hardware id claimed by two devices of one integration: a cloned or re-provisioned device.
    A WARN: it can be legitimate while a replacement is being commissioned."""
    keys, rows, examples = _collisions(ctx, _shared_hardware_ids(ctx.conn.dialect.name))
    figures: dict[str, Any] = dict(
        devices=_device_count(ctx), shared_hardware_ids=keys, devices_sharing=rows
    )
    if keys:
        return failed(
            HARDWARE_IDS_UNIQUE,
            WARN,
            f"{keys} hardware id(s) claimed by more than one device, e.g. "
            f"{', '.join(repr(e) for e in examples)}",
            **figures,
        )
    return passed(
        HARDWARE_IDS_UNIQUE,
        f"{figures['devices']} devices, every hardware id claimed once",
        **figures,
    )


def required_fields_present(ctx: CheckContext) -> CheckOutcome:
    """Every device has a non-empty external id (ERROR: it cannot be addressed) and name (WARN)."""
    row = ctx.conn.execute(
        sa.text(
            "SELECT count(*) AS devices, "
            "coalesce(sum(CASE WHEN trim(d.external_id) = '' THEN 1 ELSE 0 END), 0) AS no_id, "
            "coalesce(sum(CASE WHEN d.name IS NULL OR trim(d.name) = '' THEN 1 ELSE 0 END), 0) AS no_name "
            f"FROM devices d WHERE {_SCOPE}"
        ),
        {"o": ctx.organization_id, "i": ctx.integration_id},
    ).one()
    devices, no_id, no_name = int(row.devices), int(row.no_id), int(row.no_name)
    figures = dict(devices=devices, missing_external_id=no_id, missing_name=no_name)
    if no_id or no_name:
        return failed(
            REQUIRED_FIELDS,
            ERROR if no_id else WARN,
            f"of {devices} devices, {no_id} have an empty external id and {no_name} an empty name",
            **figures,
        )
    return passed(
        REQUIRED_FIELDS, f"all {devices} devices have an external id and a name", **figures
    )
