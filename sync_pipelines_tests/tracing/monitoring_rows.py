"""Check results and alert incidents written through the store's own writers
(store/check_results.py, store/alerts.py), as the asset checks and the alert sensor write them."""

from __future__ import annotations

import uuid

from sqlalchemy.engine import Connection

from sync_pipelines.clock import utc_now
from sync_pipelines.store.alerts import (
    NotificationRecord,
    record_notification,
    upsert_open_incident,
)
from sync_pipelines.store.check_results import CheckResult, insert_check_results


def insert_check_result(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    *,
    run_id: str | None,
    check_name: str,
    passed: bool,
) -> str:
    result = CheckResult(
        organization_id=organization_id,
        integration_id=integration_id,
        provider="golioth",
        check_name=check_name,
        passed=passed,
        severity="ERROR",
        description=f"{check_name} {'passed' if passed else 'failed'}",
        created_at=utc_now(),
        metadata={"error_rate": 0.2},
        run_id=run_id,
    )
    insert_check_results(conn, [result])
    return result.id


def insert_alert(
    conn: Connection, organization_id: str, integration_id: str, *, run_id: str | None, rule: str
) -> str:
    """An open incident seen now, with its "firing" notification."""
    now = utc_now()
    incident, _ = upsert_open_incident(
        conn,
        organization_id=organization_id,
        integration_id=integration_id,
        rule=rule,
        dedupe_key=f"{rule}:{integration_id}:{uuid.uuid4().hex}",
        severity="critical",
        summary=f"{rule} on {integration_id}",
        details={"error_rate": 0.2},
        now=now,
        run_id=run_id,
    )
    record_notification(
        conn,
        NotificationRecord(
            organization_id=organization_id,
            incident_id=incident.id,
            channel="ops-webhook",
            kind="firing",
            status="sent",
            status_code=200,
            error_message=None,
            payload={"text": "firing"},
            created_at=now,
        ),
    )
    return incident.id
