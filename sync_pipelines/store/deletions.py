"""Soft deletion of devices: the scan epoch kept with the devices cursor, the ids a scan has seen,
deletions held by the mass-deletion guard, and the UPDATEs that mark devices deleted.

A device is active while `deleted_at IS NULL`. Deleting sets `status = 'deleted'`, `deleted_at`
and the provenance of the run (and event) that deleted it, and empties `content_hash` — so the
next inventory that lists the device again rewrites the row whole, which clears `deleted_at`:
restoring a device costs the upsert nothing extra.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.store.bulk import insert_rows
from sync_pipelines.store.database import parse_timestamp
from sync_pipelines.store.dead_letters import resolve_letters_of_deleted_devices

DELETED = "deleted"
#: the devices columns a deletion writes (status, deleted_at, provenance; content_hash emptied)
_MARK_DELETED = (
    "status = 'deleted', deleted_at = :now, content_hash = '', last_run_id = :run, "
    "last_request_id = :req, updated_at = :now"
)


@dataclass(frozen=True, slots=True)
class ScanState:
    """The inventory scan the stored devices cursor belongs to."""

    epoch: str | None
    started_at: datetime | None
    #: a record of the scan was rejected, or its start was not part of it: it deletes nothing
    partial: bool


def get_scan_state(
    conn: Connection, organization_id: str, integration_id: str, stream: str
) -> ScanState:
    row = conn.execute(
        sa.text(
            "SELECT scan_epoch, scan_started_at, scan_partial FROM integration_sync_state "
            "WHERE organization_id = :o AND integration_id = :i AND stream = :s"
        ),
        {"o": organization_id, "i": integration_id, "s": stream},
    ).first()
    if row is None:
        return ScanState(None, None, False)
    return ScanState(row[0], parse_timestamp(row[1]), bool(row[2]))


def set_scan_state(
    conn: Connection, organization_id: str, integration_id: str, stream: str, scan: ScanState
) -> None:
    """Call after `set_cursor`, in the same transaction: the epoch travels with the cursor."""
    conn.execute(
        sa.text(
            "UPDATE integration_sync_state SET scan_epoch = :e, scan_started_at = :t, "
            "scan_partial = :p WHERE organization_id = :o AND integration_id = :i AND stream = :s"
        ),
        {
            "e": scan.epoch,
            "t": scan.started_at,
            "p": scan.partial,
            "o": organization_id,
            "i": integration_id,
            "s": stream,
        },
    )


def record_seen(
    conn: Connection, organization_id: str, integration_id: str, epoch: str, digests: bytes
) -> None:
    """One batch's seen ids (packed digests), in the transaction that writes the batch."""
    if not digests:
        return
    conn.execute(
        sa.text(
            "INSERT INTO device_scan_seen (organization_id, integration_id, scan_epoch, batch_id, "
            "digests) VALUES (:o, :i, :e, :b, :d)"
        ),
        {
            "o": organization_id,
            "i": integration_id,
            "e": epoch,
            "b": str(uuid.uuid4()),
            "d": digests,
        },
    )


def seen_digests(
    conn: Connection, organization_id: str, integration_id: str, epoch: str
) -> Iterator[bytes]:
    rows = conn.execute(
        sa.text(
            "SELECT digests FROM device_scan_seen WHERE organization_id = :o "
            "AND integration_id = :i AND scan_epoch = :e"
        ),
        {"o": organization_id, "i": integration_id, "e": epoch},
    ).scalars()
    for packed in rows:
        yield bytes(packed)


def forget_seen(
    conn: Connection, organization_id: str, integration_id: str, *, except_epoch: str | None = None
) -> None:
    """Drop the seen ids of finished or abandoned scans (all but `except_epoch`)."""
    conn.execute(
        sa.text(
            "DELETE FROM device_scan_seen WHERE organization_id = :o AND integration_id = :i "
            "AND scan_epoch <> :e"
        ),
        {"o": organization_id, "i": integration_id, "e": except_epoch or ""},
    )


def active_ids_stored_before(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    before: datetime,
    after: str,
    limit: int,
) -> list[str]:
    """The next `limit` ids of active devices stored before `before`, after `after` in key order."""
    return list(
        conn.execute(
            sa.text(
                "SELECT external_id FROM devices WHERE organization_id = :o AND integration_id = :i "
                "AND external_id > :after AND deleted_at IS NULL AND created_at < :before "
                "ORDER BY external_id LIMIT :n"
            ),
            {
                "o": organization_id,
                "i": integration_id,
                "after": after,
                "before": before,
                "n": limit,
            },
        ).scalars()
    )


def hold_deletions(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    epoch: str,
    external_ids: Sequence[str],
    now: datetime,
) -> None:
    rows = [
        {
            "organization_id": organization_id,
            "integration_id": integration_id,
            "external_id": e,
            "scan_epoch": epoch,
            "held_at": now,
        }
        for e in external_ids
    ]
    insert_rows(
        conn,
        "held_deletions",
        ("organization_id", "integration_id", "external_id", "scan_epoch", "held_at"),
        rows,
    )


@dataclass(frozen=True, slots=True)
class HeldDeletions:
    count: int
    epoch: str | None
    held_at: datetime | None


def held_deletions(conn: Connection, organization_id: str, integration_id: str) -> HeldDeletions:
    count, epoch, held_at = conn.execute(
        sa.text(
            "SELECT count(*), max(scan_epoch), max(held_at) FROM held_deletions "
            "WHERE organization_id = :o AND integration_id = :i"
        ),
        {"o": organization_id, "i": integration_id},
    ).one()
    return HeldDeletions(int(count), epoch, parse_timestamp(held_at))


def drop_held_deletions(conn: Connection, organization_id: str, integration_id: str) -> int:
    return conn.execute(
        sa.text("DELETE FROM held_deletions WHERE organization_id = :o AND integration_id = :i"),
        {"o": organization_id, "i": integration_id},
    ).rowcount


def apply_held_deletions(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    *,
    run_id: str | None,
    now: datetime,
) -> int:
    """Mark every held device deleted (those still active), then forget the hold; how many."""
    deleted = conn.execute(
        sa.text(
            f"UPDATE devices SET {_MARK_DELETED} WHERE organization_id = :o AND integration_id = :i "
            "AND deleted_at IS NULL AND external_id IN (SELECT h.external_id FROM held_deletions h "
            "WHERE h.organization_id = :o AND h.integration_id = :i)"
        ),
        {"o": organization_id, "i": integration_id, "run": run_id, "req": None, "now": now},
    ).rowcount
    resolve_letters_of_deleted_devices(
        conn,
        organization_id,
        integration_id,
        "SELECT h.external_id FROM held_deletions h "
        "WHERE h.organization_id = :o AND h.integration_id = :i",
        {"o": organization_id, "i": integration_id},
        run_id=run_id,
        now=now,
    )
    drop_held_deletions(conn, organization_id, integration_id)
    return deleted


def mark_deleted(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    external_id: str,
    *,
    run_id: str | None,
    request_id: str | None,
    now: datetime,
) -> bool:
    """A provider said this device is gone (an event): delete it now. False if not stored or
    already deleted."""
    params: dict[str, Any] = {
        "o": organization_id,
        "i": integration_id,
        "e": external_id,
        "run": run_id,
        "req": request_id,
        "now": now,
    }
    return (
        conn.execute(
            sa.text(
                f"UPDATE devices SET {_MARK_DELETED} WHERE organization_id = :o "
                "AND integration_id = :i AND external_id = :e AND deleted_at IS NULL"
            ),
            params,
        ).rowcount
        == 1
    )
