"""Real rows for the alert tests: integrations, provider-call activity rows, sync-log rows,
webhook inbox events and asset-check results, written through the store's own writers."""

from __future__ import annotations

import socket
import uuid
from datetime import datetime, timedelta

from sync_pipelines.clock import utc_now
from sync_pipelines.store.activity import insert_activity_rows
from sync_pipelines.store.check_results import CheckResult, insert_check_results
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import Integration, ensure_organization, save_integration
from sync_pipelines.store.sync_state import SyncCounts, finish_sync_log, start_sync_log
from sync_pipelines.store.webhook_events import (
    WebhookEvent,
    claim_events,
    insert_event,
    mark_processed,
)
from sync_pipelines_tests.activity_rows import provider_call_row


def add_integration(
    store: Store,
    integration_id: str = "golioth-a",
    organization_id: str = "org-a",
    *,
    enabled: bool = True,
    monitoring: dict | None = None,
) -> Integration:
    settings: dict = {"base_url": "http://127.0.0.1:9", "project_id": "p"}
    if monitoring is not None:
        settings["monitoring"] = monitoring
    integration = Integration(
        integration_id=integration_id,
        organization_id=organization_id,
        provider="golioth",
        name=integration_id,
        settings=settings,
        secret_refs={"api_key": "UNUSED_KEY_ENV"},
        enabled=enabled,
    )
    with store.transaction() as conn:
        ensure_organization(conn, organization_id)
        save_integration(conn, integration)
    return integration


def add_calls(
    store: Store,
    integration: Integration,
    count: int,
    *,
    start: datetime,
    end: datetime,
    status: str = "failed",
    status_code: int | None = 503,
    error_type: str | None = "transient",
) -> None:
    """`count` provider-call rows (http_request) spread evenly over [start, end)."""
    if count == 0:
        return
    step = (end - start) / count
    rows = [
        provider_call_row(
            integration.organization_id,
            integration.integration_id,
            start + step * k,
            status=status,
            status_code=status_code,
            error_type=error_type,
            error_message=None if status == "success" else f"HTTP {status_code}",
            ms=12.5,
        )
        for k in range(count)
    ]
    with store.transaction() as conn:
        insert_activity_rows(conn, rows)


def add_syncs(store: Store, integration: Integration, *statuses: str) -> None:
    """Finished inventory syncs, oldest first, with the given statuses."""
    for status in statuses:
        with store.transaction() as conn:
            sync_id = start_sync_log(
                conn,
                integration.organization_id,
                integration.integration_id,
                "devices",
                "run-x",
                None,
            )
            finish_sync_log(
                conn,
                integration.organization_id,
                sync_id,
                status=status,
                started_at=utc_now(),
                counts=SyncCounts(fetched=10),
                cursor_after=None,
                error_type="auth" if status == "failed" else None,
                error_message="HTTP 401" if status == "failed" else None,
            )


def add_inbox_events(
    store: Store, integration: Integration, count: int, *, received_at: datetime
) -> list[str]:
    ids = []
    with store.transaction() as conn:
        for _ in range(count):
            row_id = str(uuid.uuid4())
            insert_event(
                conn,
                WebhookEvent(
                    id=row_id,
                    organization_id=integration.organization_id,
                    integration_id=integration.integration_id,
                    provider=integration.provider,
                    event_id=f"evt-{row_id}",
                    event_type="device.updated",
                    external_id="dev-1",
                    payload={"id": "dev-1"},
                    headers={},
                    delivery_id=f"delivery-{row_id}",
                    received_at=received_at,
                ),
            )
            ids.append(row_id)
    return ids


def process_inbox(store: Store, integration: Integration, *, at: datetime) -> None:
    """Claim and process every waiting event of the integration, as a processing run does."""
    with store.transaction() as conn:
        events = claim_events(
            conn,
            integration.organization_id,
            integration.integration_id,
            limit=10_000,
            run_id="run-inbox",
            now=at,
            lease_s=600,
        )
        for event in events:
            mark_processed(conn, integration.organization_id, event.id, run_id="run-inbox", now=at)


def add_check_result(
    store: Store,
    integration: Integration,
    check_name: str,
    *,
    passed: bool,
    created_at: datetime,
    severity: str = "ERROR",
) -> CheckResult:
    result = CheckResult(
        organization_id=integration.organization_id,
        integration_id=integration.integration_id,
        provider=integration.provider,
        check_name=check_name,
        passed=passed,
        severity=severity,
        description="error rate 0.0%" if passed else "error rate 12.0% above 10%",
        created_at=created_at,
        metadata={"error_rate": 0.0 if passed else 0.12},
        run_id="run-check",
    )
    with store.transaction() as conn:
        insert_check_results(conn, [result])
    return result


def closed_port() -> int:
    """A loopback port nothing listens on (bound, read, and closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
