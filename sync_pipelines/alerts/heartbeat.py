"""The alert path watching itself: a periodic heartbeat to every channel (organization
`_system`, kind `heartbeat`), and `alert_path_health`, which judges the path from how the recent
heartbeats went — so a dead webhook is found by the health command, not by the next outage.

States: `healthy` (every configured channel took its last heartbeat, recently), `degraded` (a
channel failing while another works, or heartbeats overdue: the sender is not running),
`unhealthy` (no channel takes heartbeats), `unknown` (no channel configured, or no heartbeat yet).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.alerts.channels import Delivery
from sync_pipelines.alerts.messages import HEARTBEAT, AlertMessage
from sync_pipelines.alerts.notify import send_message
from sync_pipelines.alerts.settings import AlertSettings
from sync_pipelines.store.alerts import channel_deliveries, last_notification_at
from sync_pipelines.store.database import Store, use_organization
from sync_pipelines.store.event_failures import SYSTEM_ORGANIZATION

HEALTHY, DEGRADED, UNHEALTHY, UNKNOWN = "healthy", "degraded", "unhealthy", "unknown"
#: heartbeats may run this late (sensor ticks, a slow daemon) before they count as overdue
_GRACE_S = 300.0


def heartbeat_due(conn: Connection, settings: AlertSettings, *, now: datetime) -> bool:
    use_organization(conn, SYSTEM_ORGANIZATION)
    last = last_notification_at(conn, SYSTEM_ORGANIZATION, HEARTBEAT)
    return last is None or (now - last).total_seconds() >= settings.heartbeat_interval_s


def send_heartbeat(store: Store, settings: AlertSettings, *, now: datetime) -> list[Delivery]:
    """One heartbeat to every channel; a failure is recorded and logged as an error."""
    return send_message(store, AlertMessage(HEARTBEAT, now), settings, now=now)


def alert_path_health(
    conn: Connection, now: datetime, *, settings: AlertSettings | None = None
) -> dict[str, Any]:
    """The alert path's health as JSON: state, reasons, and per channel the last attempt, the
    last successful delivery and the failures since (heartbeats of `_system`)."""
    try:
        settings = settings if settings is not None else AlertSettings.from_env()
    except ValueError as exc:
        reason = f"alert settings: {exc}"
        return {"state": UNHEALTHY, "detail": reason, "reasons": [reason], "channels": {}}
    use_organization(conn, SYSTEM_ORGANIZATION)
    deliveries = channel_deliveries(conn, SYSTEM_ORGANIZATION, HEARTBEAT)
    configured = [c.name for c in settings.channels]
    overdue_after = timedelta(seconds=2 * settings.heartbeat_interval_s + _GRACE_S)
    channels: dict[str, Any] = {}
    reasons: list[str] = []
    working = failing = 0
    for name in sorted(set(configured) | set(deliveries)):
        d = deliveries.get(name)
        channels[name] = {
            "configured": name in configured,
            "last_attempt_at": _iso(d.last_attempt_at if d else None),
            "last_status": d.last_status if d else None,
            "last_error": d.last_error if d else None,
            "last_success_at": _iso(d.last_success_at if d else None),
            "consecutive_failures": d.consecutive_failures if d else 0,
        }
        if name not in configured:
            continue
        if d is None:
            reasons.append(f"channel {name}: no heartbeat sent yet")
            continue
        if d.consecutive_failures:
            failing += 1
            reasons.append(
                f"channel {name}: {d.consecutive_failures} heartbeat(s) failed in a row "
                f"(last: {d.last_error})"
            )
        else:
            working += 1
        if now - d.last_attempt_at > overdue_after:
            reasons.append(
                f"channel {name}: last heartbeat {int((now - d.last_attempt_at).total_seconds())} s ago "
                f"(every {settings.heartbeat_interval_s:.0f} s expected): is the heartbeat sensor running?"
            )
    if not configured:
        state = UNKNOWN
        reasons.insert(
            0, "no alert channel configured (SYNC_ALERT_WEBHOOK_URL, SYNC_ALERT_SLACK_WEBHOOK_URL)"
        )
    elif working == 0 and failing == 0:
        state = UNKNOWN
    elif working == 0:
        state = UNHEALTHY
    elif reasons:
        state = DEGRADED
    else:
        state = HEALTHY
    return {
        "state": state,
        "detail": "; ".join(reasons)
        or f"every channel took its last heartbeat ({', '.join(configured)})",
        "reasons": reasons,
        "heartbeat_interval_s": settings.heartbeat_interval_s,
        "channels": channels,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
