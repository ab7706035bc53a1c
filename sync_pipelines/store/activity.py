"""Reads and batch writes of `integration_activity_log`.

Rows arrive already shaped and redacted (see `observability.activity`); this module only
stores and queries them, always scoped by organization.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.observability.activity import ActivityRow
from sync_pipelines.store.bulk import insert_rows
from sync_pipelines.store.database import dump_json, load_json, parse_timestamp

ACTIVITY_COLUMNS = (
    "id",
    "organization_id",
    "integration_id",
    "run_id",
    "step_key",
    "request_id",
    "parent_id",
    "direction",
    "activity_type",
    "method",
    "endpoint",
    "status_code",
    "status",
    "attempt",
    "response_time_ms",
    "error_type",
    "error_message",
    "error_stack",
    "request_headers",
    "metadata",
    "created_at",
    "completed_at",
    "trace_id",
    "span_id",
    "external_id",
)

_COMPLETION_COLUMNS = (
    "status",
    "status_code",
    "response_time_ms",
    "error_type",
    "error_message",
    "error_stack",
    "metadata",
    "completed_at",
)


_ROW_FIELDS = tuple(f.name for f in fields(ActivityRow))


def activity_values(row: ActivityRow) -> dict[str, Any]:
    """The row as the table's column values (the JSON columns encoded)."""
    values = {name: getattr(row, name) for name in _ROW_FIELDS}  # asdict would deep-copy metadata
    values["request_headers"] = dump_json(row.request_headers)
    values["metadata"] = dump_json(row.metadata)
    return values


def insert_activity_rows(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    # rows shaped before trace context and device ids existed (seeds, imports) simply have none
    insert_rows(
        conn,
        "integration_activity_log",
        ACTIVITY_COLUMNS,
        [{"trace_id": None, "span_id": None, "external_id": None, **r} for r in rows],
    )


def complete_activity_row(conn: Connection, row: Mapping[str, Any]) -> None:
    """Write an operation's outcome onto the row recorded when it started."""
    sets = ", ".join(f"{c} = :{c}" for c in _COMPLETION_COLUMNS)
    conn.execute(
        # created_at is the partition key on Postgres: naming it keeps the update to one month
        sa.text(
            f"UPDATE integration_activity_log SET {sets} WHERE organization_id = :organization_id "
            "AND id = :id AND created_at = :created_at"
        ),
        {c: row[c] for c in (*_COMPLETION_COLUMNS, "organization_id", "id", "created_at")},
    )


def activity_rows(
    conn: Connection,
    organization_id: str,
    *,
    integration_id: str | None = None,
    run_id: str | None = None,
    request_id: str | None = None,
    activity_type: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Activity rows of one organization, oldest first, filtered by any of the given ids."""
    sql = "SELECT * FROM integration_activity_log WHERE organization_id = :o"
    params: dict[str, Any] = {"o": organization_id}
    for column, value in (
        ("integration_id", integration_id),
        ("run_id", run_id),
        ("request_id", request_id),
        ("activity_type", activity_type),
    ):
        if value is not None:
            sql += f" AND {column} = :{column}"
            params[column] = value
    sql += " ORDER BY created_at, id"
    if limit:
        sql += " LIMIT :limit"
        params["limit"] = limit
    rows = [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]
    for (
        row
    ) in rows:  # JSONB comes back decoded from Postgres, as text from SQLite: same shape for both
        row["metadata"] = load_json(row.get("metadata"))
        row["request_headers"] = load_json(row.get("request_headers"))
    return rows


def dead_letter_rows(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    letter_id: str,
    *,
    external_id: str | None,
    request_id: str | None,
    since: datetime,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The `replay` rows about one dead letter (replays and operators' actions), newest first:
    found by the letter's device (activity_device_idx) or else its request id, then by the
    letter id their metadata names."""
    if external_id is None and request_id is None:
        return []
    column, value = ("external_id", external_id) if external_id else ("request_id", request_id)
    rows = conn.execute(
        sa.text(
            "SELECT created_at, status, run_id, step_key, attempt, error_type, "
            "error_message, metadata FROM integration_activity_log WHERE organization_id = :o "
            f"AND {column} = :v AND created_at >= :since AND integration_id = :i "
            "AND activity_type = 'replay' ORDER BY created_at DESC, id DESC LIMIT :n"
        ),
        {"o": organization_id, "i": integration_id, "v": value, "since": since, "n": limit * 4},
    ).mappings()
    found = []
    for row in rows:
        metadata = load_json(row["metadata"]) or {}
        if metadata.get("dead_letter_id") == letter_id:
            found.append(
                {**row, "metadata": metadata, "created_at": parse_timestamp(row["created_at"])}
            )
    return found[:limit]
