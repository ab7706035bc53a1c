"""The integration overview: one row per integration, straight from the integration-health
report (reports/integration_report.py over monitoring/) — the console shows those figures, it
never recomputes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.observability.redaction import redact
from sync_pipelines.reports.integration_report import (
    IntegrationHealthReport,
    build_integration_report,
)
from sync_pipelines.tracing.bundle import register_integration_secrets


def integration_overview(
    conn: Connection, organization_id: str | None, *, now: datetime
) -> IntegrationHealthReport:
    """The last 24 h of one organization's integrations, or of all (an unscoped operator)."""
    report = build_integration_report(conn, organization_id=organization_id, now=now)
    register_integration_secrets(row.integration for row in report.integrations)
    return report


def overview_json(report: IntegrationHealthReport) -> dict[str, Any]:
    """What the page shows per integration, plus the headline counts; redacted."""
    rows = []
    for row in report.integrations:
        health = row.health
        rows.append(
            {
                "organization_id": row.organization_id,
                "integration_id": row.integration_id,
                "provider": row.integration.provider,
                "name": row.integration.name,
                "state": row.state,
                "reasons": list(health.reasons),
                "last_success_at": _iso(health.last_success_at),
                "last_attempt_at": _iso(health.last_attempt_at),
                "last_error": health.last_error,
                "enabled": row.integration.enabled,
                "signals": [s.as_json() for s in health.signals],
                "sync_success_rate": row.syncs.success_rate,
                "syncs_partial": row.syncs.partial,
                "syncs_failed": row.syncs.failed,
                "call_success_rate": row.call_success_rate,
                "calls": row.calls.calls,
                "p95_latency_ms": row.calls.p95_latency_ms,
                "trend": row.trend.direction,
                "trend_arrow": row.trend_arrow,
                "dead_letters": health.dead_letters,
            }
        )
    return redact(
        {
            "title": report.title,
            "generated_at": report.generated_at.isoformat(),
            "period_start": report.period_start.isoformat(),
            "period_end": report.period_end.isoformat(),
            **report.figures(),
            "integrations": rows,
        }
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
