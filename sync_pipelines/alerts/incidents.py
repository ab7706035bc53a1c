"""An incident's life and the notifications it owes: the first sighting of a condition opens
it ("firing"), later sightings only count (`occurrences`) until the cooldown has passed since the
last notification ("repeat", with the count), and when the condition clears it is resolved
("resolved", once, and only if someone was told it was firing). A condition that worsens to
critical after it was announced at a lower severity is announced at once ("escalated"), cooldown
or not; easing back to a warning is not announced (the next repeat carries it).

`sight` and `clear` work inside the caller's transaction (so a failed run can be recorded and
its incident raised atomically); the notification they return is sent after the commit with
`send_owed`. `raise_alert` / `clear_alert` do both. A firing or repeat notification that reached
no channel gives its claim back, so the next evaluation tries again instead of waiting out a
cooldown nobody was told about.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from sync_pipelines.alerts.channels import Delivery
from sync_pipelines.alerts.messages import ESCALATED, FIRING, REPEAT, RESOLVED, AlertMessage
from sync_pipelines.alerts.notify import send_message
from sync_pipelines.alerts.rules import CRITICAL, Condition
from sync_pipelines.alerts.settings import AlertSettings
from sync_pipelines.store.alerts import (
    Incident,
    claim_notification,
    release_notification,
    resolve_open_incident,
    upsert_open_incident,
)
from sync_pipelines.store.database import Store


@dataclass(frozen=True, slots=True)
class OwedNotification:
    incident: Incident
    kind: str
    #: the claim taken for a firing/repeat, and the value it replaced (to give it back)
    claimed_at: datetime | None = None
    previously_notified_at: datetime | None = None
    previously_notified_severity: str | None = None


@dataclass(frozen=True, slots=True)
class AlertOutcome:
    #: the incident sighted, or resolved (None: there was no open incident to resolve)
    incident: Incident | None
    #: the notification sent, if one was owed
    kind: str | None = None
    deliveries: list[Delivery] = field(default_factory=list)


def sight(
    conn: Connection, condition: Condition, *, now: datetime, settings: AlertSettings
) -> tuple[Incident, OwedNotification | None]:
    """Record that the condition holds; the notification it owes now, if any, is claimed."""
    incident, _opened = upsert_open_incident(
        conn,
        organization_id=condition.organization_id,
        integration_id=condition.integration_id,
        rule=condition.rule,
        dedupe_key=condition.dedupe_key,
        severity=condition.severity,
        summary=condition.summary,
        details=condition.details,
        now=now,
        run_id=condition.run_id,
        request_id=condition.request_id,
    )
    if not settings.channels:
        return incident, None
    cooled_down_at = now - timedelta(seconds=settings.cooldown_s)
    previous = incident.last_notified_at
    escalated = (
        previous is not None
        and incident.severity == CRITICAL
        and incident.notified_severity != CRITICAL
    )
    if previous is not None and previous > cooled_down_at and not escalated:
        return incident, None  # the common case within an outage: no further write
    if not claim_notification(
        conn, incident, now=now, notified_before=cooled_down_at, escalation=escalated
    ):
        return incident, None  # a concurrent evaluation took it
    return incident, OwedNotification(
        replace(incident, last_notified_at=now, notified_severity=incident.severity),
        FIRING if previous is None else ESCALATED if escalated else REPEAT,
        claimed_at=now,
        previously_notified_at=previous,
        previously_notified_severity=incident.notified_severity,
    )


def clear(
    conn: Connection,
    organization_id: str,
    key: str,
    *,
    now: datetime,
    reason: str,
    settings: AlertSettings,
) -> tuple[Incident | None, OwedNotification | None]:
    """Resolve the open incident of this condition, if there is one."""
    incident = resolve_open_incident(conn, organization_id, key, now=now, reason=reason)
    if incident is None or incident.last_notified_at is None or not settings.channels:
        return incident, None  # nobody was told it was firing: nothing to take back
    return incident, OwedNotification(incident, RESOLVED)


def send_owed(
    store: Store,
    owed: OwedNotification,
    settings: AlertSettings,
    *,
    now: datetime,
    failed_channels: set[str] | None = None,
) -> list[Delivery]:
    deliveries = send_message(
        store,
        AlertMessage(owed.kind, now, owed.incident),
        settings,
        now=now,
        failed_channels=failed_channels,
    )
    if owed.claimed_at is not None and not any(d.ok for d in deliveries):
        with store.scoped(owed.incident.organization_id).transaction() as conn:
            release_notification(
                conn,
                owed.incident,
                claimed_at=owed.claimed_at,
                previous=owed.previously_notified_at,
                previous_severity=owed.previously_notified_severity,
            )
    return deliveries


def raise_alert(
    store: Store,
    condition: Condition,
    settings: AlertSettings,
    *,
    now: datetime,
    failed_channels: set[str] | None = None,
) -> AlertOutcome:
    with store.scoped(condition.organization_id).transaction() as conn:
        incident, owed = sight(conn, condition, now=now, settings=settings)
    if owed is None:
        return AlertOutcome(incident)
    deliveries = send_owed(store, owed, settings, now=now, failed_channels=failed_channels)
    return AlertOutcome(incident, owed.kind, deliveries)


def clear_alert(
    store: Store,
    organization_id: str,
    key: str,
    settings: AlertSettings,
    *,
    now: datetime,
    reason: str,
    failed_channels: set[str] | None = None,
) -> AlertOutcome:
    with store.scoped(organization_id).transaction() as conn:
        incident, owed = clear(
            conn, organization_id, key, now=now, reason=reason, settings=settings
        )
    if owed is None:
        return AlertOutcome(incident)
    deliveries = send_owed(store, owed, settings, now=now, failed_channels=failed_channels)
    return AlertOutcome(incident, RESOLVED, deliveries)
