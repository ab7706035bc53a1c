"""Failed runs, recorded once each (the run id is unique): the run-failure sensor's table."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.clock import utc_now

SYSTEM_ORGANIZATION = "_system"


def record_event_failure(
    conn: Connection,
    *,
    organization_id: str,
    integration_id: str | None,
    run_id: str,
    job_name: str,
    partition_key: str | None,
    step_key: str | None,
    error_type: str | None,
    error_message: str,
    error_stack: str | None,
) -> bool:
    """Insert the failure of `run_id` unless it is already recorded; True when it is new."""
    inserted = conn.execute(
        sa.text(
            "INSERT INTO event_failures (id, organization_id, integration_id, run_id, job_name, "
            "partition_key, step_key, error_type, error_message, error_stack, status, retry_count, "
            "created_at) VALUES (:id, :o, :i, :r, :j, :p, :s, :et, :em, :es, 'failed', 0, :t) "
            "ON CONFLICT (run_id) DO NOTHING"
        ),
        {
            "id": str(uuid.uuid4()),
            "o": organization_id,
            "i": integration_id,
            "r": run_id,
            "j": job_name,
            "p": partition_key,
            "s": step_key,
            "et": error_type,
            "em": error_message,
            "es": error_stack,
            "t": utc_now(),
        },
    )
    return inserted.rowcount == 1


def event_failures(
    conn: Connection, organization_id: str, *, integration_id: str | None = None
) -> list[dict[str, Any]]:
    sql = "SELECT * FROM event_failures WHERE organization_id = :o"
    params: dict[str, Any] = {"o": organization_id}
    if integration_id is not None:
        sql += " AND integration_id = :i"
        params["i"] = integration_id
    return [
        dict(r) for r in conn.execute(sa.text(sql + " ORDER BY created_at, id"), params).mappings()
    ]
