"""The activity log's monthly partitions on Postgres (sql/011_activity_partitions.postgres.sql):
list them, create them ahead, drop a month whole. On SQLite the log is one plain table and
every function here is a no-op.

Creating a partition is the SQL function `sync_ensure_activity_partitions` (defined by the
migration, so the migration and the daily job share one implementation, row-level security
and the move out of the default partition included).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

PARENT = "integration_activity_log"
DEFAULT_PARTITION = f"{PARENT}_default"
_BOUNDS = re.compile(r"FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True, slots=True)
class ActivityPartition:
    """One child table; `lower`/`upper` are None for the default partition."""

    name: str
    lower: datetime | None
    upper: datetime | None

    @property
    def is_default(self) -> bool:
        return self.lower is None and self.upper is None


def month_of(moment: datetime) -> date:
    """The first day of `moment`'s UTC month: partitions are UTC months."""
    utc = moment.astimezone(UTC)
    return date(utc.year, utc.month, 1)


def list_activity_partitions(conn: Connection, parent: str = PARENT) -> list[ActivityPartition]:
    """The log's partitions (or those of another table partitioned by month the same way, such
    as device_changes), oldest range first and the default partition last."""
    if conn.dialect.name != "postgresql":
        return []
    rows = conn.execute(
        sa.text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = CAST(:parent AS regclass)"
        ),
        {"parent": parent},
    ).all()
    partitions = [_partition(name, bound) for name, bound in rows]
    far_future = datetime.max.replace(tzinfo=UTC)
    return sorted(partitions, key=lambda p: (p.lower or far_future, p.name))


def ensure_activity_partitions(conn: Connection, *, now: datetime, months_ahead: int) -> list[str]:
    """Create the partitions of `now`'s month and `months_ahead` months after it; returns the
    names created (rows of those months waiting in the default partition move into them)."""
    if conn.dialect.name != "postgresql":
        return []
    if months_ahead < 0:
        raise ValueError(f"months_ahead must be 0 or more, got {months_ahead}")
    return list(
        conn.execute(
            sa.text("SELECT sync_ensure_activity_partitions(:month, :ahead)"),
            {"month": month_of(now), "ahead": months_ahead},
        ).scalars()
    )


def expired_partitions(
    partitions: list[ActivityPartition], cutoff: datetime
) -> list[ActivityPartition]:
    """Monthly partitions whose whole range lies before `cutoff` (never the default one)."""
    return [p for p in partitions if p.upper is not None and p.upper <= cutoff]


def drop_activity_partition(conn: Connection, partition: ActivityPartition) -> int:
    """Drop one monthly partition; returns how many rows went with it.

    DROP takes an ACCESS EXCLUSIVE lock on the parent as well, and writers queue behind it while
    it waits. So the month itself is locked first (only readers of that old month are waited
    for, with the parent free), and callers bound every wait with `lock_timeout`.
    """
    if conn.dialect.name != "postgresql":
        return 0
    if partition.is_default:
        raise ValueError(f"{partition.name} is the default partition: it is pruned, never dropped")
    # as the partitions' owner, through the named function (sql/026): the service role owns
    # nothing and cannot drop a table itself
    rows = conn.execute(
        sa.text("SELECT sync_drop_activity_partition(:name)"), {"name": partition.name}
    ).scalar_one()
    return int(rows)


def _partition(name: str, bound: str) -> ActivityPartition:
    if bound == "DEFAULT":
        return ActivityPartition(name, None, None)
    match = _BOUNDS.fullmatch(bound)
    if match is None:
        raise ValueError(f"activity partition {name} has a bound this code does not read: {bound}")
    lower, upper = (datetime.fromisoformat(v) for v in match.groups())
    return ActivityPartition(name, lower, upper)
