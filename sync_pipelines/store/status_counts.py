"""Rows per status of a queue-like table (dead letters, the webhook inbox), organization-scoped,
and the scope condition the queue reads share (an organization, or one of its integrations)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def scope_of(organization_id: str, integration_id: str | None = None) -> tuple[str, dict[str, Any]]:
    """The WHERE condition and parameters of an organization's rows, or one integration's."""
    if integration_id:
        return "organization_id = :o AND integration_id = :i", {
            "o": organization_id,
            "i": integration_id,
        }
    return "organization_id = :o", {"o": organization_id}


def count_by_status(
    conn: Connection,
    table: str,
    statuses: Sequence[str],
    organization_id: str,
    integration_id: str | None = None,
) -> dict[str, int]:
    """Every status in `statuses` with its row count (0 when absent). `table` is one of ours,
    never user input."""
    where, params = scope_of(organization_id, integration_id)
    counts = dict.fromkeys(statuses, 0)
    for row in conn.execute(
        sa.text(f"SELECT status, count(*) AS n FROM {table} WHERE {where} GROUP BY status"), params
    ).mappings():
        counts[row["status"]] = int(row["n"])
    return counts
