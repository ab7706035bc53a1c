"""The `integration_shapes` table (sql/028): each integration's last known shape per stream, the
newest shape change and whether an operator acknowledged it, and whether it paused the
integration. sync/shape_drift.py decides; this reads and writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.store.database import dump_json, load_json, parse_timestamp

_COLUMNS = (
    "organization_id, integration_id, stream, shape, paths, baseline_at, baseline_complete, "
    "updated_at, "
    "judged_sync_id, judged_at, change_activity_id, change_at, change_policy, change, "
    "acknowledged_at, acknowledged_by, paused_at"
)


@dataclass(frozen=True, slots=True)
class StoredShape:
    organization_id: str
    integration_id: str
    stream: str
    #: {path: [types]}
    shape: dict[str, list[str]]
    paths: int
    baseline_at: datetime
    #: the baseline came from every device (a complete observation)
    baseline_complete: bool
    updated_at: datetime
    judged_sync_id: str | None = None
    judged_at: datetime | None = None
    #: the newest change: its `shape_changed` activity row, when, the policy then, what changed
    change_activity_id: str | None = None
    change_at: datetime | None = None
    change_policy: str | None = None
    change: dict[str, Any] | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    paused_at: datetime | None = None

    @property
    def unacknowledged(self) -> bool:
        return self.change_at is not None and self.acknowledged_at is None

    def counts(self) -> dict[str, int]:
        """Paths added, removed and changed by the newest change."""
        change = self.change or {}
        return {k: len(change.get(k) or {}) for k in ("added", "removed", "changed")}

    def pause_reason(self) -> str:
        """Why the integration is disabled and how to resume it (a drift pause)."""
        c = self.counts()
        at = f" at {self.paused_at:%Y-%m-%d %H:%M:%S} UTC" if self.paused_at else ""
        return (
            f"paused for shape drift{at}: the shape of {self.stream} changed ({c['added']} "
            f"added, {c['removed']} removed, {c['changed']} changed); resume with "
            f"`sync-pipelines integrations enable --organization {self.organization_id} "
            f"--id {self.integration_id}`"
        )


def _to_shape(row: Any) -> StoredShape:
    values = dict(row)
    for k in (
        "baseline_at",
        "updated_at",
        "judged_at",
        "change_at",
        "acknowledged_at",
        "paused_at",
    ):
        values[k] = parse_timestamp(values[k])
    values["shape"] = load_json(values["shape"]) or {}
    values["change"] = load_json(values["change"])
    values["baseline_complete"] = bool(values["baseline_complete"])
    return StoredShape(**values)


def get_shape(
    conn: Connection, organization_id: str, integration_id: str, stream: str
) -> StoredShape | None:
    row = (
        conn.execute(
            sa.text(
                f"SELECT {_COLUMNS} FROM integration_shapes "
                "WHERE organization_id = :o AND integration_id = :i AND stream = :s"
            ),
            {"o": organization_id, "i": integration_id, "s": stream},
        )
        .mappings()
        .first()
    )
    return _to_shape(row) if row else None


def integration_shapes(
    conn: Connection, organization_id: str, integration_id: str
) -> list[StoredShape]:
    """Every stream's shape of the integration, by stream."""
    rows = conn.execute(
        sa.text(
            f"SELECT {_COLUMNS} FROM integration_shapes "
            "WHERE organization_id = :o AND integration_id = :i ORDER BY stream"
        ),
        {"o": organization_id, "i": integration_id},
    ).mappings()
    return [_to_shape(r) for r in rows]


def record_baseline(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    stream: str,
    shape: dict[str, list[str]],
    *,
    sync_id: str | None,
    now: datetime,
    complete: bool,
) -> None:
    """The first shape of the stream (no event); a concurrent first sync's row stays."""
    conn.execute(
        sa.text(
            "INSERT INTO integration_shapes (organization_id, integration_id, stream, shape, "
            "paths, baseline_at, baseline_complete, updated_at, judged_sync_id, judged_at) "
            "VALUES (:o, :i, :s, :shape, :paths, :now, :complete, :now, :sync_id, :now) "
            "ON CONFLICT (integration_id, stream) DO NOTHING"
        ),
        {
            "o": organization_id,
            "i": integration_id,
            "s": stream,
            "shape": dump_json(shape),
            "paths": len(shape),
            "now": now,
            "sync_id": sync_id,
            "complete": complete,
        },
    )


