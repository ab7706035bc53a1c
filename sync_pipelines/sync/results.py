"""What a sync reports: counts, outcome and the call figures the UI plots."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sync_pipelines.figures import percentile
from sync_pipelines.store.sync_state import SyncCounts


@dataclass(slots=True)
class SyncResult:
    integration_id: str
    organization_id: str
    stream: str
    status: str  # success | partial | failed
    counts: SyncCounts
    duration_s: float
    cursor_before: Any = None
    cursor_after: Any = None
    sync_id: str | None = None
    http_requests: int = 0
    http_failed: int = 0
    #: MQTT broker operations (CONNECT, SUBSCRIBE, ... each an `mqtt_request` row)
    mqtt_requests: int = 0
    mqtt_failed: int = 0
    #: latencies of every provider call (HTTP requests and MQTT operations)
    call_latencies_ms: list[float] = field(default_factory=list, repr=False)
    #: deletions the mass-deletion guard held back (a complete scan that would delete more than
    #: `max_delete_fraction`): applied only by `devices confirm-deletions`
    deletions_held: int = 0

    @property
    def record_failure_rate(self) -> float:
        """Records that failed (dead-lettered) / records fetched."""
        return self.counts.failed / self.counts.fetched if self.counts.fetched else 0.0

    @property
    def call_failure_rate(self) -> float | None:
        """Provider calls that failed (final failures and retried attempts) / calls."""
        calls = self.http_requests + self.mqtt_requests
        return (self.http_failed + self.mqtt_failed) / calls if calls else None

    @property
    def p95_latency_ms(self) -> float | None:
        return percentile(self.call_latencies_ms, 95)

    def metadata(self) -> dict[str, float | int | str]:
        """Numbers for Dagster materialization metadata (plotted over time by the UI)."""
        c = self.counts
        figures: dict[str, float | int | str] = {
            **c.figures(),
            "record_failure_rate": round(self.record_failure_rate, 6),
            "duration_s": round(self.duration_s, 3),
            "http_requests": self.http_requests,
            "http_failed": self.http_failed,
            "devices_per_s": round(c.fetched / self.duration_s, 1) if self.duration_s else 0.0,
        }
        if self.mqtt_requests:
            figures.update(mqtt_requests=self.mqtt_requests, mqtt_failed=self.mqtt_failed)
        if self.deletions_held:
            figures["deletions_held"] = self.deletions_held
        if (call_rate := self.call_failure_rate) is not None:
            figures["call_failure_rate"] = round(call_rate, 6)
        p95 = self.p95_latency_ms
        if p95 is not None:
            figures["p95_latency_ms"] = round(p95, 3)
        return figures
