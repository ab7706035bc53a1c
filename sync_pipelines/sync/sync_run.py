"""The bookkeeping every sync stream shares: its `integration_sync_log` row, counts, timing,
and the result it returns. Streams (inventory, states) only fetch and write."""

from __future__ import annotations

import time
from typing import Any

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import category_of
from sync_pipelines.observability import metrics
from sync_pipelines.observability.redaction import redact_text
from sync_pipelines.store.sync_state import SyncCounts, finish_sync_log, get_cursor, start_sync_log
from sync_pipelines.sync.results import SyncResult
from sync_pipelines.sync.session import IntegrationSession


class SyncRun:
    def __init__(self, session: IntegrationSession, stream: str) -> None:
        self.session = session
        self.stream = stream
        self.counts = SyncCounts()
        integ = session.integration
        self.started_at, self._started = utc_now(), time.perf_counter()
        with session.store.transaction() as conn:
            self.cursor_before = get_cursor(
                conn, integ.organization_id, integ.integration_id, stream
            )
            self.sync_id = start_sync_log(
                conn,
                integ.organization_id,
                integ.integration_id,
                stream,
                session.run.run_id,
                self.cursor_before,
            )
        self.cursor_after: Any = self.cursor_before

    def figures(self) -> dict[str, int]:
        c = self.counts
        return {
            "fetched": c.fetched,
            "created": c.created,
            "updated": c.updated,
            "unchanged": c.unchanged,
            "failed": c.failed,
            "pages": c.pages,
        }

    def finish(self, exc: BaseException | None = None) -> SyncResult:
        """Close the sync log row: failed if `exc`, partial if records failed or telemetry had
        gaps, else success."""
        status = (
            "failed"
            if exc
            else ("partial" if self.counts.failed or self.counts.gaps else "success")
        )
        integ, rec = self.session.integration, self.session.recorder
        try:
            with self.session.store.transaction() as conn:
                finish_sync_log(
                    conn,
                    integ.organization_id,
                    self.sync_id,
                    status=status,
                    started_at=self.started_at,
                    counts=self.counts,
                    cursor_after=self.cursor_after,
                    error_type=category_of(exc) if exc else None,
                    error_message=redact_text(str(exc)) if exc else None,
                )
        except Exception:  # the sync ends failed without its log row: counted all the same
            metrics.sync_finished(
                integ.provider, self.stream, "failed", time.perf_counter() - self._started
            )
            raise
        metrics.sync_finished(
            integ.provider, self.stream, status, time.perf_counter() - self._started
        )
        return SyncResult(
            integration_id=integ.integration_id,
            organization_id=integ.organization_id,
            stream=self.stream,
            status=status,
            counts=self.counts,
            duration_s=time.perf_counter() - self._started,
            cursor_before=self.cursor_before,
            cursor_after=self.cursor_after,
            sync_id=self.sync_id,
            http_requests=rec.counts["http_requests"],
            http_failed=rec.counts["http_failed"],
            mqtt_requests=rec.counts["mqtt_requests"],
            mqtt_failed=rec.counts["mqtt_failed"],
            call_latencies_ms=list(rec.call_latencies_ms),
        )