def record_judged(
    conn: Connection,
    stored: StoredShape,
    shape: dict[str, list[str]] | None,
    *,
    sync_id: str | None,
    now: datetime,
    complete_baseline: bool = False,
) -> None:
    """A sync compared its observations: the new baseline when it changed (`shape`), else only
    who judged it last; `complete_baseline` when a complete observation finished it."""
    sets = "judged_sync_id = :sync_id, judged_at = :now"
    if complete_baseline:
        sets += ", baseline_complete = :complete"
    params: dict[str, Any] = {
        "o": stored.organization_id,
        "i": stored.integration_id,
        "s": stored.stream,
        "sync_id": sync_id,
        "now": now,
        "complete": True,
    }
    if shape is not None:
        sets += ", shape = :shape, paths = :paths, updated_at = :now"
        params.update(shape=dump_json(shape), paths=len(shape))
    conn.execute(
        sa.text(
            f"UPDATE integration_shapes SET {sets} "
            "WHERE organization_id = :o AND integration_id = :i AND stream = :s"
        ),
        params,
    )


def record_change(
    conn: Connection,
    stored: StoredShape,
    *,
    activity_id: str,
    policy: str,
    change: dict[str, Any],
    now: datetime,
    paused: bool,
) -> None:
    """The newest change, unacknowledged (`ignore` needs no acknowledgement: it is recorded as
    acknowledged by the policy)."""
    conn.execute(
        sa.text(
            "UPDATE integration_shapes SET change_activity_id = :a, change_at = :now, "
            "change_policy = :policy, change = :change, acknowledged_at = :ack_at, "
            "acknowledged_by = :ack_by, paused_at = CASE WHEN :paused THEN :now ELSE paused_at END "
            "WHERE organization_id = :o AND integration_id = :i AND stream = :s"
        ),
        {
            "o": stored.organization_id,
            "i": stored.integration_id,
            "s": stored.stream,
            "a": activity_id,
            "now": now,
            "policy": policy,
            "change": dump_json(change),
            "ack_at": now if policy == "ignore" else None,
            "ack_by": "policy ignore" if policy == "ignore" else None,
            "paused": paused,
        },
    )


def acknowledge_changes(
    conn: Connection, organization_id: str, integration_id: str, *, by: str, now: datetime
) -> list[StoredShape]:
    """Accept every unacknowledged change of the integration (and clear a drift pause); returns
    the rows as they were (only those that had something to accept)."""
    before = [
        s
        for s in integration_shapes(conn, organization_id, integration_id)
        if s.unacknowledged or s.paused_at is not None
    ]
    if before:
        conn.execute(
            sa.text(
                "UPDATE integration_shapes SET acknowledged_at = coalesce(acknowledged_at, :now), "
                "acknowledged_by = coalesce(acknowledged_by, :by), paused_at = NULL "
                "WHERE organization_id = :o AND integration_id = :i"
            ),
            {"o": organization_id, "i": integration_id, "now": now, "by": by},
        )
    return before


def disable_integration(
    conn: Connection, organization_id: str, integration_id: str, *, now: datetime
) -> bool:
    """enabled = false (a drift pause); False when it was not enabled (nothing to pause)."""
    result = conn.execute(
        sa.text(
            "UPDATE integrations SET enabled = :off, updated_at = :now "
            "WHERE organization_id = :o AND integration_id = :i AND enabled = :on"
        ),
        {"o": organization_id, "i": integration_id, "now": now, "off": False, "on": True},
    )
    return bool(result.rowcount)


def drift_pause(conn: Connection, organization_id: str, integration_id: str) -> StoredShape | None:
    """The change that paused the integration, when a drift pause is in force."""
    paused = [s for s in integration_shapes(conn, organization_id, integration_id) if s.paused_at]
    return max(paused, key=lambda s: s.paused_at or s.updated_at) if paused else None
