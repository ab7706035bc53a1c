"""A device's history: the `device_changes` rows (sql/027_device_changes.*.sql) and their reads.

The rows are written by triggers on devices, device_states and dead_letters, so every write
path — the syncs' bulk upserts, webhook events, replays, deletion scans — records its changes
in its own transaction, and a device the upsert leaves alone writes nothing. A writer names
itself for its transaction with `set_change_source` (default `sync`).

Kinds: created, updated (changes: field -> [old, new]; documents — attributes, reported and
desired state — stored whole and read key by key), deleted, restored, rejected (reason).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.store.activity_partitions import ActivityPartition, month_of
from sync_pipelines.store.database import CHANGE_CONTEXT, parse_timestamp

KINDS = ("created", "updated", "deleted", "restored", "rejected")
#: what wrote a change: the writer says so with `set_change_source`
SOURCES = ("sync", "webhook", "replay", "deletion_scan", "operator", "export")
#: kept as long as the logs (store/retention.py, `SYNC_RETENTION_DAYS`, default 90 days); on
#: Postgres partitioned by UTC month like the activity log (device_changes_pYYYYMM + default)
TABLE = "device_changes"

_COLUMNS = (
    "id, organization_id, integration_id, device_id, at, kind, changes, reason, source, "
    "run_id, request_id"
)


@dataclass(frozen=True, slots=True)
class DeviceChange:
    id: int
    organization_id: str
    integration_id: str
    device_id: str
    at: datetime
    kind: str
    #: field -> (old, new); for `rejected` the letter's stream and id
    changes: dict[str, Any]
    reason: str | None
    source: str
    run_id: str | None
    request_id: str | None


def set_change_source(conn: Connection, source: str) -> None:
    """Name the writer of the open transaction's device changes (`sync` if never said).
    Postgres: a setting local to the transaction; SQLite: the connection's context, cleared
    when the connection goes back to the pool."""
    if source not in SOURCES:
        raise ValueError(
            f"device change source must be one of {', '.join(SOURCES)}, got {source!r}"
        )
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT set_config('sync.change_source', :s, true)"), {"s": source})
        return
    conn.connection.info[CHANGE_CONTEXT]["source"] = source


def device_changes_page(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    device_id: str,
    *,
    after: tuple[datetime, int] | None = None,
    limit: int = 50,
) -> list[DeviceChange]:
    """The device's changes newest first, `limit` of them after the keyset `(at, id)`."""
    params: dict[str, Any] = {"o": organization_id, "i": integration_id, "d": device_id, "n": limit}
    where = "organization_id = :o AND integration_id = :i AND device_id = :d"
    if after is not None:
        # (at, id) < (:at, :id), spelled out so both engines use the index's order
        where += " AND (at < :at OR (at = :at AND id < :id))"
        params.update(at=after[0], id=after[1])
    rows = conn.execute(
        sa.text(
            f"SELECT {_COLUMNS} FROM device_changes WHERE {where} "
            "ORDER BY at DESC, id DESC LIMIT :n"
        ),
        params,
    ).all()
    return [_change(r) for r in rows]


def changes_of_devices(
    conn: Connection, organization_id: str, integration_id: str, device_ids: Sequence[str]
) -> int:
    """How many change rows the devices have (tests and the bench count with it)."""
    if not device_ids:
        return 0
    return int(
        conn.execute(
            sa.text(
                "SELECT count(*) FROM device_changes WHERE organization_id = :o AND "
                "integration_id = :i AND device_id IN :ids"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"o": organization_id, "i": integration_id, "ids": list(device_ids)},
        ).scalar_one()
    )


def count_changes(
    conn: Connection, organization_id: str, integration_id: str, *, kind: str | None = None
) -> int:
    """The integration's change rows (of one kind)."""
    where = "organization_id = :o AND integration_id = :i"
    if kind is not None:
        where += " AND kind = :k"
    return int(
        conn.execute(
            sa.text(f"SELECT count(*) FROM device_changes WHERE {where}"),
            {"o": organization_id, "i": integration_id, "k": kind},
        ).scalar_one()
    )


def integration_changes(
    conn: Connection, organization_id: str, integration_id: str, *, kind: str | None = None
) -> list[DeviceChange]:
    """Every change row of the integration, oldest first (tests; small integrations)."""
    where = "organization_id = :o AND integration_id = :i"
    if kind is not None:
        where += " AND kind = :k"
    rows = conn.execute(
        sa.text(f"SELECT {_COLUMNS} FROM device_changes WHERE {where} ORDER BY at, id"),
        {"o": organization_id, "i": integration_id, "k": kind},
    ).all()
    return [_change(r) for r in rows]


