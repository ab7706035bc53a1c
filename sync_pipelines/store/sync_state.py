"""Sync cursors and the per-sync log (`integration_sync_log`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.store.database import (
    dump_json,
    load_json,
    parse_timestamp,
    sql_list,
    utc_now,
)

RUNNING = "running"
SUCCESS = "success"
#: stored its data but not all of it: records dead-lettered, telemetry gaps, broker-reported loss
PARTIAL = "partial"
#: the process died mid-sync (no heartbeat); closed by the next sync of its stream or the
#: stale-sync sensor (store/sync_leases.py)
ABANDONED = "abandoned"
#: a stale writer: its lease was taken over, and it stopped at its next commit
FENCED = "fenced"

#: sync log statuses of a sync that stored its data (`partial`: some records dead-lettered)
GOOD_SYNC_STATUSES = (SUCCESS, PARTIAL)
#: sync log statuses of a sync that failed — the one definition health, reports, checks, the
#: console and metrics count failures by
FAILED_SYNC_STATUSES = ("failed", ABANDONED, FENCED)
#: streams that redo or send rather than bring data in: the dead-letter replay and the desired
#: exports. Their outcomes are judged on their own; they never make an integration's data fresh
#: nor end (or hide) a streak of failed syncs (sync/replay.py, sync/export.py name them)
SIDE_STREAMS = ("dead_letter_replay", "desired_exports")


def is_failed_sync(status: str | None) -> bool:
    return status in FAILED_SYNC_STATUSES


def get_cursor(conn: Connection, organization_id: str, integration_id: str, stream: str) -> Any:
    value = conn.execute(
        sa.text(
            "SELECT cursor_value FROM integration_sync_state "
            "WHERE organization_id = :o AND integration_id = :i AND stream = :s"
        ),
        {"o": organization_id, "i": integration_id, "s": stream},
    ).scalar()
    return load_json(value)


def set_cursor(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    stream: str,
    cursor: Any,
    run_id: str | None,
) -> None:
    """Call inside the transaction that writes the rows this cursor covers."""
    conn.execute(
        sa.text(
            "INSERT INTO integration_sync_state "
            "(organization_id, integration_id, stream, cursor_value, last_run_id, updated_at) "
            "VALUES (:o, :i, :s, :c, :r, :t) ON CONFLICT (integration_id, stream) DO UPDATE SET "
            "cursor_value = excluded.cursor_value, last_run_id = excluded.last_run_id, "
            "updated_at = excluded.updated_at "
            "WHERE integration_sync_state.organization_id = excluded.organization_id"
        ),
        {
            "o": organization_id,
            "i": integration_id,
            "s": stream,
            "c": dump_json(cursor),
            "r": run_id,
            "t": utc_now(),
        },
    )


@dataclass(slots=True)
class SyncCounts:
    fetched: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    conflicts: int = 0
    pages: int = 0
    #: telemetry sequence gaps detected (ranges of messages that never arrived)
    gaps: int = 0
    #: devices soft-deleted: missing from a complete scan, or deleted by a provider event
    deleted: int = 0

    def figures(self) -> dict[str, int]:
        """Every count by name (log lines, activity metadata, Dagster metadata)."""
        return {
            "fetched": self.fetched,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "conflicts": self.conflicts,
            "deleted": self.deleted,
            "gaps": self.gaps,
            "pages": self.pages,
        }


def start_sync_log(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    stream: str,
    run_id: str | None,
    cursor_before: Any,
) -> str:
    sync_id = str(uuid.uuid4())
    conn.execute(
        sa.text(
            "INSERT INTO integration_sync_log (id, organization_id, integration_id, run_id, stream, "
            "status, started_at, cursor_before, fetched, created, updated, unchanged, failed, "
            "conflicts, pages) VALUES (:id, :o, :i, :r, :s, 'running', :t, :c, 0, 0, 0, 0, 0, 0, 0)"
        ),
        {
            "id": sync_id,
            "o": organization_id,
            "i": integration_id,
            "r": run_id,
            "s": stream,
            "t": utc_now(),
            "c": dump_json(cursor_before),
        },
    )
    return sync_id


def finish_sync_log(
    conn: Connection,
    organization_id: str,
    sync_id: str,
    *,
    status: str,
    started_at: datetime,
    counts: SyncCounts,
    cursor_after: Any,
    error_type: str | None = None,
    error_message: str | None = None,
) -> None:
    completed = utc_now()
    conn.execute(
        sa.text(
            "UPDATE integration_sync_log SET status = :status, completed_at = :done, "
            "duration_ms = :ms, cursor_after = :cursor, fetched = :fetched, created = :created, "
            "updated = :updated, unchanged = :unchanged, failed = :failed, conflicts = :conflicts, "
            "deleted = :deleted, pages = :pages, gaps = :gaps, error_type = :etype, error_message = :emsg "
            "WHERE organization_id = :o AND id = :id"
        ),
        {
            "status": status,
            "done": completed,
            "ms": (completed - started_at).total_seconds() * 1000,
            "cursor": dump_json(cursor_after),
            "fetched": counts.fetched,
            "created": counts.created,
            "updated": counts.updated,
            "unchanged": counts.unchanged,
            "failed": counts.failed,
            "conflicts": counts.conflicts,
            "deleted": counts.deleted,
            "pages": counts.pages,
            "gaps": counts.gaps,
            "etype": error_type,
            "emsg": error_message,
            "o": organization_id,
            "id": sync_id,
        },
    )


def sync_log_rows(
    conn: Connection, organization_id: str, integration_id: str
) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.text(
            "SELECT * FROM integration_sync_log WHERE organization_id = :o AND integration_id = :i "
            "ORDER BY started_at"
        ),
        {"o": organization_id, "i": integration_id},
    ).mappings()
    return [dict(r) for r in rows]


def last_sync_started_at(
    conn: Connection, organization_id: str, integration_id: str, stream: str
) -> datetime | None:
    return parse_timestamp(
        conn.execute(
            sa.text(
                "SELECT max(started_at) FROM integration_sync_log "
                "WHERE organization_id = :o AND integration_id = :i AND stream = :s"
            ),
            {"o": organization_id, "i": integration_id, "s": stream},
        ).scalar()
    )


def recent_sync_log(
    conn: Connection, organization_id: str, integration_id: str, *, limit: int
) -> list[dict[str, Any]]:
    """The integration's newest sync-log rows (every stream), newest first: stream, status,
    started_at, completed_at, fetched, failed, gaps, error_type, error_message."""
    columns = (
        "stream, status, started_at, completed_at, fetched, failed, gaps, error_type, error_message"
    )
    rows = _newest(conn, columns, "", {"o": organization_id, "i": integration_id, "n": limit})
    return [dict(r._mapping) for r in rows]


def last_good_sync_at(
    conn: Connection, organization_id: str, integration_id: str
) -> datetime | None:
    """When the integration's newest sync that brought data in (not a replay or an export)
    and stored it completed."""
    return parse_timestamp(
        conn.execute(
            sa.text(
                "SELECT max(completed_at) FROM integration_sync_log WHERE organization_id = :o "
                f"AND integration_id = :i AND status IN ({sql_list(GOOD_SYNC_STATUSES)}) "
                f"AND stream NOT IN ({sql_list(SIDE_STREAMS)})"
            ),
            {"o": organization_id, "i": integration_id},
        ).scalar()
    )


def finished_syncs(
    conn: Connection, organization_id: str, integration_id: str, *, limit: int
) -> list[tuple[str, datetime | None]]:
    """(status, completed_at) of the integration's newest finished syncs, newest first."""
    params = {"o": organization_id, "i": integration_id, "n": limit}
    rows = _newest(conn, "status, completed_at", " AND status <> 'running'", params)
    return [(status, parse_timestamp(completed)) for status, completed in rows]


def finished_stream_syncs(
    conn: Connection, organization_id: str, integration_id: str, stream: str, *, limit: int
) -> list[tuple[str, int, bool]]:
    """(status, fetched, full scan) of the stream's newest finished syncs, newest first. A full
    scan started from scratch; a resumed one (after a killed sync) fetched only the rest."""
    columns = "status, fetched, CASE WHEN cursor_before IS NULL THEN 1 ELSE 0 END AS full_scan"
    params = {"o": organization_id, "i": integration_id, "s": stream, "n": limit}
    rows = _newest(conn, columns, " AND stream = :s AND status <> 'running'", params)
    return [(status, int(fetched), bool(full)) for status, fetched, full in rows]


def _newest(conn: Connection, columns: str, condition: str, params: dict[str, Any]) -> list[Any]:
    """`columns` of the integration's (:o, :i) newest sync-log rows meeting `condition`, up to :n,
    newest first (sql/013's (organization, integration, started_at, status) index, backwards)."""
    return list(
        conn.execute(
            sa.text(
                f"SELECT {columns} FROM integration_sync_log WHERE organization_id = :o "
                f"AND integration_id = :i{condition} ORDER BY started_at DESC LIMIT :n"
            ),
            params,
        ).all()
    )
