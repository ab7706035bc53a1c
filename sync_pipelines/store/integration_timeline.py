"""One integration's timeline: its syncs, the alerts opened and resolved about it, the changes
to its configuration and the shape changes its syncs found, newest first by (at, kind, id), one
keyset page at a time. Each source is read with its own bounded query (LIMIT page + 1 after the
cursor) and the results merged: the order is total, so a row is on exactly one page.

Ties on `at` are broken by kind, then id, compared bytewise (`COLLATE "C"` on Postgres, where the
default collation orders text by language rules; SQLite already compares bytes), so SQL and the
Python merge agree on the order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.store.database import parse_timestamp

SYNC = "sync"
ALERT_OPENED = "alert_opened"
ALERT_RESOLVED = "alert_resolved"
CONFIG_CHANGE = "config_change"
#: a sync found the shape of the devices' attributes or state changed (sync/shape_drift.py)
SHAPE_CHANGED = "shape_changed"
KINDS = (ALERT_OPENED, ALERT_RESOLVED, CONFIG_CHANGE, SHAPE_CHANGED, SYNC)


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One thing that happened to the integration. `id` is the source row's id; `kind` says
    which source (a resolved incident is two entries: opened and resolved)."""

    at: datetime
    kind: str
    id: str
    status: str
    #: what the entry says, by kind: a sync's counts, an alert's rule and summary, a change's
    #: action and the names of what changed
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[datetime, str, str]:
        return (self.at, self.kind, self.id)


@dataclass(frozen=True, slots=True)
class _Source:
    kind: str
    table: str
    at: str
    columns: str
    where: str


_SOURCES = (
    _Source(
        SYNC,
        "integration_sync_log",
        "started_at",
        "id, status, stream, run_id, started_at, completed_at, duration_ms, fetched, created, "
        "updated, unchanged, deleted, failed, conflicts, gaps, error_type, error_message",
        "1 = 1",
    ),
    _Source(
        ALERT_OPENED,
        "alert_incidents",
        "first_seen_at",
        "id, rule, severity, status, summary, run_id, occurrences, first_seen_at, resolved_at",
        "1 = 1",
    ),
    _Source(
        ALERT_RESOLVED,
        "alert_incidents",
        "resolved_at",
        "id, rule, severity, status, summary, run_id, details, resolved_at",
        "resolved_at IS NOT NULL",
    ),
    _Source(
        CONFIG_CHANGE,
        "integration_activity_log",
        "created_at",
        "id, status, metadata, created_at",
        f"activity_type = '{CONFIG_CHANGE}'",
    ),
    _Source(
        SHAPE_CHANGED,
        "integration_activity_log",
        "created_at",
        "id, status, run_id, metadata, created_at",
        f"activity_type = '{SHAPE_CHANGED}'",
    ),
)


def timeline_page(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    *,
    since: datetime,
    after: tuple[datetime, str, str] | None,
    limit: int,
) -> list[TimelineEntry]:
    """Up to `limit` entries at or after `since`, newest first by (at, kind, id), strictly after
    `after` = (at, kind, id) in that order: a keyset page, never OFFSET."""
    found: list[TimelineEntry] = []
    for source in _SOURCES:
        found += _read(conn, source, organization_id, integration_id, since, after, limit)
    found.sort(key=lambda e: e.key, reverse=True)
    return found[:limit]


def _read(
    conn: Connection,
    source: _Source,
    organization_id: str,
    integration_id: str,
    since: datetime,
    after: tuple[datetime, str, str] | None,
    limit: int,
) -> list[TimelineEntry]:
    bytewise = ' COLLATE "C"' if conn.dialect.name == "postgresql" else ""
    at = source.at
    where = [
        "organization_id = :o",
        "integration_id = :i",
        f"{at} >= :since",
        source.where,
    ]
    params: dict[str, Any] = {"o": organization_id, "i": integration_id, "since": since, "n": limit}
    if after is not None:
        c_at, c_kind, c_id = after
        params.update(c_at=c_at, c_id=c_id)
        # the kind is fixed per source, so the tuple comparison reduces to one on (at, id)
        if source.kind < c_kind:
            where.append(f"{at} <= :c_at")
        elif source.kind > c_kind:
            where.append(f"{at} < :c_at")
        else:
            where.append(f"{at} <= :c_at AND ({at} < :c_at OR id{bytewise} < :c_id)")
    sql = (
        f"SELECT {source.columns} FROM {source.table} WHERE {' AND '.join(where)} "
        f"ORDER BY {at} DESC, id{bytewise} DESC LIMIT :n"
    )
    return [_entry(source, r) for r in conn.execute(sa.text(sql), params).mappings()]


def _entry(source: _Source, row: Any) -> TimelineEntry:
    at = parse_timestamp(row[source.at])
    assert at is not None  # the query reads rows whose `at` is set
    values = {k: v for k, v in row.items() if k not in ("id", "status", source.at)}
    if source.kind == SYNC:
        details = {**values, "completed_at": parse_timestamp(values["completed_at"])}
        return TimelineEntry(at, SYNC, row["id"], row["status"], details)
    if source.kind == CONFIG_CHANGE:
        metadata = _json(row["metadata"])
        return TimelineEntry(
            at,
            CONFIG_CHANGE,
            row["id"],
            row["status"],
            {
                "action": metadata.get("action"),
                "changed": list(metadata.get("changed") or []),
                "actor": metadata.get("actor"),
                # why, when given: an operator's reason, or a shape drift pause's and how to resume
                "reason": metadata.get("reason"),
            },
        )
    if source.kind == SHAPE_CHANGED:
        metadata = _json(row["metadata"])
        # the entry's status says what the policy did: ignored, alerted or paused
        policy = metadata.get("policy")
        status = {"ignore": "ignored", "alert": "alerted", "pause": "paused"}.get(policy, "changed")
        return TimelineEntry(
            at,
            SHAPE_CHANGED,
            row["id"],
            status,
            {
                "stream": metadata.get("stream"),
                "policy": policy,
                "complete": metadata.get("complete"),
                "added": metadata.get("added") or {},
                "removed": metadata.get("removed") or {},
                "changed": metadata.get("changed") or {},
                "summary": metadata.get("summary"),
                "run_id": row["run_id"],
                "sync_id": metadata.get("sync_id"),
            },
        )
    details = {k: v for k, v in values.items() if k not in ("details", "first_seen_at")}
    if source.kind == ALERT_RESOLVED:
        details["resolution"] = _json(row["details"]).get("resolution")
        return TimelineEntry(at, ALERT_RESOLVED, row["id"], "resolved", details)
    details["resolved_at"] = parse_timestamp(values.get("resolved_at"))
    return TimelineEntry(at, ALERT_OPENED, row["id"], row["status"], details)


def _json(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    return json.loads(value) if isinstance(value, str) else dict(value)
