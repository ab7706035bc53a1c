"""One sync of one stream, start to finish: its `integration_sync_log` row, its activity
operation, its counts and timing, its log lines and the result it returns. Streams only fetch,
write and count:

    with SyncRun(session, STREAM, IMPORT, log=_log) as run:
        ...  # counting into run.counts, advancing run.cursor_after
    return run.result

Entering takes the stream's lease (one sync per integration and stream at a time; waits, then
raises LeaseHeldError — see sync/stream_lease.py), writes the started row, opens the operation
and logs `<event>_started`. Every batch commit calls `run.fence(conn)` in its transaction, so a
sync whose lease was taken over cannot write: it ends `fenced`. Leaving releases the lease and
closes both — success, partial (records failed, telemetry had gaps or was reported lost:
`report_loss`), failed or fenced — and logs
`<event>_completed`, or `<event>_failed` with the error's stack. That line is the failure's
one log line: the exception is marked logged, so the session around the sync does not log it
again.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from types import TracebackType
from typing import Any

import structlog
from sqlalchemy.engine import Connection

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import FencedError, category_of, sync_error_of
from sync_pipelines.observability import metrics
from sync_pipelines.observability.activity import Operation
from sync_pipelines.observability.logging import mark_logged
from sync_pipelines.observability.redaction import redact_text
from sync_pipelines.store.sync_state import (
    FENCED,
    SyncCounts,
    finish_sync_log,
    get_cursor,
    start_sync_log,
)
from sync_pipelines.sync.gc_pacing import sync_gc_pacing
from sync_pipelines.sync.results import SyncResult
from sync_pipelines.sync.session import IntegrationSession
from sync_pipelines.sync.stream_lease import LeaseSettings, StreamLease


class SyncRun:
    """See the module docstring. `details` go on the started line and the operation's row;
    `annotate(...)` adds figures to the operation's row and the closing line. `lease_*` override
    the lease settings (SYNC_LEASE_TTL_S, SYNC_LEASE_WAIT_S, SYNC_LEASE_HEARTBEAT_S)."""

    def __init__(
        self,
        session: IntegrationSession,
        stream: str,
        activity_type: str,
        *,
        log: structlog.stdlib.BoundLogger,
        event: str = "sync",
        lease_ttl_s: float | None = None,
        lease_wait_s: float | None = None,
        lease_heartbeat_s: float | None = None,
        **details: Any,
    ) -> None:
        self.session = session
        self.stream = stream
        self.counts = SyncCounts()
        self.cursor_before: Any = None
        self.cursor_after: Any = None
        self.sync_id = ""
        self.started_at = utc_now()
        self._activity_type = activity_type
        self._log = log
        self._event = event
        self._details = details
        self._annotations: dict[str, Any] = {}
        #: (error type, message) of data the sync knows it could not get (report_loss)
        self._loss: tuple[str, str] | None = None
        self._started = time.perf_counter()
        self._operation = ExitStack()
        self._op: Operation | None = None
        self._result: SyncResult | None = None
        self._gc_pacing = sync_gc_pacing()
        integ = session.integration
        self.lease = StreamLease(
            session.store,
            integ.organization_id,
            integ.integration_id,
            stream,
            session.run.run_id,
            LeaseSettings.resolve(
                ttl_s=lease_ttl_s, wait_s=lease_wait_s, heartbeat_s=lease_heartbeat_s
            ),
        )

    def __enter__(self) -> SyncRun:
        self.lease.acquire(self._begin)
        try:
            self._open()
        except BaseException:
            self.lease.release()  # the row stays `running`: the next sync closes it `abandoned`
            raise
        self._gc_pacing.__enter__()
        return self

    def _begin(self, conn: Connection) -> None:
        """In the transaction that took the lease: the cursor and the started row."""
        integ = self.session.integration
        self.started_at, self._started = utc_now(), time.perf_counter()
        self.cursor_before = get_cursor(
            conn, integ.organization_id, integ.integration_id, self.stream
        )
        self.sync_id = start_sync_log(
            conn,
            integ.organization_id,
            integ.integration_id,
            self.stream,
            self.session.run.run_id,
            self.cursor_before,
        )

    def _open(self) -> None:
        self.lease.name_holder(sync_id=self.sync_id)
        self.cursor_after = self.cursor_before
        where: dict[str, Any] = {"stream": self.stream, "sync_id": self.sync_id}
        if self.cursor_before is not None:
            where["cursor_before"] = self.cursor_before
        self._log.info(f"{self._event}_started", **where, **self._details)
        self._op = self._operation.enter_context(
            self.session.recorder.operation(self._activity_type, **where, **self._details)
        )
        self.lease.name_holder(activity_id=self._op.id)
        self.lease.start_heartbeat()

    def fence(self, conn: Connection) -> None:
        """Call first in each batch's transaction: renews the lease, or raises FencedError when a
        newer sync took it over (the batch then rolls back)."""
        self.lease.fence(conn)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        try:
            return self._exit(exc_type, exc, tb)
        finally:
            self._gc_pacing.__exit__(None, None, None)
            self.lease.release()

    def _exit(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is not None and not isinstance(exc, Exception):
            # interrupted (KeyboardInterrupt, SystemExit): the operation says failed, the sync
            # log row stays `running`, as a killed process leaves it; its lease is released, so
            # the next sync of the stream closes it `abandoned` without waiting
            self._operation.__exit__(exc_type, exc, tb)
            return False
        assert self._op is not None, "SyncRun used without `with`"
        self._op.annotate(**self.figures(), **self._annotations)
        if exc is None and self._partial:
            self._op.annotate(_status="partial")
        try:
            self._operation.__exit__(exc_type, exc, tb)
        except Exception as late:  # the operation's row could not be written
            self._close(late)
            raise
        self._close(exc)
        return False

    @property
    def result(self) -> SyncResult:
        """What the sync did; there once the `with` block has ended."""
        if self._result is None:
            raise RuntimeError("the sync has not finished: read `result` after its `with` block")
        return self._result

    def annotate(self, **fields: Any) -> None:
        """Figures for the operation's row and the `<event>_completed` / `_failed` line."""
        self._annotations.update(fields)

    def figures(self) -> dict[str, int]:
        return self.counts.figures()

    def report_loss(self, error_type: str, message: str) -> None:
        """Data the source lost and the sync cannot fetch (a broker's dropped messages): the sync
        ends `partial` with this as its sync-log error, unless it fails."""
        self._loss = (error_type, message)

    @property
    def _partial(self) -> bool:
        return bool(self.counts.failed or self.counts.gaps or self._loss)

    def _close(self, exc: BaseException | None) -> None:
        """Close the sync log row, then say how it ended in one line."""
        if exc is None:
            self._result = self._finish(None)
            self._log.info(
                f"{self._event}_completed",
                stream=self.stream,
                status=self._result.status,
                duration_ms=round(self._result.duration_s * 1000, 1),
                **self.figures(),
                **self._annotations,
            )
            return
        try:
            self._result = self._finish(exc)
        finally:  # logged even when the row could not be closed: the sync's failure comes first
            self._log.error(
                f"{self._event}_failed",
                stream=self.stream,
                error_type=category_of(exc),
                exc_info=exc,
                **self.figures(),
                **self._annotations,
            )
            mark_logged(exc)

    def _error_of(self, exc: BaseException | None, status: str) -> tuple[str | None, str | None]:
        """The sync log's error: the exception, else what a partial sync reported lost."""
        if exc is not None:
            return category_of(exc), redact_text(str(exc))
        if status == "partial" and self._loss is not None:
            return self._loss[0], redact_text(self._loss[1])
        return None, None

    def _finish(self, exc: BaseException | None) -> SyncResult:
        if self.lease.fenced or (exc is not None and isinstance(sync_error_of(exc), FencedError)):
            status = FENCED
        elif exc is None:
            status = "partial" if self._partial else "success"
        else:
            status = "failed"
        integ, rec = self.session.integration, self.session.recorder
        error_type, error_message = self._error_of(exc, status)
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
                    error_type=error_type,
                    error_message=error_message,
                )
        except Exception:  # the sync ends failed without its log row: counted all the same
            metrics.sync_finished(
                integ.provider, self.stream, "failed", time.perf_counter() - self._started
            )
            raise
        duration_s = time.perf_counter() - self._started
        metrics.sync_finished(integ.provider, self.stream, status, duration_s)
        return SyncResult(
            integration_id=integ.integration_id,
            organization_id=integ.organization_id,
            stream=self.stream,
            status=status,
            counts=self.counts,
            duration_s=duration_s,
            cursor_before=self.cursor_before,
            cursor_after=self.cursor_after,
            sync_id=self.sync_id,
            http_requests=rec.counts["http_requests"],
            http_failed=rec.counts["http_failed"],
            mqtt_requests=rec.counts["mqtt_requests"],
            mqtt_failed=rec.counts["mqtt_failed"],
            call_latencies_ms=list(rec.call_latencies_ms),
            deletions_held=int(self._annotations.get("deletions_held") or 0),
        )
