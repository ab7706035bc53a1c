"""Desired-state changes waiting for export, and the conflicts their pushes ran into."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.clock import utc_now
from sync_pipelines.store.database import dump_json, load_json

PENDING = "pending"
PUSHED = "pushed"
CONFLICT = "conflict"
FAILED = "failed"

PROVIDER_WINS = "provider_wins"
LOCAL_WINS = "local_wins"
RESOLUTIONS = (PROVIDER_WINS, LOCAL_WINS)


@dataclass(frozen=True, slots=True)
class PendingChange:
    """A desired-state patch waiting to be pushed, with the state version it was made against."""

    id: str
    external_id: str
    patch: dict[str, Any]
    base_version: str | None
    attempts: int
    created_at: datetime | str | None


def request_desired_change(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    external_id: str,
    patch: Mapping[str, Any],
    *,
    requested_by: str | None = None,
) -> str:
    """Queue a desired-state patch for a device; its base is the state version we last synced."""
    if not isinstance(patch, Mapping) or not patch:
        raise ValueError(f"device {external_id}: a desired patch must be a non-empty JSON object")
    base_version = conn.execute(
        sa.text(
            "SELECT version FROM device_states WHERE organization_id = :o AND integration_id = :i "
            "AND external_id = :e"
        ),
        {"o": organization_id, "i": integration_id, "e": external_id},
    ).scalar_one_or_none()
    change_id, now = str(uuid.uuid4()), utc_now()
    conn.execute(
        sa.text(
            "INSERT INTO desired_changes (id, organization_id, integration_id, external_id, patch, "
            "base_version, status, attempts, requested_by, created_at, updated_at) VALUES "
            "(:id, :o, :i, :e, :p, :b, 'pending', 0, :by, :t, :t)"
        ),
        {
            "id": change_id,
            "o": organization_id,
            "i": integration_id,
            "e": external_id,
            "p": dump_json(dict(patch)),
            "b": base_version,
            "by": requested_by,
            "t": now,
        },
    )
    return change_id


def pending_changes(
    conn: Connection, organization_id: str, integration_id: str, limit: int
) -> list[PendingChange]:
    """The oldest pending changes, oldest first."""
    rows = conn.execute(
        sa.text(
            "SELECT id, external_id, patch, base_version, attempts, created_at FROM desired_changes "
            "WHERE organization_id = :o AND integration_id = :i AND status = 'pending' "
            "ORDER BY created_at, id LIMIT :n"
        ),
        {"o": organization_id, "i": integration_id, "n": limit},
    )
    return [
        PendingChange(change_id, external_id, load_json(patch), base_version, attempts, created)
        for change_id, external_id, patch, base_version, attempts, created in rows
    ]


def finish_change(
    conn: Connection,
    organization_id: str,
    change_id: str,
    *,
    status: str,
    run_id: str | None,
    request_id: str | None = None,
    version_after: str | None = None,
    error_type: str | None = None,
    error_message: str | None = None,
) -> None:
    now = utc_now()
    conn.execute(
        sa.text(
            "UPDATE desired_changes SET status = :s, attempts = attempts + 1, updated_at = :t, "
            "pushed_at = CASE WHEN :s = 'pushed' THEN :t ELSE pushed_at END, version_after = :v, "
            "run_id = :r, request_id = :rq, error_type = :et, error_message = :em "
            "WHERE organization_id = :o AND id = :id"
        ),
        {
            "s": status,
            "t": now,
            "v": version_after,
            "r": run_id,
            "rq": request_id,
            "et": error_type,
            "em": error_message,
            "o": organization_id,
            "id": change_id,
        },
    )


def record_conflict(
    conn: Connection,
    *,
    organization_id: str,
    integration_id: str,
    external_id: str,
    change_id: str,
    local_patch: Mapping[str, Any],
    provider_desired: Any,
    base_version: str | None,
    provider_version: str | None,
    resolution: str,
    run_id: str | None,
    request_id: str | None,
) -> str:
    conflict_id = str(uuid.uuid4())
    conn.execute(
        sa.text(
            "INSERT INTO sync_conflicts (id, organization_id, integration_id, external_id, change_id, "
            "local_patch, provider_desired, base_version, provider_version, resolution, run_id, "
            "request_id, detected_at) VALUES (:id, :o, :i, :e, :c, :lp, :pd, :bv, :pv, :res, :r, :rq, :t)"
        ),
        {
            "id": conflict_id,
            "o": organization_id,
            "i": integration_id,
            "e": external_id,
            "c": change_id,
            "lp": dump_json(dict(local_patch)),
            "pd": dump_json(provider_desired),
            "bv": base_version,
            "pv": provider_version,
            "res": resolution,
            "r": run_id,
            "rq": request_id,
            "t": utc_now(),
        },
    )
    return conflict_id


def desired_changes(
    conn: Connection, organization_id: str, integration_id: str
) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.text(
            "SELECT * FROM desired_changes WHERE organization_id = :o AND integration_id = :i "
            "ORDER BY created_at, id"
        ),
        {"o": organization_id, "i": integration_id},
    ).mappings()
    return [{**row, "patch": load_json(row["patch"])} for row in rows]


def sync_conflicts(
    conn: Connection, organization_id: str, integration_id: str
) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.text(
            "SELECT * FROM sync_conflicts WHERE organization_id = :o AND integration_id = :i "
            "ORDER BY detected_at, id"
        ),
        {"o": organization_id, "i": integration_id},
    ).mappings()
    return [
        {
            **row,
            "local_patch": load_json(row["local_patch"]),
            "provider_desired": load_json(row["provider_desired"]),
        }
        for row in rows
    ]
