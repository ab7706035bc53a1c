"""The integration-health report and an integration's sync history as pandas DataFrames: what a
notebook, a CSV export and the report asset's `dagster/column_schema` take. Built from the
report's records (`integration_report.py`) and the sync log (`store/sync_state.py`), so a frame
never disagrees with the Markdown table, the CLI or `/health`. No Dagster here.

Columns have explicit nullable dtypes (`string`, `Int64`, `Float64`, UTC datetimes), so an
empty frame has the same schema as a full one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy.engine import Connection

from sync_pipelines.reports.integration_report import (
    IntegrationHealthReport,
    IntegrationReportRow,
)
from sync_pipelines.store.database import parse_timestamp
from sync_pipelines.store.sync_state import sync_log_rows

_UTC = "datetime64[ns, UTC]"

#: one row per integration, worst first (the report's order)
HEALTH_COLUMNS: dict[str, str] = {
    "organization_id": "string",
    "integration_id": "string",
    "provider": "string",
    "name": "string",
    # healthy / degraded / unhealthy / unknown (monitoring.health), and why
    "state": "string",
    "reasons": "string",
    "syncs": "Int64",
    "syncs_succeeded": "Int64",
    "syncs_partial": "Int64",
    "syncs_failed": "Int64",
    # clean successes among finished syncs (partial and failed ones are not)
    "sync_success_rate": "Float64",
    # provider calls (HTTP requests and MQTT operations) over the period; failed = failed or retried
    "calls": "Int64",
    "calls_failed": "Int64",
    "call_failure_rate": "Float64",
    "avg_latency_ms": "Float64",
    "p95_latency_ms": "Float64",
    # the error-rate trend: up (significantly worse), down, flat, unknown (too few calls)
    "error_rate_trend": "string",
    "failure_streak": "Int64",
    "last_success_at": _UTC,
    "last_attempt_at": _UTC,
    "open_dead_letters": "Int64",
    "inbox_backlog": "Int64",
    "top_error": "string",
    "last_error": "string",
}

#: one row per sync of one integration (every stream), oldest first
SYNC_HISTORY_COLUMNS: dict[str, str] = {
    "sync_id": "string",
    "run_id": "string",
    "stream": "string",
    # running / success / partial / failed
    "status": "string",
    "started_at": _UTC,
    "completed_at": _UTC,
    "duration_s": "Float64",
    "fetched": "Int64",
    "created": "Int64",
    "updated": "Int64",
    "unchanged": "Int64",
    "failed": "Int64",
    "conflicts": "Int64",
    "pages": "Int64",
    "gaps": "Int64",
    "error_type": "string",
    "error_message": "string",
}


def health_frame(report: IntegrationHealthReport) -> pd.DataFrame:
    """The report's integrations as a DataFrame, one row each, in the report's order."""
    return _frame((_health_record(row) for row in report.integrations), HEALTH_COLUMNS)


def _health_record(row: IntegrationReportRow) -> dict[str, Any]:
    health, calls, syncs = row.health, row.calls, row.syncs
    top = row.top_errors[0] if row.top_errors else None
    return {
        "organization_id": row.organization_id,
        "integration_id": row.integration_id,
        "provider": row.integration.provider,
        "name": row.integration.name,
        "state": row.state,
        "reasons": "; ".join(health.reasons) or None,
        "syncs": syncs.syncs,
        "syncs_succeeded": syncs.succeeded,
        "syncs_partial": syncs.partial,
        "syncs_failed": syncs.failed,
        "sync_success_rate": syncs.success_rate,
        "calls": calls.calls,
        "calls_failed": calls.failed,
        "call_failure_rate": calls.failure_rate,
        "avg_latency_ms": calls.avg_latency_ms,
        "p95_latency_ms": calls.p95_latency_ms,
        "error_rate_trend": row.trend.direction,
        "failure_streak": health.failure_streak,
        "last_success_at": health.last_success_at,
        "last_attempt_at": health.last_attempt_at,
        "open_dead_letters": health.dead_letters,
        "inbox_backlog": health.inbox.pending,
        "top_error": f"{top.error_type}: {top.message}" if top else None,
        "last_error": health.last_error,
    }


def sync_history_frame(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    *,
    since: datetime | None = None,
) -> pd.DataFrame:
    """One integration's syncs from the sync log (every stream), oldest first; only those
    started at or after `since` when given. Scoped by organization like every read."""
    rows = sync_log_rows(conn, organization_id, integration_id)
    records = (_sync_record(r) for r in rows)
    if since is not None:
        records = (r for r in records if r["started_at"] >= since)
    return _frame(records, SYNC_HISTORY_COLUMNS)


def _sync_record(row: Mapping[str, Any]) -> dict[str, Any]:
    duration_ms = row.get("duration_ms")
    return {
        "sync_id": row["id"],
        "run_id": row.get("run_id"),
        "stream": row["stream"],
        "status": row["status"],
        "started_at": parse_timestamp(row["started_at"]),
        "completed_at": parse_timestamp(row.get("completed_at")),
        "duration_s": None if duration_ms is None else float(duration_ms) / 1000.0,
        **{
            name: row.get(name)
            for name in (
                "fetched",
                "created",
                "updated",
                "unchanged",
                "failed",
                "conflicts",
                "pages",
                "gaps",
                "error_type",
                "error_message",
            )
        },
    }


def _frame(records: Iterable[dict[str, Any]], columns: Mapping[str, str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(list(records), columns=list(columns))
    for name, dtype in columns.items():
        if dtype == _UTC:
            frame[name] = pd.to_datetime(frame[name], utc=True).astype(dtype)
        else:
            frame[name] = frame[name].astype(dtype)
    return frame
