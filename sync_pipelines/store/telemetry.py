"""Telemetry rows, per-device sequence baselines and detected gaps (sql/002_telemetry.sql).

Messages are appended at most once: the primary key (integration, device, message_key) absorbs
redeliveries. On Postgres rows go through COPY into a staging table and then one
`INSERT … ON CONFLICT DO NOTHING`; on SQLite through `executemany` with the same clause.
Every query is scoped by organization.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.store.bulk import insert_rows


@dataclass(frozen=True, slots=True)
class TelemetryRow:
    """One stored message (`device_telemetry`); `request_id` is the batch, event or replay that
    stored it."""

    organization_id: str
    integration_id: str
    external_id: str
    message_key: str
    sequence: int | None
    topic: str | None
    payload: str  # JSON text
    device_time: datetime | None
    received_at: datetime | None
    run_id: str | None
    request_id: str | None


@dataclass(frozen=True, slots=True)
class SequenceGap:
    """A run of one device's telemetry sequence numbers that never arrived."""

    external_id: str
    first_missing: int
    last_missing: int

    @property
    def missing_count(self) -> int:
        return self.last_missing - self.first_missing + 1


TELEMETRY_COLUMNS = tuple(f.name for f in fields(TelemetryRow))
GAP_COLUMNS = (
    "id",
    "organization_id",
    "integration_id",
    "external_id",
    "first_missing",
    "last_missing",
    "missing_count",
    "detected_at",
    "run_id",
)
_KEY = "integration_id, external_id, message_key"


def insert_telemetry(conn: Connection, messages: Sequence[TelemetryRow]) -> int:
    """Append messages, skipping any already stored; returns how many were new."""
    if not messages:
        return 0
    rows = [_params(message, TELEMETRY_COLUMNS) for message in messages]
    cols = ", ".join(TELEMETRY_COLUMNS)
    if conn.dialect.name == "postgresql":
        staging = "device_telemetry_staging"
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE device_telemetry INCLUDING DEFAULTS) "
            "ON COMMIT DELETE ROWS"
        )
        conn.exec_driver_sql(f"TRUNCATE {staging}")
        insert_rows(conn, staging, TELEMETRY_COLUMNS, rows)  # COPY
        result = conn.exec_driver_sql(
            f"INSERT INTO device_telemetry ({cols}) SELECT {cols} FROM {staging} ON CONFLICT ({_KEY}) DO NOTHING"
        )
        return result.rowcount
    values = ", ".join(f":{c}" for c in TELEMETRY_COLUMNS)
    result = conn.execute(
        sa.text(
            f"INSERT INTO device_telemetry ({cols}) VALUES ({values}) ON CONFLICT ({_KEY}) DO NOTHING"
        ),
        rows,
    )
    return result.rowcount


def last_sequences(
    conn: Connection, organization_id: str, integration_id: str, external_ids: Sequence[str]
) -> dict[str, int]:
    """The stored sequence baseline of each of these devices that has one."""
    if not external_ids:
        return {}
    stmt = sa.text(
        "SELECT external_id, last_sequence FROM telemetry_sequences "
        "WHERE organization_id = :o AND integration_id = :i AND external_id IN :ids"
    ).bindparams(sa.bindparam("ids", expanding=True))
    rows = conn.execute(
        stmt, {"o": organization_id, "i": integration_id, "ids": list(external_ids)}
    )
    return {external_id: int(seq) for external_id, seq in rows}


def lowest_sequences(
    conn: Connection, organization_id: str, integration_id: str, external_ids: Sequence[str]
) -> dict[str, int]:
    """The lowest stored sequence of each of these devices that has one (read only for a device
    a late reading came from: it scans that device's rows)."""
    if not external_ids:
        return {}
    stmt = sa.text(
        "SELECT external_id, MIN(sequence) FROM device_telemetry WHERE organization_id = :o "
        "AND integration_id = :i AND external_id IN :ids AND sequence IS NOT NULL "
        "GROUP BY external_id"
    ).bindparams(sa.bindparam("ids", expanding=True))
    rows = conn.execute(
        stmt, {"o": organization_id, "i": integration_id, "ids": list(external_ids)}
    )
    return {external_id: int(seq) for external_id, seq in rows if seq is not None}


