"""Rows per status of a queue-like table (dead letters, the webhook inbox), organization-scoped,
and the scope condition the queue reads share (an organization, or one of its integrations)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.store.database import sql_list


def scope_of(organization_id: str, integration_id: str | None = None) -> tuple[str, dict[str, Any]]:
    """The WHERE condition and parameters of an organization's rows, or one integration's."""
    if integration_id:
        return "organization_id = :o AND integration_id = :i", {
            "o": organization_id,
            "i": integration_id,
        }
    return "organization_id = :o", {"o": organization_id}


def counts_by_provider(
    conn: Connection,
    table: str,
    columns: str,
    group_by: str,
    statuses: Sequence[str],
    organization_id: str | None = None,
) -> list[Any]:
    """`SELECT columns FROM table` over the rows in `statuses`, grouped: the queue depths per
    provider. Without an organization a system-level scan across tenants (the service's own
    queues, for `/metrics` and the system-wide health check). `table`, `columns` and `group_by`
    are ours, never input."""
    scope, params = "", {}
    if organization_id is not None:
        scope, params = " AND organization_id = :o", {"o": organization_id}
    return list(
        conn.execute(
            sa.text(
                f"SELECT {columns} FROM {table} "
                f"WHERE status IN ({sql_list(statuses)}){scope} GROUP BY {group_by}"
            ),
            params,
        ).all()
    )


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


def queue_counts_across_tenants(
    conn: Connection, queue: str, statuses: Sequence[str]
) -> list[tuple[str, str, int, Any]]:
    """Postgres: (provider, status, rows, oldest) of a queue over every tenant, through the named
    function of sql/026 (the service role sees one organization at a time otherwise)."""
    rows = conn.execute(
        sa.text("SELECT * FROM sync_queue_counts(:q, CAST(:s AS text[]))"),
        {"q": queue, "s": list(statuses)},
    )
    return [(p, s, int(n), oldest) for p, s, n, oldest in rows]
