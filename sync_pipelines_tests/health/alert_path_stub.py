"""A stand-in for `sync_pipelines.alerts.alert_path_health(conn, now)`, which another change
brings: the contract the health check relies on (a dict with `status` and `detail`), answered
from the real alert tables. Its own tests belong to the alerts package."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def alert_path_health(conn: Connection, now: datetime) -> dict[str, Any]:
    # system-level: the alert path is the service's, whichever tenant it last spoke for
    last = (
        conn.execute(
            sa.text(
                "SELECT status, channel, error_message FROM alert_notifications "
                "ORDER BY created_at DESC LIMIT 1"
            )
        )
        .mappings()
        .first()
    )
    if last is None:
        return {"status": "unknown", "detail": "no notification sent yet"}
    if last["status"] == "failed":
        return {
            "status": "degraded",
            "detail": f"the last notification to {last['channel']} failed: {last['error_message']}",
            "channel": last["channel"],
        }
    return {
        "status": "healthy",
        "detail": f"the last notification to {last['channel']} was delivered",
    }
