"""The `sync_leases` table: who may write an (integration, stream) now, and with which epoch; and
closing the sync-log and activity rows of a holder that died (`abandoned`).

Only the SQL lives here; waiting, heartbeats and the errors are in `sync/stream_lease.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.store.database import parse_timestamp
from sync_pipelines.store.sync_state import ABANDONED

#: error_type of the sync-log and activity rows closed because their process died
ABANDONED_ERROR_TYPE = "abandoned"

_COLUMNS = (
    "organization_id, integration_id, stream, epoch, holder_run_id, holder_sync_id, "
    "holder_activity_id, holder_host, holder_pid, holder_process, acquired_at, renewed_at, "
    "expires_at"
)


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """The process that takes a lease: its run, and where it runs (host, pid, start time)."""

    run_id: str | None
    host: str
    pid: int
    #: the process's start time as the OS tells it ("" where unknown): a reused pid differs
    process: str


@dataclass(frozen=True, slots=True)
class Lease:
    organization_id: str
    integration_id: str
    stream: str
    epoch: int
    holder_run_id: str | None
    holder_sync_id: str | None
    holder_activity_id: str | None
    holder_host: str | None
    holder_pid: int | None
    holder_process: str | None
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime

    @property
    def held(self) -> bool:
        return self.holder_host is not None

    @classmethod
    def of(cls, row: Any) -> Lease:
        m = row._mapping
        return cls(
            **{
                **m,
                "epoch": int(m["epoch"]),
                "holder_pid": int(m["holder_pid"]) if m["holder_pid"] is not None else None,
                "acquired_at": parse_timestamp(m["acquired_at"]),
                "renewed_at": parse_timestamp(m["renewed_at"]),
                "expires_at": parse_timestamp(m["expires_at"]),
            }
        )


def read_lease(
    conn: Connection, organization_id: str, integration_id: str, stream: str
) -> Lease | None:
    row = conn.execute(
        sa.text(
            f"SELECT {_COLUMNS} FROM sync_leases WHERE organization_id = :o "
            "AND integration_id = :i AND stream = :s"
        ),
        {"o": organization_id, "i": integration_id, "s": stream},
    ).first()
    return Lease.of(row) if row is not None else None


def take_lease(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    stream: str,
    holder: LeaseHolder,
    *,
    seen: Lease | None,
    now: datetime,
    ttl_s: float,
    dead: bool = False,
) -> int | None:
    """Take the lease as it was `seen` (None: never taken) if it is released, expired, or `dead`
    (its holder's process is known to be gone); the new epoch, or None when it is held or
    changed hands since it was seen. One conditional statement, so two takers racing cannot
    both win (Postgres re-checks the condition on the row it waited for)."""
    params = {
        "o": organization_id,
        "i": integration_id,
        "s": stream,
        "r": holder.run_id,
        "h": holder.host,
        "p": holder.pid,
        "pr": holder.process,
        "now": now,
        "exp": now + timedelta(seconds=ttl_s),
        "seen": seen.epoch if seen is not None else 0,
        "dead": 1 if dead else 0,
    }
    if seen is None:
        inserted = conn.execute(
            sa.text(
                f"INSERT INTO sync_leases ({_COLUMNS}) VALUES (:o, :i, :s, 1, :r, NULL, NULL, :h, "
                ":p, :pr, :now, :now, :exp) ON CONFLICT (integration_id, stream) DO NOTHING"
            ),
            params,
        )
        return 1 if inserted.rowcount == 1 else None
    return conn.execute(
        sa.text(
            "UPDATE sync_leases SET epoch = epoch + 1, holder_run_id = :r, holder_sync_id = NULL, "
            "holder_activity_id = NULL, holder_host = :h, holder_pid = :p, holder_process = :pr, "
            "acquired_at = :now, renewed_at = :now, expires_at = :exp "
            "WHERE organization_id = :o AND integration_id = :i AND stream = :s AND epoch = :seen "
            "AND (holder_host IS NULL OR expires_at < :now OR :dead = 1) RETURNING epoch"
        ),
        params,
    ).scalar()


def record_lease_holder(
    conn: Connection,
    lease: tuple[str, str, str, int],
    *,
    sync_id: str | None = None,
    activity_id: str | None = None,
) -> None:
    """Name the holder's sync-log row and activity operation on its lease (`lease`: organization,
    integration, stream, epoch), so whoever finds it dead can close them."""
    sets = []
    if sync_id is not None:
        sets.append("holder_sync_id = :sync")
    if activity_id is not None:
        sets.append("holder_activity_id = :act")
    if not sets:
        return
    o, i, s, epoch = lease
    conn.execute(
        sa.text(
            f"UPDATE sync_leases SET {', '.join(sets)} WHERE organization_id = :o "
            "AND integration_id = :i AND stream = :s AND epoch = :e"
        ),
        {"o": o, "i": i, "s": s, "e": epoch, "sync": sync_id, "act": activity_id},
    )


def renew_lease(
    conn: Connection, lease: tuple[str, str, str, int], *, now: datetime, ttl_s: float
) -> bool:
    """Extend the lease if it is still held at this epoch; False when it was taken over (or
    released). Inside a batch's transaction this is the fencing check: the row stays locked
    until the batch commits, so no take-over lands in between."""
    o, i, s, epoch = lease
    renewed = conn.execute(
        sa.text(
            "UPDATE sync_leases SET renewed_at = :now, expires_at = :exp "
            "WHERE organization_id = :o AND integration_id = :i AND stream = :s AND epoch = :e "
            "AND holder_host IS NOT NULL"
        ),
        {
            "o": o,
            "i": i,
            "s": s,
            "e": epoch,
            "now": now,
            "exp": now + timedelta(seconds=ttl_s),
        },
    )
    return renewed.rowcount == 1


def release_lease(conn: Connection, lease: tuple[str, str, str, int], *, now: datetime) -> None:
    """Give the lease up (only if still held at this epoch); the row keeps its epoch."""
    o, i, s, epoch = lease
    conn.execute(
        sa.text(
            "UPDATE sync_leases SET holder_run_id = NULL, holder_sync_id = NULL, "
            "holder_activity_id = NULL, holder_host = NULL, holder_pid = NULL, "
            "holder_process = NULL, expires_at = :now "
            "WHERE organization_id = :o AND integration_id = :i AND stream = :s AND epoch = :e"
        ),
        {"o": o, "i": i, "s": s, "e": epoch, "now": now},
    )


def streams_to_close(
    conn: Connection, organization_id: str, *, now: datetime
) -> list[tuple[str, str, str]]:
    """(organization, integration, stream) of one organization with a sync-log row still
    `running` or a held lease past its expiry (the stale-sync sensor's scan, organization by
    organization)."""
    rows = conn.execute(
        sa.text(
            "SELECT organization_id, integration_id, stream FROM integration_sync_log "
            "WHERE organization_id = :o AND status = 'running' "
            "UNION SELECT organization_id, integration_id, stream FROM sync_leases "
            "WHERE organization_id = :o AND holder_host IS NOT NULL AND expires_at < :now"
        ),
        {"o": organization_id, "now": now},
    )
    return sorted({(o, i, s) for o, i, s in rows})


def close_abandoned(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    stream: str,
    *,
    dead: Lease | None,
    now: datetime,
    closed_by: str,
) -> list[str]:
    """Close the stream's sync-log rows still `running` as `abandoned` (call it holding the
    stream's lease, or having revoked a dead holder's: no live sync owns them then), and the
    dead holder's `started` activity operation as failed. Returns the sync-log ids closed."""
    where = (
        "WHERE organization_id = :o AND integration_id = :i AND stream = :s AND status = 'running'"
    )
    params: dict[str, Any] = {"o": organization_id, "i": integration_id, "s": stream}
    ids = [
        r for (r,) in conn.execute(sa.text(f"SELECT id FROM integration_sync_log {where}"), params)
    ]
    if not ids:
        return []
    if dead is not None:
        message = (
            f"process died: no heartbeat since {dead.renewed_at.isoformat()} (run "
            f"{dead.holder_run_id}, host {dead.holder_host}, pid {dead.holder_pid}); "
            f"closed by {closed_by}"
        )
    else:
        message = f"process died or was interrupted: it never finished; closed by {closed_by}"
    conn.execute(
        sa.text(
            f"UPDATE integration_sync_log SET status = '{ABANDONED}', completed_at = :now, "
            f"error_type = :et, error_message = :em {where}"
        ),
        {**params, "now": now, "et": ABANDONED_ERROR_TYPE, "em": message},
    )
    if dead is not None and dead.holder_activity_id is not None:
        conn.execute(
            sa.text(
                "UPDATE integration_activity_log SET status = 'failed', completed_at = :now, "
                "error_type = :et, error_message = :em "
                "WHERE organization_id = :o AND id = :a AND status = 'started'"
            ),
            {
                "o": organization_id,
                "a": dead.holder_activity_id,
                "now": now,
                "et": ABANDONED_ERROR_TYPE,
                "em": message,
            },
        )
    return ids


