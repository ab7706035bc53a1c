"""Send one alert message to every configured channel and write each attempt into the alert
history (`alert_notifications`). Nothing here raises on a channel's failure: it is recorded and
logged (as an error for heartbeats, whose whole point is to show a broken path)."""

from __future__ import annotations

from datetime import datetime

from sync_pipelines.alerts.channels import FAILED, Delivery, deliver
from sync_pipelines.alerts.messages import HEARTBEAT, AlertMessage, payload_for
from sync_pipelines.alerts.settings import AlertSettings
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.observability.redaction import redact
from sync_pipelines.store.alerts import NotificationRecord, record_notification
from sync_pipelines.store.database import Store
from sync_pipelines.store.event_failures import SYSTEM_ORGANIZATION

_log = get_logger("alerts.notify")
_NOT_ATTEMPTED = "not attempted: the channel failed earlier in this evaluation"


def send_message(
    store: Store,
    message: AlertMessage,
    settings: AlertSettings,
    *,
    now: datetime,
    failed_channels: set[str] | None = None,
) -> list[Delivery]:
    """Deliver to each channel in turn, then record every attempt in one transaction.

    `failed_channels` is a pass's memory (an evaluation, a sensor tick): a channel that failed
    once in it is not tried again in it — recorded as failed without an attempt — so a dead
    endpoint's timeouts cannot hold a tick for minutes."""
    incident = message.incident
    organization_id = incident.organization_id if incident else SYSTEM_ORGANIZATION
    store = store.scoped(organization_id)
    attempts = []
    for channel in settings.channels:
        payload = payload_for(channel, message)
        if failed_channels is not None and channel.name in failed_channels:
            delivery = Delivery(channel.name, FAILED, error_message=_NOT_ATTEMPTED, attempts=0)
        else:
            delivery = deliver(
                channel, payload, timeout_s=settings.timeout_s, max_attempts=settings.max_attempts
            )
            if not delivery.ok and failed_channels is not None:
                failed_channels.add(channel.name)
        attempts.append((payload, delivery))
        _log_delivery(message, organization_id, delivery)
    if attempts:
        with store.transaction() as conn:
            for payload, delivery in attempts:
                record_notification(
                    conn,
                    NotificationRecord(
                        organization_id=organization_id,
                        incident_id=incident.id if incident else None,
                        channel=delivery.channel,
                        kind=message.kind,
                        status=delivery.status,
                        status_code=delivery.status_code,
                        error_message=delivery.error_message,
                        payload=redact(payload),
                        created_at=now,
                    ),
                )
    return [delivery for _, delivery in attempts]


def _log_delivery(message: AlertMessage, organization_id: str, delivery: Delivery) -> None:
    incident = message.incident
    fields = {
        "channel": delivery.channel,
        "kind": message.kind,
        "organization_id": organization_id,
        "incident_id": incident.id if incident else None,
        "integration_id": incident.integration_id if incident else None,
        "rule": incident.rule if incident else None,
        "severity": incident.severity if incident else None,
        "status_code": delivery.status_code,
        "attempts": delivery.attempts,
    }
    if delivery.ok:
        _log.info("alert_notification_sent", **fields)
        return
    error = {"type": "alert_delivery_failed", "message": delivery.error_message}
    if message.kind == HEARTBEAT:
        _log.error("alert_heartbeat_failed", error=error, **fields)
    else:
        _log.warning("alert_notification_failed", error=error, **fields)
