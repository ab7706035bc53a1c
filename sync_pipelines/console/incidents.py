"""The console's alert incidents: open and resolved, newest first, one keyset page at a time,
each with the notifications sent about it (channel by channel, how each went). The queries are
store/alerts.py; what is shown is redacted again here (summaries and delivery errors are free
text), and a notification's payload is never read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.console.filters import MAX_TEXT, Cursor, FilterError, scoped_organization
from sync_pipelines.observability.redaction import redact_text
from sync_pipelines.store.alerts import (
    OPEN,
    RESOLVED,
    Incident,
    IncidentDelivery,
    find_incident,
    incident_deliveries,
    incidents_page,
)

INCIDENT_STATUSES = (OPEN, RESOLVED)
#: one row per incident in the CSV export; its notifications are counted, not listed
INCIDENT_CSV_COLUMNS = (
    "id",
    "organization_id",
    "integration_id",
    "rule",
    "severity",
    "status",
    "summary",
    "occurrences",
    "first_seen_at",
    "last_seen_at",
    "resolved_at",
    "resolution",
    "notifications_sent",
    "notifications_failed",
)


class IncidentNotFound(LookupError):
    """No incident of that id the operator may see (another organization's is not found)."""


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    organization: str | None = None
    integration: str | None = None
    status: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> IncidentFilter:
        values: dict[str, str | None] = {}
        for f in fields(cls):
            value = (params.get(f.name) or "").strip()
            if len(value) > MAX_TEXT:
                raise FilterError(f"{f.name} is longer than {MAX_TEXT} characters")
            values[f.name] = value or None
        if values["status"] is not None and values["status"] not in INCIDENT_STATUSES:
            raise FilterError(
                f"status must be one of {', '.join(INCIDENT_STATUSES)}; got {values['status']!r}"
            )
        return cls(**values)

    def scoped_to(self, organization_id: str | None) -> IncidentFilter:
        """The filter an operator may run (filters.scoped_organization)."""
        return replace(self, organization=scoped_organization(self.organization, organization_id))

    def to_params(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}


@dataclass(frozen=True, slots=True)
class IncidentView:
    incident: Incident
    deliveries: list[IncidentDelivery]

    def as_json(self) -> dict[str, Any]:
        incident = self.incident.as_json()
        return {
            **{k: incident[k] for k in _SHOWN},
            "resolution": self.resolution,
            "notifications": [
                {
                    "channel": d.channel,
                    "kind": d.kind,
                    "status": d.status,
                    "status_code": d.status_code,
                    "error_message": d.error_message,
                    "created_at": d.created_at.isoformat(),
                }
                for d in self.deliveries
            ],
        }

    @property
    def resolution(self) -> str | None:
        reason = self.incident.details.get("resolution")
        return redact_text(str(reason)) if reason else None


#: the incident's fields the console shows (details stay out: free-form figures of the rule)
_SHOWN = (
    "id",
    "organization_id",
    "integration_id",
    "rule",
    "severity",
    "status",
    "summary",
    "occurrences",
    "first_seen_at",
    "last_seen_at",
    "last_notified_at",
    "resolved_at",
    "run_id",
    "request_id",
)


@dataclass(frozen=True, slots=True)
class IncidentPage:
    incidents: list[IncidentView]
    #: where the next page starts; None on the last page
    next_cursor: Cursor | None


def incident_page(
    conn: Connection, flt: IncidentFilter, *, after: Cursor | None, limit: int
) -> IncidentPage:
    found = incidents_page(
        conn,
        flt.organization,
        status=flt.status,
        integration_id=flt.integration,
        after=None if after is None else (after.created_at, after.id),
        limit=limit + 1,
    )
    more = len(found) > limit
    found = found[:limit]
    cursor = Cursor(found[-1].first_seen_at, found[-1].id) if more else None
    return IncidentPage(_views(conn, found), cursor)


def iter_incidents(
    conn: Connection, flt: IncidentFilter, *, max_rows: int, page_size: int
) -> Iterator[IncidentView]:
    """Every matching incident up to `max_rows`, newest first, page by page (the export)."""
    after, sent = None, 0
    while sent < max_rows:
        page = incident_page(conn, flt, after=after, limit=min(page_size, max_rows - sent))
        yield from page.incidents
        sent += len(page.incidents)
        if page.next_cursor is None:
            return
        after = page.next_cursor


def csv_row(view: IncidentView) -> dict[str, Any]:
    row = view.as_json()
    statuses = [n["status"] for n in row.pop("notifications")]
    return {
        **row,
        "notifications_sent": statuses.count("sent"),
        "notifications_failed": statuses.count("failed"),
    }


def incident_detail(
    conn: Connection, incident_id: str, organization_id: str | None
) -> IncidentView:
    incident = find_incident(conn, incident_id, organization_id)
    if incident is None:
        raise IncidentNotFound(f"no incident {incident_id!r}")
    return _views(conn, [incident])[0]


def _views(conn: Connection, incidents: list[Incident]) -> list[IncidentView]:
    deliveries = incident_deliveries(conn, incidents)
    return [
        IncidentView(
            replace(i, summary=redact_text(i.summary)),
            [
                replace(d, error_message=redact_text(d.error_message) if d.error_message else None)
                for d in deliveries[i.id]
            ],
        )
        for i in incidents
    ]
