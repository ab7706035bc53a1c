"""Read-side figures over the activity log (the demo's summary; richer reports come later)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.figures import percentile


@dataclass(frozen=True, slots=True)
class RunActivitySummary:
    rows: int
    http_requests: int
    http_failed: int
    operations: dict[str, str]  # activity_type -> status
    avg_latency_ms: float | None
    p95_latency_ms: float | None
    request_ids: int


def run_activity_summary(conn: Connection, organization_id: str, run_id: str) -> RunActivitySummary:
    rows = conn.execute(
        sa.text(
            "SELECT activity_type, status, response_time_ms, request_id FROM integration_activity_log "
            "WHERE organization_id = :o AND run_id = :r"
        ),
        {"o": organization_id, "r": run_id},
    ).all()
    http = [r for r in rows if r.activity_type == "http_request"]
    latencies = sorted(r.response_time_ms for r in http if r.response_time_ms is not None)
    return RunActivitySummary(
        rows=len(rows),
        http_requests=len(http),
        http_failed=sum(1 for r in http if r.status == "failed"),
        operations={r.activity_type: r.status for r in rows if r.activity_type != "http_request"},
        avg_latency_ms=sum(latencies) / len(latencies) if latencies else None,
        p95_latency_ms=percentile(latencies, 95),
        request_ids=len({r.request_id for r in http if r.request_id}),
    )
