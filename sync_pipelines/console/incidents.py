"""The console's alert incidents: open and resolved, newest first, one keyset page at a time,
each with the notifications sent about it (channel by channel, how each went). The queries are
store/alerts.py; what is shown is redacted again here (summaries and delivery errors are free
text), and a notification's payload is never read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.console.filters import MAX_TEXT, Cursor, FilterError, ScopeError
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
        """As ActivityFilter.scoped_to: a scoped operator's organization is imposed, and asking
        for another one is refused."""
        if organization_id is None:
            return self
        if self.organization not in (None, organization_id):
            raise ScopeError(
                f"this operator is scoped to organization {organization_id!r} and cannot read "
                f"organization {self.organization!r}"
            )
        return replace(self, organization=organization_id)

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
