"""Reads and writes of `alert_incidents` and `alert_notifications` (sql/008_alerts.sql).

The dedupe is the database's: one open incident per (organization_id, dedupe_key) by a partial
unique index, written with `INSERT … ON CONFLICT … WHERE status = 'open' DO UPDATE`, so two
evaluations racing on the same condition update one row. Who sends a notification is decided
by conditional UPDATEs (claim, resolve): of two racing evaluations, exactly one owns it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.store.database import dump_json, load_json, parse_timestamp, use_organization
from sync_pipelines.store.event_failures import SYSTEM_ORGANIZATION
from sync_pipelines.store.integrations import organization_ids

OPEN, RESOLVED = "open", "resolved"
SENT, FAILED = "sent", "failed"

_INCIDENT_COLUMNS = (
    "id, organization_id, integration_id, rule, dedupe_key, severity, status, summary, details, "
    "occurrences, first_seen_at, last_seen_at, last_notified_at, resolved_at, run_id, request_id, "
    "updated_at, notified_severity"
)


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    organization_id: str
    integration_id: str | None
    rule: str
    dedupe_key: str
    severity: str
    status: str
    summary: str
    details: dict[str, Any]
    #: evaluations that saw the condition while the incident was open
    occurrences: int
    first_seen_at: datetime
    last_seen_at: datetime
    last_notified_at: datetime | None
    resolved_at: datetime | None
    run_id: str | None
    request_id: str | None
    updated_at: datetime
    #: the severity of the last notification (None: never notified)
    notified_severity: str | None = None

    def as_json(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in values.items():
            if isinstance(value, datetime):
                values[name] = value.isoformat()
        return values


def upsert_open_incident(
    conn: Connection,
    *,
    organization_id: str,
    integration_id: str | None,
    rule: str,
    dedupe_key: str,
    severity: str,
    summary: str,
    details: dict[str, Any],
    now: datetime,
    run_id: str | None = None,
    request_id: str | None = None,
) -> tuple[Incident, bool]:
    """Open the incident of this condition, or count one more sighting of the open one.

    Returns the incident as it now is and whether this call opened it."""
    new_id = str(uuid.uuid4())
    row = (
        conn.execute(
            sa.text(
                f"INSERT INTO alert_incidents ({_INCIDENT_COLUMNS}) VALUES (:id, :o, :i, :rule, :key, "
                ":severity, 'open', :summary, :details, 1, :now, :now, NULL, NULL, :run_id, "
                ":request_id, :now, NULL) "
                "ON CONFLICT (organization_id, dedupe_key) WHERE status = 'open' DO UPDATE SET "
                "occurrences = alert_incidents.occurrences + 1, last_seen_at = excluded.last_seen_at, "
                "severity = excluded.severity, summary = excluded.summary, details = excluded.details, "
                "run_id = coalesce(excluded.run_id, alert_incidents.run_id), "
                "request_id = coalesce(excluded.request_id, alert_incidents.request_id), "
                f"updated_at = excluded.updated_at RETURNING {_INCIDENT_COLUMNS}"
            ),
            {
                "id": new_id,
                "o": organization_id,
                "i": integration_id,
                "rule": rule,
                "key": dedupe_key,
                "severity": severity,
                "summary": summary,
                "details": dump_json(details),
                "now": now,
                "run_id": run_id,
                "request_id": request_id,
            },
        )
        .mappings()
        .one()
    )
    incident = _to_incident(row)
    return incident, incident.id == new_id


def claim_notification(
    conn: Connection,
    incident: Incident,
    *,
    now: datetime,
    notified_before: datetime,
    escalation: bool = False,
) -> bool:
    """Take the right to notify about an open incident: first ever (never notified), the last
    notification was at or before `notified_before` (the cooldown has passed), or, with
    `escalation`, the incident is critical and was last announced at a lower severity. True for
    exactly one of several racing callers."""
    result = conn.execute(
        sa.text(
            "UPDATE alert_incidents SET last_notified_at = :now, notified_severity = :severity, "
            "updated_at = :now "
            "WHERE organization_id = :o AND id = :id AND status = 'open' "
            "AND (last_notified_at IS NULL OR last_notified_at <= :before OR (:escalation = 1 "
            "AND :severity = 'critical' AND coalesce(notified_severity, '') <> 'critical'))"
        ),
        {
            "now": now,
            "o": incident.organization_id,
            "id": incident.id,
            "before": notified_before,
            "severity": incident.severity,
            "escalation": int(escalation),
        },
    )
    return result.rowcount == 1


def release_notification(
    conn: Connection,
    incident: Incident,
    *,
    claimed_at: datetime,
    previous: datetime | None,
    previous_severity: str | None,
) -> None:
    """Undo a claim whose notification reached no channel, so the next evaluation tries again."""
    conn.execute(
        sa.text(
            "UPDATE alert_incidents SET last_notified_at = :previous, "
            "notified_severity = :previous_severity "
            "WHERE organization_id = :o AND id = :id AND last_notified_at = :claimed"
        ),
        {
            "previous": previous,
            "previous_severity": previous_severity,
            "o": incident.organization_id,
            "id": incident.id,
            "claimed": claimed_at,
        },
    )


def resolve_open_incident(
    conn: Connection, organization_id: str, dedupe_key: str, *, now: datetime, reason: str
) -> Incident | None:
    """Close the open incident of this condition; None when none is open (or another caller
    closed it first)."""
    row = (
        conn.execute(
            sa.text(
                "UPDATE alert_incidents SET status = 'resolved', resolved_at = :now, updated_at = :now "
                "WHERE organization_id = :o AND dedupe_key = :key AND status = 'open' "
                f"RETURNING {_INCIDENT_COLUMNS}"
            ),
            {"now": now, "o": organization_id, "key": dedupe_key},
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    incident = _to_incident(row)
    details = {**incident.details, "resolution": reason}
    conn.execute(
        sa.text("UPDATE alert_incidents SET details = :d WHERE organization_id = :o AND id = :id"),
        {"d": dump_json(details), "o": organization_id, "id": incident.id},
    )
    return replace(incident, details=details)


def list_incidents(
    conn: Connection,
    organization_id: str | None,
    *,
    open_only: bool = False,
    limit: int = 100,
) -> list[Incident]:
    """Newest first. `organization_id=None` is the operator's listing across tenants (`sync-
    pipelines alerts list` without --organization): every organization's newest, in turn, and
    the system's, merged."""
    if organization_id is None:
        found = [
            incident
            for org in sorted({*organization_ids(conn), SYSTEM_ORGANIZATION})
            for incident in _incidents(conn, org, open_only=open_only, limit=limit)
        ]
        found.sort(key=lambda i: i.id)
        found.sort(key=lambda i: i.first_seen_at, reverse=True)  # stable: newest, then by id
        return found[:limit]
    return _incidents(conn, organization_id, open_only=open_only, limit=limit)


def _incidents(
    conn: Connection, organization_id: str, *, open_only: bool, limit: int
) -> list[Incident]:
    use_organization(conn, organization_id)
    sql = f"SELECT {_INCIDENT_COLUMNS} FROM alert_incidents WHERE organization_id = :o"
    params: dict[str, Any] = {"n": limit, "o": organization_id}
    if open_only:
        sql += " AND status = 'open'"
    sql += " ORDER BY first_seen_at DESC, id LIMIT :n"
    return [_to_incident(r) for r in conn.execute(sa.text(sql), params).mappings()]


def open_incidents_for_rules(
    conn: Connection, organization_id: str, rules: Sequence[str]
) -> list[Incident]:
    """An organization's open incidents that `rules` own (the evaluation pass reads them for
    every organization in turn: it must find them wherever they are)."""
    if not rules:
        return []
    names = {f"r{k}": rule for k, rule in enumerate(rules)}
    sql = (
        f"SELECT {_INCIDENT_COLUMNS} FROM alert_incidents WHERE organization_id = :o "
        f"AND status = 'open' AND rule IN ({', '.join(':' + k for k in names)}) "
        "ORDER BY dedupe_key"
    )
    return [
        _to_incident(r)
        for r in conn.execute(sa.text(sql), {**names, "o": organization_id}).mappings()
    ]


def open_incident(conn: Connection, organization_id: str, dedupe_key: str) -> Incident | None:
    """The open incident of a condition, if there is one."""
    row = (
        conn.execute(
            sa.text(
                f"SELECT {_INCIDENT_COLUMNS} FROM alert_incidents WHERE organization_id = :o "
                "AND dedupe_key = :key AND status = 'open'"
            ),
            {"o": organization_id, "key": dedupe_key},
        )
        .mappings()
        .first()
    )
    return _to_incident(row) if row else None


def get_incident(conn: Connection, organization_id: str, incident_id: str) -> Incident | None:
    row = (
        conn.execute(
            sa.text(
                f"SELECT {_INCIDENT_COLUMNS} FROM alert_incidents "
                "WHERE organization_id = :o AND id = :id"
            ),
            {"o": organization_id, "id": incident_id},
        )
        .mappings()
        .first()
    )
    return _to_incident(row) if row else None


# -- the alert history ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """One notification attempt to one channel (its payload already redacted)."""

    organization_id: str
    incident_id: str | None
    channel: str
    kind: str
    status: str
    status_code: int | None
    error_message: str | None
    payload: dict[str, Any] | None
    created_at: datetime


def record_notification(conn: Connection, record: NotificationRecord) -> str:
    notification_id = str(uuid.uuid4())
    conn.execute(
        sa.text(
            "INSERT INTO alert_notifications (id, organization_id, incident_id, channel, kind, "
            "status, status_code, error_message, payload, created_at) VALUES (:id, :o, :incident, "
            ":channel, :kind, :status, :code, :error, :payload, :t)"
        ),
        {
            "id": notification_id,
            "o": record.organization_id,
            "incident": record.incident_id,
            "channel": record.channel,
            "kind": record.kind,
            "status": record.status,
            "code": record.status_code,
            "error": record.error_message,
            "payload": dump_json(record.payload),
            "t": record.created_at,
        },
    )
    return notification_id


def list_notifications(
    conn: Connection,
    organization_id: str,
    *,
    incident_id: str | None = None,
    kind: str | None = None,
    channel: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """The alert history of one organization, oldest first."""
    sql = "SELECT * FROM alert_notifications WHERE organization_id = :o"
    params: dict[str, Any] = {"o": organization_id, "n": limit}
    for column, value in (("incident_id", incident_id), ("kind", kind), ("channel", channel)):
        if value is not None:
            sql += f" AND {column} = :{column}"
            params[column] = value
    rows = [
        dict(r)
        for r in conn.execute(sa.text(sql + " ORDER BY created_at, id LIMIT :n"), params).mappings()
    ]
    for row in rows:
        row["payload"] = load_json(row["payload"])
        row["created_at"] = parse_timestamp(row["created_at"])
    return rows


def last_notification_at(
    conn: Connection, organization_id: str, kind: str, *, status: str | None = None
) -> datetime | None:
    sql = "SELECT max(created_at) FROM alert_notifications WHERE organization_id = :o AND kind = :k"
    params: dict[str, Any] = {"o": organization_id, "k": kind}
    if status is not None:
        sql += " AND status = :s"
        params["s"] = status
    return parse_timestamp(conn.execute(sa.text(sql), params).scalar())


@dataclass(frozen=True, slots=True)
class ChannelDeliveries:
    """How notifications of one kind have gone to one channel lately."""

    channel: str
    last_attempt_at: datetime | None
    last_status: str | None
    last_error: str | None
    last_success_at: datetime | None
    #: failed attempts since the last successful one
    consecutive_failures: int


def channel_deliveries(
    conn: Connection, organization_id: str, kind: str
) -> dict[str, ChannelDeliveries]:
    """Per channel: the last attempt, the last success and the failures since it."""
    params = {"o": organization_id, "k": kind}
    scope = "organization_id = :o AND kind = :k"
    successes = {
        channel: parse_timestamp(at)
        for channel, at in conn.execute(
            sa.text(
                f"SELECT channel, max(created_at) FROM alert_notifications WHERE {scope} "
                "AND status = 'sent' GROUP BY channel"
            ),
            params,
        )
    }
    result: dict[str, ChannelDeliveries] = {}
    channels = conn.execute(
        sa.text(f"SELECT DISTINCT channel FROM alert_notifications WHERE {scope}"), params
    ).scalars()
    for channel in sorted(channels):
        last = (
            conn.execute(
                sa.text(
                    f"SELECT created_at, status, error_message FROM alert_notifications WHERE {scope} "
                    "AND channel = :c ORDER BY created_at DESC, id DESC LIMIT 1"
                ),
                {**params, "c": channel},
            )
            .mappings()
            .one()
        )
        since = successes.get(channel)
        failures_sql = f"SELECT count(*) FROM alert_notifications WHERE {scope} AND channel = :c AND status = 'failed'"
        failure_params: dict[str, Any] = {**params, "c": channel}
        if since is not None:
            failures_sql += " AND created_at > :since"
            failure_params["since"] = since
        result[channel] = ChannelDeliveries(
            channel=channel,
            last_attempt_at=parse_timestamp(last["created_at"]),
            last_status=last["status"],
            last_error=last["error_message"],
            last_success_at=since,
            consecutive_failures=int(
                conn.execute(sa.text(failures_sql), failure_params).scalar() or 0
            ),
        )
    return result


def _to_incident(row: Any) -> Incident:
    return Incident(
        id=row["id"],
        organization_id=row["organization_id"],
        integration_id=row["integration_id"],
        rule=row["rule"],
        dedupe_key=row["dedupe_key"],
        severity=row["severity"],
        status=row["status"],
        summary=row["summary"],
        details=load_json(row["details"]) or {},
        occurrences=int(row["occurrences"]),
        first_seen_at=parse_timestamp(row["first_seen_at"]),
        last_seen_at=parse_timestamp(row["last_seen_at"]),
        last_notified_at=parse_timestamp(row["last_notified_at"]),
        resolved_at=parse_timestamp(row["resolved_at"]),
        run_id=row["run_id"],
        request_id=row["request_id"],
        updated_at=parse_timestamp(row["updated_at"]),
        notified_severity=row["notified_severity"],
    )


# -- the console's incident pages --------------------------------------------------------------

#: what the console shows of a notification: never its payload (the message sent)
_DELIVERY_COLUMNS = (
    "id, organization_id, incident_id, channel, kind, status, status_code, error_message, "
    "created_at"
)


def incidents_page(
    conn: Connection,
    organization_id: str | None,
    *,
    status: str | None = None,
    integration_id: str | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int,
) -> list[Incident]:
    """Up to `limit` incidents newest first by (first_seen_at, id), strictly after the incident
    `after` = (first_seen_at, id) in that order: a keyset page, never OFFSET. `organization_id=None`
    reads every organization (the console's unscoped operator, whose role reads all tenants)."""
    where: list[str] = []
    params: dict[str, Any] = {"n": limit}
    if organization_id is None and integration_id is not None:
        # an integration id names its organization for ever (integration_owners): that lets the
        # (organization, integration, first_seen_at) index serve the page
        organization_id = conn.execute(
            sa.text("SELECT organization_id FROM integration_owners WHERE integration_id = :i"),
            {"i": integration_id},
        ).scalar()
        if organization_id is None:
            return []
    for column, value in (
        ("organization_id", organization_id),
        ("integration_id", integration_id),
    ):
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    if status is not None:
        if status not in (OPEN, RESOLVED):
            raise ValueError(f"incident status must be {OPEN} or {RESOLVED}, got {status!r}")
        where.append(f"status = '{status}'")
    if after is not None:
        # the same index-friendly form as the activity log's pages (store/console_queries.py)
        where.append("first_seen_at <= :c_at AND (first_seen_at < :c_at OR id < :c_id)")
        params.update(c_at=after[0], c_id=after[1])
    sql = (
        f"SELECT {_INCIDENT_COLUMNS} FROM alert_incidents WHERE {' AND '.join(where) or '1 = 1'} "
        "ORDER BY first_seen_at DESC, id DESC LIMIT :n"
    )
    return [_to_incident(r) for r in conn.execute(sa.text(sql), params).mappings()]


def find_incident(
    conn: Connection, incident_id: str, organization_id: str | None
) -> Incident | None:
    """An incident by id, within `organization_id` when given (a scoped operator: another
    organization's incident is not found); None when there is none."""
    sql = f"SELECT {_INCIDENT_COLUMNS} FROM alert_incidents WHERE id = :id"
    params: dict[str, Any] = {"id": incident_id}
    if organization_id is not None:
        sql += " AND organization_id = :o"
        params["o"] = organization_id
    row = conn.execute(sa.text(sql), params).mappings().first()
    return _to_incident(row) if row else None


@dataclass(frozen=True, slots=True)
class IncidentDelivery:
    """One notification attempt about an incident, as the console shows it (no payload)."""

    id: str
    incident_id: str
    channel: str
    kind: str
    status: str
    status_code: int | None
    error_message: str | None
    created_at: datetime


def incident_deliveries(
    conn: Connection, incidents: Sequence[Incident]
) -> dict[str, list[IncidentDelivery]]:
    """The notifications of each incident, oldest first (one pass's, sent at one time, by
    channel name), keyed by incident id."""
    out: dict[str, list[IncidentDelivery]] = {i.id: [] for i in incidents}
    by_org: dict[str, list[str]] = {}
    for incident in incidents:
        by_org.setdefault(incident.organization_id, []).append(incident.id)
    statement = sa.text(
        f"SELECT {_DELIVERY_COLUMNS} FROM alert_notifications "
        "WHERE organization_id = :o AND incident_id IN :ids ORDER BY created_at, channel, id"
    ).bindparams(sa.bindparam("ids", expanding=True))
    for organization_id, ids in sorted(by_org.items()):
        for row in conn.execute(statement, {"o": organization_id, "ids": ids}).mappings():
            out[row["incident_id"]].append(
                IncidentDelivery(
                    id=row["id"],
                    incident_id=row["incident_id"],
                    channel=row["channel"],
                    kind=row["kind"],
                    status=row["status"],
                    status_code=row["status_code"],
                    error_message=row["error_message"],
                    created_at=parse_timestamp(row["created_at"]),
                )
            )
    return out
