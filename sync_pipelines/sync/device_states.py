"""The device state sync: reported/desired documents for every device the store knows,
read from the provider in batches (bounded concurrency is the provider's job). A device whose
state cannot be read is dead-lettered; reading it fine later resolves its letter."""

from __future__ import annotations

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import category_of
from sync_pipelines.observability.activity import RECORD_REJECTED, STATE_IMPORT
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.providers.contract import StateFailure
from sync_pipelines.store.dead_letters import FailedRecord
from sync_pipelines.store.devices import device_ids_after, upsert_device_states
from sync_pipelines.sync.failed_records import dead_letter, resolve_synced
from sync_pipelines.sync.records import state_row
from sync_pipelines.sync.results import SyncResult
from sync_pipelines.sync.session import IntegrationSession
from sync_pipelines.sync.sync_run import SyncRun

STREAM = "device_states"
DEFAULT_BATCH_SIZE = 200

_log = get_logger("sync.device_states")


def sync_device_states(
    session: IntegrationSession, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> SyncResult:
    run = SyncRun(session, STREAM)
    integ, store = session.integration, session.store
    _log.info("sync_started", stream=STREAM, sync_id=run.sync_id)
    try:
        with session.recorder.operation(STATE_IMPORT, stream=STREAM, sync_id=run.sync_id) as op:
            with session.open_provider() as provider:
                after = ""
                while True:
                    with store.connect() as conn:
                        ids = device_ids_after(
                            conn, integ.organization_id, integ.integration_id, after, batch_size
                        )
                    if not ids:
                        break
                    after = ids[-1]
                    states, failures = provider.get_states(ids)
                    now = utc_now()
                    rows = [
                        state_row(
                            s,
                            organization_id=integ.organization_id,
                            integration_id=integ.integration_id,
                            run_id=session.run.run_id,
                            now=now,
                        )
                        for s in states
                    ]
                    with store.transaction() as conn:
                        written = upsert_device_states(conn, rows)
                        resolve_synced(session, conn, STREAM, [s.external_id for s in states])
                    c = run.counts
                    c.pages += 1
                    c.fetched += len(ids)
                    c.created += written.created
                    c.updated += written.updated
                    c.unchanged += written.unchanged
                    c.failed += len(failures)
                    _record_failures(session, failures)
                    session.recorder.flush()
            op.annotate(**run.figures())
            if run.counts.failed:
                op.annotate(_status="partial")
    except Exception as exc:
        run.finish(exc)
        _log.error(
            "sync_failed", stream=STREAM, error_type=category_of(exc), exc_info=exc, **run.figures()
        )
        raise
    result = run.finish()
    _log.info(
        "sync_completed",
        stream=STREAM,
        status=result.status,
        duration_ms=round(result.duration_s * 1000, 1),
        **run.figures(),
    )
    return result


def _record_failures(session: IntegrationSession, failures: list[StateFailure]) -> None:
    """Each device whose state could not be read is an activity row naming it (the call's own
    row may well be a 200: an invalid shadow, a document that is not JSON) and a dead letter
    (replayed by reading the device's state again)."""
    recorder, integration_id = session.recorder, session.integration.integration_id
    letters = []
    for failure in failures:
        message = failure.error_message
        if failure.external_id not in message:
            message = f"device {failure.external_id}: {message}"
        row = recorder.new_row(
            RECORD_REJECTED,
            status="failed",
            error_type=failure.error_type,
            error_message=f"integration {integration_id}: {message}",
            metadata={"stream": STREAM, "external_id": failure.external_id},
        )
        row.completed_at = row.created_at
        recorder.record(row)
        _log.warning(
            "device_state_failed",
            external_id=failure.external_id,
            error={"type": failure.error_type, "message": failure.error_message},
        )
        letters.append(
            FailedRecord(
                stream=STREAM,
                dedupe_key=failure.external_id,
                error_type=failure.error_type,
                error_message=message,
                payload={"external_id": failure.external_id},
                external_id=failure.external_id,
            )
        )
    dead_letter(session, letters)
