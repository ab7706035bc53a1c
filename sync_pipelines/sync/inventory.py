"""The device inventory sync, one engine for every provider: pages → batches → bulk upsert.

Pages stream in from the provider and are gathered into batches of whole pages; each batch
is written with the cursor after its last page in one transaction, so a killed sync resumes
from the last committed batch and never loses or doubles a record. Records a provider could
not normalise are counted as failed, recorded and dead-lettered; they do not take the batch
down, and a device that later syncs fine resolves its dead letter.
"""

from __future__ import annotations

import json
from typing import Any

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import category_of
from sync_pipelines.observability.activity import IMPORT, RECORD_REJECTED
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.providers.contract import DevicePage
from sync_pipelines.store.dead_letters import FailedRecord
from sync_pipelines.store.devices import upsert_devices
from sync_pipelines.store.sync_state import set_cursor
from sync_pipelines.sync.failed_records import dead_letter, payload_key, resolve_synced
from sync_pipelines.sync.records import device_row
from sync_pipelines.sync.results import SyncResult
from sync_pipelines.sync.session import IntegrationSession
from sync_pipelines.sync.sync_run import SyncRun

STREAM = "devices"
DEFAULT_BATCH_SIZE = 1000

_log = get_logger("sync.inventory")


def sync_devices(session: IntegrationSession, *, batch_size: int = DEFAULT_BATCH_SIZE) -> SyncResult:
    """Import the integration's inventory. Records, then re-raises, if the sync fails."""
    run = SyncRun(session, STREAM)
    batch = _Batch(session)
    _log.info("sync_started", stream=STREAM, cursor_before=run.cursor_before, sync_id=run.sync_id)
    try:
        with session.recorder.operation(IMPORT, stream=STREAM, cursor_before=run.cursor_before,
                                        sync_id=run.sync_id) as op:
            with session.open_provider() as provider:
                for page in provider.list_devices(since=run.cursor_before):
                    run.counts.pages += 1
                    run.counts.fetched += len(page.devices) + len(page.rejected)
                    run.counts.failed += len(page.rejected)
                    _record_rejected(session, page)
                    batch.add(page)
                    if len(batch.rows) >= batch_size or page.cursor_after is None:
                        batch.commit(run)
                batch.commit(run)
            op.annotate(**run.figures(), cursor_after=run.cursor_after)
            if run.counts.failed:
                op.annotate(_status="partial")
    except Exception as exc:
        # Whole pages fetched before the failure are good: keep them, with their cursor.
        if batch.pages and not batch.commit_failed:
            try:
                batch.commit(run)
            except Exception:  # the original error is the one to report
                _log.exception("batch_commit_after_failure_failed")
        run.finish(exc)
        _log.error("sync_failed", stream=STREAM, error_type=category_of(exc), exc_info=exc, **run.figures())
        raise
    result = run.finish()
    _log.info("sync_completed", stream=STREAM, status=result.status,
              duration_ms=round(result.duration_s * 1000, 1), **run.figures())
    return result


class _Batch:
    """Rows of whole pages awaiting one commit, deduplicated by external id (page shifts can
    serve a device twice, and Postgres refuses to upsert one key twice in a statement)."""

    def __init__(self, session: IntegrationSession) -> None:
        self.session = session
        self.rows: dict[str, dict[str, Any]] = {}
        self.pages = 0
        self.cursor_after: Any = None
        self.commit_failed = False

    def add(self, page: DevicePage) -> None:
        integ, now = self.session.integration, utc_now()
        for device in page.devices:
            self.rows[device.external_id] = device_row(
                device, organization_id=integ.organization_id, integration_id=integ.integration_id,
                run_id=self.session.run.run_id, request_id=page.request_id, now=now,
            )
        self.pages += 1
        self.cursor_after = page.cursor_after

    def commit(self, run: SyncRun) -> None:
        if not self.pages:
            return
        integ = self.session.integration
        self.commit_failed = True
        with self.session.store.transaction() as conn:
            written = upsert_devices(conn, list(self.rows.values()))
            resolve_synced(self.session, conn, STREAM, list(self.rows))
            set_cursor(conn, integ.organization_id, integ.integration_id, STREAM, self.cursor_after,
                       self.session.run.run_id)
        self.commit_failed = False
        run.counts.created += written.created
        run.counts.updated += written.updated
        run.counts.unchanged += written.unchanged
        run.cursor_after = self.cursor_after
        _log.debug("batch_committed", rows=len(self.rows), pages=self.pages, cursor_after=self.cursor_after)
        self.rows.clear()
        self.pages = 0
        self.session.recorder.flush()  # activity rows land between data transactions


def _record_rejected(session: IntegrationSession, page: DevicePage) -> None:
    """Each rejected record: an activity row and a dead letter holding its whole payload."""
    if not page.rejected:
        return
    recorder = session.recorder
    for rejected in page.rejected:
        row = recorder.new_row(
            RECORD_REJECTED, status="failed", request_id=page.request_id,
            error_type=rejected.error_type, error_message=rejected.error_message,
            metadata={"external_id": rejected.external_id, "page": page.page_number,
                      "payload": _bounded(rejected.payload)},
        )
        row.completed_at = row.created_at
        recorder.record(row)
        _log.warning("record_rejected", external_id=rejected.external_id, page=page.page_number,
                     request_id=page.request_id,
                     error={"type": rejected.error_type, "message": rejected.error_message})
    dead_letter(session, [
        FailedRecord(stream=STREAM, dedupe_key=r.external_id or payload_key(r.payload),
                     error_type=r.error_type, error_message=r.error_message, payload=r.payload,
                     external_id=r.external_id, request_id=page.request_id)
        for r in page.rejected
    ])


def _bounded(payload: Any, limit: int = 4000) -> Any:
    text = json.dumps(payload, default=str)
    return payload if len(text) <= limit else text[:limit] + "…"
