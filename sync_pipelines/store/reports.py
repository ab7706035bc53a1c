"""One run's figures over the activity log (the demo's summary); the integration-health report
is `sync_pipelines/reports/`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.figures import percentile
from sync_pipelines.observability.activity import PROVIDER_CALLS


@dataclass(frozen=True, slots=True)
class RunActivitySummary:
    rows: int
    #: provider calls: HTTP requests and MQTT broker operations (one activity row each)
    calls: int
    calls_failed: int
    operations: dict[str, str]  # activity_type -> status
    #: latency figures over the provider calls
    avg_latency_ms: float | None
    p95_latency_ms: float | None
    request_ids: int
    #: the calls by row type (`http_request`, `mqtt_request`)
    calls_by_type: dict[str, int] = field(default_factory=dict)

    @property
    def http_requests(self) -> int:
        """The former name of `calls`: counts MQTT broker operations too (tables that still read
        it, like the CLI's and the demo's "HTTP calls" column, show every provider's calls)."""
        return self.calls

    @property
    def http_failed(self) -> int:
        """The former name of `calls_failed`."""
        return self.calls_failed


def run_activity_summary(conn: Connection, organization_id: str, run_id: str) -> RunActivitySummary:
    rows = conn.execute(
        sa.text(
            "SELECT activity_type, status, response_time_ms, request_id FROM integration_activity_log "
            "WHERE organization_id = :o AND run_id = :r"
        ),
        {"o": organization_id, "r": run_id},
    ).all()
    calls = [r for r in rows if r.activity_type in PROVIDER_CALLS]
    latencies = sorted(r.response_time_ms for r in calls if r.response_time_ms is not None)
    return RunActivitySummary(
        rows=len(rows),
        calls=len(calls),
        calls_failed=sum(1 for r in calls if r.status == "failed"),
        operations={
            r.activity_type: r.status for r in rows if r.activity_type not in PROVIDER_CALLS
        },
        avg_latency_ms=sum(latencies) / len(latencies) if latencies else None,
        p95_latency_ms=percentile(latencies, 95),
        request_ids=len({r.request_id for r in calls if r.request_id}),
        calls_by_type=dict(Counter(r.activity_type for r in calls)),
    )