def fill_gaps(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    arrived: Mapping[str, Sequence[int]],
) -> int:
    """Late readings arrived: each recorded gap holding some of their sequences shrinks or splits
    (its pieces keep when and by which run it was detected; a filled gap is gone). Returns how
    many missing sequences arrived."""
    filled = 0
    for external_id, seqs in arrived.items():
        late = sorted(set(seqs))
        if not late:
            continue
        key = {"o": organization_id, "i": integration_id, "e": external_id}
        gaps = conn.execute(
            sa.text(
                "SELECT * FROM telemetry_gaps WHERE organization_id = :o AND integration_id = :i "
                "AND external_id = :e AND first_missing <= :hi AND last_missing >= :lo"
            ),
            {**key, "lo": late[0], "hi": late[-1]},
        ).mappings()
        for gap in list(gaps):
            first, last = int(gap["first_missing"]), int(gap["last_missing"])
            inside = [s for s in late if first <= s <= last]
            if not inside:
                continue
            filled += len(inside)
            conn.execute(sa.text("DELETE FROM telemetry_gaps WHERE id = :id"), {"id": gap["id"]})
            bounds = [first - 1, *inside, last + 1]
            pieces = [
                {
                    **{c: gap[c] for c in GAP_COLUMNS},
                    "id": str(uuid.uuid4()),
                    "first_missing": low + 1,
                    "last_missing": high - 1,
                    "missing_count": high - low - 1,
                }
                for low, high in zip(bounds, bounds[1:], strict=False)
                if high - low > 1
            ]
            insert_rows(conn, "telemetry_gaps", GAP_COLUMNS, pieces)
    return filled


def advance_sequences(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    baselines: Mapping[str, int],
    *,
    run_id: str | None,
    now: datetime,
) -> None:
    """Raise each device's baseline to the given sequence (never lowers it)."""
    if not baselines:
        return
    conn.execute(
        sa.text(
            "INSERT INTO telemetry_sequences "
            "(organization_id, integration_id, external_id, last_sequence, last_run_id, updated_at) "
            "VALUES (:o, :i, :e, :s, :r, :t) ON CONFLICT (integration_id, external_id) DO UPDATE SET "
            "last_sequence = excluded.last_sequence, last_run_id = excluded.last_run_id, "
            "updated_at = excluded.updated_at "
            "WHERE telemetry_sequences.organization_id = excluded.organization_id "
            "AND excluded.last_sequence > telemetry_sequences.last_sequence"
        ),
        [
            {
                "o": organization_id,
                "i": integration_id,
                "e": external_id,
                "s": seq,
                "r": run_id,
                "t": now,
            }
            for external_id, seq in baselines.items()
        ],
    )


def insert_gaps(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    gaps: Sequence[SequenceGap],
    *,
    run_id: str | None,
    now: datetime,
) -> None:
    """Record the gaps one batch revealed (`telemetry_gaps`, one row each)."""
    detected = {
        "organization_id": organization_id,
        "integration_id": integration_id,
        "detected_at": now,
        "run_id": run_id,
    }
    rows = [{**_params(gap, _GAP_FIELDS), **detected, "id": str(uuid.uuid4())} for gap in gaps]
    insert_rows(conn, "telemetry_gaps", GAP_COLUMNS, rows)


_GAP_FIELDS = ("external_id", "first_missing", "last_missing", "missing_count")


def _params(record: Any, columns: Sequence[str]) -> dict[str, Any]:
    """A record as the statement parameters (or COPY row) the drivers take."""
    return {c: getattr(record, c) for c in columns}


def telemetry_rows(
    conn: Connection, organization_id: str, integration_id: str
) -> list[dict[str, Any]]:
    """Every stored message of an integration, by device and sequence (operators, tests)."""
    rows = conn.execute(
        sa.text(
            "SELECT * FROM device_telemetry WHERE organization_id = :o AND integration_id = :i "
            "ORDER BY external_id, sequence, received_at"
        ),
        {"o": organization_id, "i": integration_id},
    ).mappings()
    return [dict(r) for r in rows]


def count_telemetry(conn: Connection, organization_id: str, integration_id: str) -> int:
    return int(
        conn.execute(
            sa.text(
                "SELECT count(*) FROM device_telemetry WHERE organization_id = :o AND integration_id = :i"
            ),
            {"o": organization_id, "i": integration_id},
        ).scalar_one()
    )


def gap_rows(conn: Connection, organization_id: str, integration_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.text(
            "SELECT * FROM telemetry_gaps WHERE organization_id = :o AND integration_id = :i "
            "ORDER BY external_id, first_missing"
        ),
        {"o": organization_id, "i": integration_id},
    ).mappings()
    return [dict(r) for r in rows]
