"""The webhook inbox (sql/005_webhook_events.sql): events stored once, claimed, processed.

The receiver inserts with ON CONFLICT DO NOTHING on (integration_id, event_id), so a sender's
retry is answered as a duplicate and never becomes a second row. A processing run *claims* a
batch (status `processing`, with a lease: a run killed mid-batch leaves rows another run may
reclaim once `claimed_at` is older than the lease), then marks each event processed — in the
transaction that applies it, conditional on still holding the claim — or failed. Every query
is scoped by organization, except the inbox sensor's two scans (`pending_events_after`,
`overdue_events`), which span tenants like integrations.py's system reads.

`touch_device` lives here because only webhook processing writes devices field by field (the
syncs upsert whole rows through store/devices.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.figures import percentile
from sync_pipelines.json_limits import JsonLimitError, load_within_limits
from sync_pipelines.observability.activity import ActivityRow
from sync_pipelines.store.activity import ACTIVITY_COLUMNS, activity_values
from sync_pipelines.store.database import dump_json, load_json, parse_timestamp
from sync_pipelines.store.status_counts import (
    count_by_status,
    counts_by_provider,
    queue_counts_across_tenants,
    scope_of,
)

PENDING = "pending"
PROCESSING = "processing"
PROCESSED = "processed"
FAILED = "failed"
STATUSES = (PENDING, PROCESSING, PROCESSED, FAILED)

_COLUMNS = (
    "id",
    "organization_id",
    "integration_id",
    "provider",
    "event_id",
    "event_type",
    "external_id",
    "payload",
    "headers",
    "delivery_id",
    "status",
    "received_at",
    "claimed_at",
    "processed_at",
    "attempts",
    "run_id",
    "error_type",
    "error_message",
)
_SELECT = ", ".join(_COLUMNS)
#: what reads rows back: the payload as text on both engines (psycopg would decode JSONB itself,
#: where a document too deep to decode fails the whole batch), decoded per row by `_to_event`
_READ = ", ".join("CAST(payload AS TEXT) AS payload" if c == "payload" else c for c in _COLUMNS)


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    id: str
    organization_id: str
    integration_id: str
    provider: str
    event_id: str
    event_type: str
    external_id: str | None
    payload: Any
    headers: dict[str, str]
    delivery_id: str
    status: str = PENDING
    received_at: datetime | None = None
    claimed_at: datetime | None = None
    processed_at: datetime | None = None
    attempts: int = 0
    run_id: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    #: why the stored payload could not be read back (json_limits), `payload` None then: the
    #: processor fails this event alone
    unreadable: str | None = None


@dataclass(frozen=True, slots=True)
class InboxPosition:
    """Where an event sits in the inbox's order (received_at, id): the sensor's cursor unit."""

    id: str
    organization_id: str
    integration_id: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class ProcessingDelay:
    """processed_at − received_at over recently processed events, in seconds."""

    count: int
    p50_s: float | None
    p95_s: float | None
    max_s: float | None


# -- the receiver ---------------------------------------------------------------------------------


def insert_event(conn: Connection, event: WebhookEvent) -> bool:
    """Store a received event unless its (integration, event id) is already there; True if new."""
    params = {c: getattr(event, c) for c in _COLUMNS}
    params["payload"] = dump_json(event.payload)
    params["headers"] = dump_json(event.headers)
    values = ", ".join(f":{c}" for c in _COLUMNS)
    result = conn.execute(
        sa.text(
            f"INSERT INTO webhook_events ({_SELECT}) VALUES ({values}) "
            "ON CONFLICT (integration_id, event_id) DO NOTHING"
        ),
        params,
    )
    return result.rowcount == 1


#: rows per INSERT statement of a group commit on SQLite: 25 parameters a row stays far below
#: its 32,766 bound parameters
_ROWS_PER_STATEMENT = 500


def insert_events(conn: Connection, events: Sequence[WebhookEvent]) -> set[str]:
    """Store many received events at once (a group commit: one statement, one round trip), each
    unless its (integration, event id) is already there; returns the row ids of the new ones.
    Rows are written in key order, so two batches that share keys take their locks in the same
    order (no deadlock)."""
    ordered = sorted(events, key=lambda e: (e.integration_id, e.event_id))
    if conn.dialect.name == "postgresql":
        rows = [{c: getattr(e, c) for c in _COLUMNS} for e in ordered]
        return {r[0] for r in conn.exec_driver_sql(_PG_INSERT_EVENTS, (dump_json(rows),))}
    inserted: set[str] = set()
    for chunk in _chunks(ordered):
        params = [v for e in chunk for v in _event_params(e)]
        sql = (
            f"INSERT INTO webhook_events ({_SELECT}) VALUES {_placeholders(len(_COLUMNS), len(chunk))} "
            "ON CONFLICT (integration_id, event_id) DO NOTHING RETURNING id"
        )
        inserted.update(r[0] for r in conn.exec_driver_sql(sql, tuple(params)))
    return inserted


def insert_delivery_activities(conn: Connection, rows: Sequence[ActivityRow]) -> None:
    """Many deliveries' `webhook_received` activity rows (shaped, redacted) in one statement:
    the group commit's counterpart of `insert_delivery_activity`."""
    if conn.dialect.name == "postgresql":
        values = [{c: getattr(r, c, None) for c in ACTIVITY_COLUMNS} for r in rows]
        conn.exec_driver_sql(_PG_INSERT_ACTIVITY, (dump_json(values),))
        return
    for chunk in _chunks(rows):
        encoded = [activity_values(r) for r in chunk]
        conn.exec_driver_sql(
            f"INSERT INTO integration_activity_log ({', '.join(ACTIVITY_COLUMNS)}) "
            f"VALUES {_placeholders(len(ACTIVITY_COLUMNS), len(chunk))}",
            tuple(v.get(c) for v in encoded for c in ACTIVITY_COLUMNS),
        )