def ensure_device_change_partitions(
    conn: Connection, *, now: datetime, months_ahead: int
) -> list[str]:
    """Postgres: create the monthly partitions of `now`'s month and `months_ahead` after it
    (rows of those months waiting in the default partition move in); the names created."""
    if conn.dialect.name != "postgresql":
        return []
    if months_ahead < 0:
        raise ValueError(f"months_ahead must be 0 or more, got {months_ahead}")
    return list(
        conn.execute(
            sa.text("SELECT sync_ensure_device_change_partitions(:month, :ahead)"),
            {"month": month_of(now), "ahead": months_ahead},
        ).scalars()
    )


def drop_device_change_partition(conn: Connection, partition: ActivityPartition) -> int:
    """Postgres: drop one monthly partition through the owner's function (sql/027); its rows."""
    if conn.dialect.name != "postgresql":
        return 0
    if partition.is_default:
        raise ValueError(f"{partition.name} is the default partition: it is pruned, never dropped")
    return int(
        conn.execute(
            sa.text("SELECT sync_drop_device_change_partition(:name)"), {"name": partition.name}
        ).scalar_one()
    )


#: fields stored as whole documents (old and new), read key by key (`attributes.<key>`)
DOCUMENTS = ("attributes", "reported", "desired")


def expand_documents(changes: dict[str, Any]) -> dict[str, Any]:
    """`attributes: [old, new]` (both objects, or one missing) as `attributes.<key>: [old,
    new]` for each key whose value differs; other fields as they are. The triggers store the
    documents whole (cheaper on the write path, sql/027); this is how every reader shows them."""
    out: dict[str, Any] = {}
    for field, pair in changes.items():
        if (
            field in DOCUMENTS
            and isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(side, dict) or side is None for side in pair)
        ):
            old, new = pair[0] or {}, pair[1] or {}
            for key in [*new, *(k for k in old if k not in new)]:
                if old.get(key) != new.get(key):
                    out[f"{field}.{key}"] = [old.get(key), new.get(key)]
            continue
        out[field] = pair
    return out


def _change(row: Any) -> DeviceChange:
    changes = row.changes
    if isinstance(changes, str):  # SQLite keeps JSON as text
        changes = json.loads(changes)
    changes = expand_documents(changes)
    at = parse_timestamp(row.at)
    assert at is not None
    return DeviceChange(
        id=int(row.id),
        organization_id=row.organization_id,
        integration_id=row.integration_id,
        device_id=row.device_id,
        at=at,
        kind=row.kind,
        changes=changes,
        reason=row.reason,
        source=row.source,
        run_id=row.run_id,
        request_id=row.request_id,
    )


@dataclass(frozen=True, slots=True)
class DeviceLetters:
    """A device's dead letters as its page shows them."""

    #: pending or retrying (what health and `dead-letters list` call open)
    open: int
    #: set aside by an operator or by running out of attempts
    quarantined: int
    last_error: str | None
    last_failed_at: datetime | None
    #: the newest letter's status: `resolved` says the last error is over (the device list
    #: shows open letters' errors only)
    last_error_status: str | None = None


def device_letters(
    conn: Connection, organization_id: str, integration_id: str, device_id: str
) -> DeviceLetters:
    """How many of the device's dead letters are open (pending, retrying) and quarantined, and
    the newest letter's error, whatever its status."""
    row = conn.execute(
        sa.text(
            "SELECT count(*) FILTER (WHERE status IN ('pending', 'retrying')) AS open, "
            "count(*) FILTER (WHERE status = 'quarantined') AS quarantined FROM dead_letters "
            "WHERE organization_id = :o AND integration_id = :i AND external_id = :d"
        ),
        {"o": organization_id, "i": integration_id, "d": device_id},
    ).one()
    newest = conn.execute(
        sa.text(
            "SELECT error_type, error_message, last_failed_at, status FROM dead_letters "
            "WHERE organization_id = :o AND integration_id = :i AND external_id = :d "
            "ORDER BY last_failed_at DESC LIMIT 1"
        ),
        {"o": organization_id, "i": integration_id, "d": device_id},
    ).first()
    error = None
    if newest is not None:
        error = newest.error_type + (f": {newest.error_message}" if newest.error_message else "")
    return DeviceLetters(
        open=int(row.open or 0),
        quarantined=int(row.quarantined or 0),
        last_error=error,
        last_failed_at=parse_timestamp(newest.last_failed_at) if newest is not None else None,
        last_error_status=newest.status if newest is not None else None,
    )
