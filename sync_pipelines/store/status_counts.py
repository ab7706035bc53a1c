"""Rows per status of a queue-like table (dead letters, the webhook inbox), organization-scoped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def count_by_status(
    conn: Connection,
    table: str,
    statuses: Sequence[str],
    organization_id: str,
    integration_id: str | None = None,
) -> dict[str, int]:
    """Every status in `statuses` with its row count (0 when absent). `table` is one of ours,
    never user input."""
    sql = f"SELECT status, count(*) AS n FROM {table} WHERE organization_id = :o"
    params: dict[str, Any] = {"o": organization_id}
    if integration_id:
        sql += " AND integration_id = :i"
        params["i"] = integration_id
    counts = dict.fromkeys(statuses, 0)
    for row in conn.execute(sa.text(sql + " GROUP BY status"), params).mappings():
        counts[row["status"]] = int(row["n"])
    return counts