# Postgres: all rows as one JSON array, typed by the table's own row type. The statement text
# never changes, so psycopg prepares it once per connection; a multi-row VALUES list would be a
# new statement per batch size, and parsing its placeholders costs more than the rows.
_PG_INSERT_EVENTS = (
    f"INSERT INTO webhook_events ({_SELECT}) SELECT {_SELECT} "
    "FROM json_populate_recordset(NULL::webhook_events, %s) "
    "ON CONFLICT (integration_id, event_id) DO NOTHING RETURNING id"
)
_PG_INSERT_ACTIVITY = (
    f"INSERT INTO integration_activity_log ({', '.join(ACTIVITY_COLUMNS)}) "
    f"SELECT {', '.join(ACTIVITY_COLUMNS)} "
    "FROM json_populate_recordset(NULL::integration_activity_log, %s)"
)
_PAYLOAD_AT, _HEADERS_AT = _COLUMNS.index("payload"), _COLUMNS.index("headers")


def _event_params(event: WebhookEvent) -> list[Any]:
    values = [getattr(event, c) for c in _COLUMNS]
    values[_PAYLOAD_AT] = dump_json(event.payload)
    values[_HEADERS_AT] = dump_json(event.headers)
    return values


def _chunks(rows: Sequence[Any]) -> list[Sequence[Any]]:
    return [rows[i : i + _ROWS_PER_STATEMENT] for i in range(0, len(rows), _ROWS_PER_STATEMENT)]


def _placeholders(columns: int, rows: int) -> str:
    """`(?, ?), (?, ?)`: SQLite's own parameter style (its C parser reads it for nothing)."""
    one = "(" + ", ".join(["?"] * columns) + ")"
    return ", ".join([one] * rows)


_ACTIVITY_INSERT = sa.text(
    f"INSERT INTO integration_activity_log ({', '.join(ACTIVITY_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in ACTIVITY_COLUMNS)})"
)


def insert_delivery_activity(conn: Connection, row: Mapping[str, Any]) -> None:
    """A delivery's `webhook_received` activity row (already shaped and redacted), written in the
    delivery's transaction: one INSERT, where the batch path's COPY would cost extra round trips."""
    conn.execute(_ACTIVITY_INSERT, dict(row))


# -- processing -----------------------------------------------------------------------------------


