"""Organization-scoped row reads for the trace (tracing/chain.py), normalised so both engines give
the same shape: JSON columns decoded, timestamps as aware datetimes, booleans as bool. A row stays
a dict of its columns — the support bundle exports it whole — and the chain's records say what
each row is."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.store.database import load_json, parse_timestamp

Row = dict[str, Any]

#: the JSON and boolean columns of the tables a trace reads
_JSON_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "integration_activity_log": ("request_headers", "metadata"),
    "integration_sync_log": ("cursor_before", "cursor_after"),
    "webhook_events": ("payload", "headers"),
    "devices": ("hardware_ids", "tags", "attributes"),
    "device_states": ("reported", "desired"),
    "dead_letters": ("payload",),
    "integration_check_results": ("metadata",),
    "alert_incidents": ("details",),
    "alert_notifications": ("payload",),
}
_BOOL_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "devices": ("enabled",),
    "integration_check_results": ("passed",),
}
_CHUNK = 500  # values per IN list, well under SQLite's bound-variable limit


def select_rows(
    conn: Connection,
    table: str,
    organization_id: str,
    where: str,
    params: Mapping[str, Any] | None = None,
    *,
    order_by: str = "",
    limit: int | None = None,
) -> list[Row]:
    """`SELECT * FROM table WHERE organization_id = :o AND (where)`. List values in `params`
    bind as IN lists. `table`, `where` and `order_by` are ours, never user input."""
    bound: dict[str, Any] = {"o": organization_id, **(params or {})}
    sql = f"SELECT * FROM {table} WHERE organization_id = :o AND ({where})"
    if order_by:
        sql += f" ORDER BY {order_by}"
    if limit is not None:
        sql += " LIMIT :_limit"
        bound["_limit"] = limit
    statement = sa.text(sql)
    lists = [k for k, v in bound.items() if isinstance(v, list | tuple | set | frozenset)]
    for key in lists:
        bound[key] = list(bound[key])
    if lists:
        statement = statement.bindparams(*(sa.bindparam(k, expanding=True) for k in lists))
    return [normalise(table, r) for r in conn.execute(statement, bound).mappings()]


def row_exists(
    conn: Connection, table: str, key: tuple[str, str | None], condition: str, x: str
) -> bool:
    """Whether any row of the organization (and integration, if one) `key` meets `condition` on
    the id `:x`. `table` and `condition` are ours, never user input."""
    organization_id, integration_id = key
    sql = f"SELECT 1 FROM {table} WHERE organization_id = :o AND ({condition})"
    if integration_id:
        sql += " AND integration_id = :i"
    params = {"o": organization_id, "x": x, "i": integration_id}
    return conn.execute(sa.text(sql + " LIMIT 1"), params).first() is not None


def select_rows_in(
    conn: Connection,
    table: str,
    organization_id: str,
    column: str,
    values: Iterable[str],
    *,
    where: str = "1 = 1",
    params: Mapping[str, Any] | None = None,
    order_by: str = "",
) -> list[Row]:
    """Rows whose `column` is one of `values`, read in chunks; nothing to read, no query."""
    wanted = sorted({v for v in values if v})
    found: list[Row] = []
    for n in range(0, len(wanted), _CHUNK):
        found += select_rows(
            conn,
            table,
            organization_id,
            f"{column} IN :_values AND ({where})",
            {**(params or {}), "_values": wanted[n : n + _CHUNK]},
            order_by=order_by,
        )
    return found


def normalise(table: str, row: Mapping[str, Any]) -> Row:
    out = dict(row)
    for column in _JSON_COLUMNS.get(table, ()):
        if column in out:
            out[column] = load_json(out[column])
    for column in _BOOL_COLUMNS.get(table, ()):
        if out.get(column) is not None:
            out[column] = bool(out[column])
    for column, value in out.items():
        if column.endswith("_at") and value is not None:
            out[column] = parse_timestamp(value)
    return out