def runs_known_dead(conn: Connection, run_ids: list[str], *, now: datetime) -> set[str]:
    """Those of `run_ids` whose sync is known dead, every organization (the poll schedule's
    question): a lease still held in the run's name past its expiry (no heartbeat for a TTL), or
    a sync of the run closed `abandoned` (by the next sync of its stream or the stale-sync
    sensor, which take such a lease over). A run that holds no lease — between its steps, waiting
    for a pool slot, a sync that ended — is not known dead."""
    if not run_ids:
        return set()
    if conn.dialect.name == "postgresql":  # across tenants: the named function (sql/026)
        found = conn.execute(
            sa.text("SELECT sync_runs_known_dead(CAST(:ids AS text[]), :now)"),
            {"ids": list(run_ids), "now": now},
        )
        return set(found.scalars())
    rows = conn.execute(
        sa.text(
            "SELECT holder_run_id FROM sync_leases WHERE holder_run_id IN :ids "
            "AND holder_host IS NOT NULL AND expires_at < :now "
            "UNION SELECT run_id FROM integration_sync_log WHERE run_id IN :ids "
            "AND status = :abandoned"
        ).bindparams(sa.bindparam("ids", expanding=True)),
        {"ids": list(run_ids), "now": now, "abandoned": ABANDONED},
    )
    return {run_id for (run_id,) in rows}