def claim_events(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    *,
    limit: int,
    run_id: str | None,
    now: datetime,
    lease_s: float,
) -> list[WebhookEvent]:
    """Claim the oldest `limit` pending events (and expired claims) of an integration for a run."""
    lock = " FOR UPDATE SKIP LOCKED" if conn.dialect.name == "postgresql" else ""
    rows = conn.execute(
        sa.text(
            "UPDATE webhook_events SET status = 'processing', claimed_at = :now, run_id = :run, "
            "attempts = attempts + 1 WHERE id IN (SELECT id FROM webhook_events "
            "WHERE organization_id = :o AND integration_id = :i AND (status = 'pending' "
            "OR (status = 'processing' AND claimed_at < :expired)) "
            f"ORDER BY received_at, id LIMIT :n{lock}) RETURNING {_READ}"
        ),
        {
            "now": now,
            "run": run_id,
            "o": organization_id,
            "i": integration_id,
            "expired": now - timedelta(seconds=lease_s),
            "n": limit,
        },
    ).mappings()
    events = [_to_event(r) for r in rows]
    return sorted(events, key=lambda e: (e.received_at, e.id))  # RETURNING has no order


def mark_processed(
    conn: Connection, organization_id: str, row_id: str, *, run_id: str | None, now: datetime
) -> bool:
    """Mark a claimed event processed; False if the claim was lost (another run holds it)."""
    return (
        conn.execute(
            sa.text(
                "UPDATE webhook_events SET status = 'processed', processed_at = :t, error_type = NULL, "
                "error_message = NULL WHERE organization_id = :o AND id = :id AND status = 'processing' "
                "AND run_id IS NOT DISTINCT FROM :run"
            ),
            {"t": now, "o": organization_id, "id": row_id, "run": run_id},
        ).rowcount
        == 1
    )


def mark_failed(
    conn: Connection,
    organization_id: str,
    row_id: str,
    *,
    run_id: str | None,
    error_type: str,
    error_message: str,
    now: datetime,
) -> bool:
    return (
        conn.execute(
            sa.text(
                "UPDATE webhook_events SET status = 'failed', processed_at = NULL, error_type = :et, "
                "error_message = :em WHERE organization_id = :o AND id = :id AND status = 'processing' "
                "AND run_id IS NOT DISTINCT FROM :run"
            ),
            {
                "et": error_type,
                "em": error_message,
                "o": organization_id,
                "id": row_id,
                "run": run_id,
            },
        ).rowcount
        == 1
    )


def requeue_events(conn: Connection, organization_id: str, row_ids: Sequence[str]) -> int:
    """Put failed events back to pending (a dead-letter replay); processed ones stay processed."""
    if not row_ids:
        return 0
    return conn.execute(
        sa.text(
            "UPDATE webhook_events SET status = 'pending', claimed_at = NULL, run_id = NULL "
            "WHERE organization_id = :o AND status = 'failed' AND id IN :ids"
        ).bindparams(sa.bindparam("ids", expanding=True)),
        {"o": organization_id, "ids": list(row_ids)},
    ).rowcount


def touch_device(
    conn: Connection,
    *,
    organization_id: str,
    integration_id: str,
    external_id: str,
    run_id: str | None,
    request_id: str,
    now: datetime,
    status: str | None = None,
    seen_at: datetime | None = None,
) -> str:
    """Apply an event's news to a device row, with the event as provenance; 'created' or 'updated'.

    A device the inventory has not stored yet gets a placeholder row (name = id, empty content
    hash, so the next inventory sync rewrites it whole). `last_seen_at` only moves forward. The
    content hash is left alone: an inventory that still reports the old state does not undo the
    event, one that reports a change rewrites the row."""
    key = {"o": organization_id, "i": integration_id, "e": external_id}
    created = (
        conn.execute(
            sa.text(
                "INSERT INTO devices (organization_id, integration_id, external_id, name, hardware_ids, "
                "tags, attributes, content_hash, last_run_id, last_request_id, created_at, updated_at) "
                "VALUES (:o, :i, :e, :e, '[]', '[]', '{}', '', :r, :q, :t, :t) "
                "ON CONFLICT (integration_id, external_id) DO NOTHING"
            ),
            {**key, "r": run_id, "q": request_id, "t": now},
        ).rowcount
        == 1
    )
    sets = ["last_run_id = :r", "last_request_id = :q", "updated_at = :t"]
    params: dict[str, Any] = {**key, "r": run_id, "q": request_id, "t": now}
    if status is not None:
        # a soft-deleted device keeps status 'deleted' until an inventory or event restores it
        sets.append("status = CASE WHEN deleted_at IS NULL THEN :s ELSE status END")
        params["s"] = status
    if seen_at is not None:
        sets.append(
            "last_seen_at = CASE WHEN last_seen_at IS NULL OR last_seen_at < :seen "
            "THEN :seen ELSE last_seen_at END"
        )
        params["seen"] = seen_at
    conn.execute(
        sa.text(
            f"UPDATE devices SET {', '.join(sets)} WHERE organization_id = :o "
            "AND integration_id = :i AND external_id = :e"
        ),
        params,
    )
    return "created" if created else "updated"


# -- the inbox sensor (system-level: spans tenants) -------------------------------------------------

# events of deleted or disabled integrations wait: no run could process them
_POSITIONS = (
    "SELECT e.id, e.organization_id, e.integration_id, e.received_at FROM webhook_events e "
    "JOIN integrations i ON i.integration_id = e.integration_id "
    "AND i.organization_id = e.organization_id AND i.enabled = :true"
)


def pending_events_after(
    conn: Connection, after: tuple[datetime, str] | None, *, limit: int
) -> list[InboxPosition]:
    """Pending events of enabled integrations past the sensor's cursor (received_at, id), in
    inbox order."""
    if conn.dialect.name == "postgresql":  # across tenants: the named function (sql/026)
        at, after_id = after if after is not None else (None, None)
        found = conn.execute(
            sa.text(
                "SELECT * FROM sync_pending_webhook_events(CAST(:t AS timestamptz), "
                "CAST(:id AS text), :n)"
            ),
            {"t": at, "id": after_id, "n": limit},
        )
        return [_to_position(r) for r in found.mappings()]
    sql = f"{_POSITIONS} WHERE e.status = 'pending'"
    params: dict[str, Any] = {"n": limit, "true": True}
    if after is not None:
        sql += " AND (e.received_at > :t OR (e.received_at = :t AND e.id > :id))"
        params.update(t=after[0], id=after[1])
    rows = conn.execute(sa.text(sql + " ORDER BY e.received_at, e.id LIMIT :n"), params).mappings()
    return [_to_position(r) for r in rows]


def overdue_events(
    conn: Connection, *, received_before: datetime, claimed_before: datetime, limit: int
) -> list[InboxPosition]:
    """Events that should have been processed by now: pending since before `received_before`
    (their run never ran, or they committed behind the cursor), or claimed by a run whose lease
    ran out."""
    if conn.dialect.name == "postgresql":  # across tenants: the named function (sql/026)
        found = conn.execute(
            sa.text("SELECT * FROM sync_overdue_webhook_events(:r, :c, :n)"),
            {"r": received_before, "c": claimed_before, "n": limit},
        )
        return [_to_position(r) for r in found.mappings()]
    rows = conn.execute(
        sa.text(
            f"{_POSITIONS} WHERE ((e.status = 'pending' AND e.received_at < :r) "
            "OR (e.status = 'processing' AND e.claimed_at < :c)) ORDER BY e.received_at, e.id LIMIT :n"
        ),
        {"r": received_before, "c": claimed_before, "n": limit, "true": True},
    ).mappings()
    return [_to_position(r) for r in rows]


# -- reads: operators, figures, tests ---------------------------------------------------------------


def list_events(
    conn: Connection, organization_id: str, integration_id: str, status: str | None = None
) -> list[WebhookEvent]:
    sql = f"SELECT {_READ} FROM webhook_events WHERE organization_id = :o AND integration_id = :i"
    params: dict[str, Any] = {"o": organization_id, "i": integration_id}
    if status:
        sql += " AND status = :s"
        params["s"] = status
    return [
        _to_event(r)
        for r in conn.execute(sa.text(sql + " ORDER BY received_at, id"), params).mappings()
    ]


def event_counts(
    conn: Connection, organization_id: str, integration_id: str | None = None
) -> dict[str, int]:
    """Events per status (the backlog is pending + processing)."""
    return count_by_status(conn, "webhook_events", STATUSES, organization_id, integration_id)


def waiting_events(
    conn: Connection, organization_id: str, integration_id: str | None = None
) -> tuple[int, datetime | None]:
    """Events not processed yet (pending, processing): how many, and when the oldest arrived."""
    where, params = scope_of(organization_id, integration_id)
    row = conn.execute(
        sa.text(
            "SELECT count(*) AS n, min(received_at) AS oldest FROM webhook_events "
            f"WHERE {where} AND status IN ('pending', 'processing')"
        ),
        params,
    ).one()
    return int(row.n), parse_timestamp(row.oldest)


def oldest_pending_age_s(
    conn: Connection, organization_id: str, integration_id: str | None, *, now: datetime
) -> float | None:
    """How long the oldest unprocessed event has waited (None: nothing waiting)."""
    _, oldest = waiting_events(conn, organization_id, integration_id)
    return None if oldest is None else max(0.0, (now - oldest).total_seconds())


def waiting_by_provider(
    conn: Connection, statuses: Sequence[str], organization_id: str | None = None
) -> list[tuple[str, int, datetime | None]]:
    """(provider, events, oldest received_at) of the events in `statuses`, per provider; all
    tenants' without an organization (`counts_by_provider`)."""
    if organization_id is None and conn.dialect.name == "postgresql":
        per_provider: dict[str, tuple[int, datetime | None]] = {}
        for provider, _status, n, oldest in queue_counts_across_tenants(
            conn, "webhook_events", statuses
        ):
            total, first = per_provider.get(provider, (0, None))
            per_provider[provider] = (total + n, min(filter(None, (first, oldest)), default=None))
        return [(p, n, oldest) for p, (n, oldest) in sorted(per_provider.items())]
    rows = counts_by_provider(
        conn,
        "webhook_events",
        "provider, count(*) AS n, min(received_at) AS oldest",
        "provider",
        statuses,
        organization_id,
    )
    return [(provider, int(n), parse_timestamp(oldest)) for provider, n, oldest in rows]


def processing_delay(
    conn: Connection,
    organization_id: str,
    integration_id: str | None = None,
    *,
    since: datetime | None = None,
    limit: int = 10_000,
) -> ProcessingDelay:
    """Receipt-to-processed delay of the most recently processed events."""
    sql = (
        "SELECT received_at, processed_at FROM webhook_events WHERE organization_id = :o "
        "AND status = 'processed'"
    )
    params: dict[str, Any] = {"o": organization_id, "n": limit}
    if integration_id:
        sql += " AND integration_id = :i"
        params["i"] = integration_id
    if since:
        sql += " AND processed_at >= :since"
        params["since"] = since
    rows = conn.execute(sa.text(sql + " ORDER BY processed_at DESC LIMIT :n"), params).all()
    delays = [(parse_timestamp(done) - parse_timestamp(got)).total_seconds() for got, done in rows]
    if not delays:
        return ProcessingDelay(0, None, None, None)
    return ProcessingDelay(len(delays), percentile(delays, 50), percentile(delays, 95), max(delays))


def _to_event(row: Mapping[str, Any]) -> WebhookEvent:
    values = dict(row)
    if values["payload"] is not None:
        try:
            values["payload"] = load_within_limits(values["payload"])
        except JsonLimitError as exc:
            values["payload"], values["unreadable"] = None, f"payload cannot be read: {exc}"
    values["headers"] = load_json(values["headers"]) or {}
    for column in ("received_at", "claimed_at", "processed_at"):
        values[column] = parse_timestamp(values[column])
    values["attempts"] = int(values["attempts"])
    return WebhookEvent(**values)


def _to_position(row: Mapping[str, Any]) -> InboxPosition:
    return InboxPosition(
        row["id"],
        row["organization_id"],
        row["integration_id"],
        parse_timestamp(row["received_at"]),
    )  # type: ignore[arg-type]
