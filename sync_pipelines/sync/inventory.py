"""The device inventory sync, one engine for every provider: pages → batches → bulk upsert.

Pages stream in from the provider and are gathered into batches of whole pages; each batch
is written with the cursor after its last page (and the activity rows of the calls made
meanwhile) in one transaction, so a killed sync resumes from the last committed batch and
never loses or doubles a record. One writer thread commits batch N while batch N+1 waits its
turn and N+2 is fetched and built; batches still commit strictly in order, and a failed write
stops the sync (nothing queued behind it is written). Records a provider could not normalise
are counted as failed, recorded and dead-lettered; they do not take the batch down, and a
device that later syncs fine resolves its dead letter. With tracing on, each batch write is a
span of the sync's trace.

Where one listing carries the devices and their states (`Provider.lists_devices_with_states`),
it is read once: each batch also writes its devices' states, and the state sync of the same run
takes them from there (sync/listed_states.py).

The shapes of the devices' attributes (and of the states a listing carries) are observed page by
page and compared with the integration's last known shapes after the last batch
(sync/shape_drift.py).
"""

from __future__ import annotations

import contextvars
import json
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.clock import utc_now
from sync_pipelines.observability import otel
from sync_pipelines.observability.activity import IMPORT, RECORD_REJECTED, ActivityRow
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.providers.contract import DevicePage
from sync_pipelines.store.bulk import UpsertCounts
from sync_pipelines.store.dead_letters import FailedRecord
from sync_pipelines.store.devices import upsert_device_states, upsert_devices
from sync_pipelines.store.sync_state import get_cursor, set_cursor
from sync_pipelines.sync.deletions import ScanEnd, ScanEpoch, report_scan_end
from sync_pipelines.sync.failed_records import dead_letter, payload_key, resolve_synced
from sync_pipelines.sync.listed_states import ListedStates, resumed_or_new
from sync_pipelines.sync.records import device_row, state_row
from sync_pipelines.sync.results import SyncResult
from sync_pipelines.sync.session import IntegrationSession
from sync_pipelines.sync.shape_drift import ShapeWatch, judge
from sync_pipelines.sync.sync_run import SyncRun

STREAM = "devices"
#: the stream whose rows a listing with states also writes (sync/device_states.py's STREAM)
STATES_STREAM = "device_states"
DEFAULT_BATCH_SIZE = 1000
#: batches handed to the writer and not yet counted: one being written, one waiting its turn
WRITER_QUEUE = 2

_log = get_logger("sync.inventory")


def sync_devices(
    session: IntegrationSession, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> SyncResult:
    """Import the integration's inventory. Records, then re-raises, if the sync fails."""
    with SyncRun(session, STREAM, IMPORT, log=_log) as run:
        scan = ScanEpoch.begin(session, STREAM, run.cursor_before)
        run.annotate(scan_epoch=scan.epoch)
        writer = _BatchWriter(session, run, scan)
        batch = _Batch(session)
        # a listing that starts in this sync can see every device: removals judged if it completes
        shapes = ShapeWatch(STREAM, complete=run.cursor_before is None)
        state_shapes: ShapeWatch | None = None
        try:
            with session.open_provider() as provider:
                if provider.lists_devices_with_states:
                    writer.listed = _listed_states(session, run, scan)
                    batch.with_states = True
                    state_shapes = ShapeWatch(STATES_STREAM, complete=shapes.complete)
                    pages = provider.list_devices_with_states(since=run.cursor_before)
                else:
                    pages = provider.list_devices(since=run.cursor_before)
                for page in pages:
                    shapes.devices(page.devices)
                    if state_shapes is not None:
                        state_shapes.states(page.states)
                        if len(page.states) < len(page.devices):
                            state_shapes.incomplete()  # read one by one by the state sync
                    run.counts.pages += 1
                    run.counts.fetched += len(page.devices) + len(page.rejected)
                    run.counts.failed += len(page.rejected)
                    if page.rejected:
                        # the batch in flight may resolve these records' dead letters: let it
                        # commit first, so a record rejected now stays dead-lettered
                        writer.wait()
                        _record_rejected(session, page)
                    batch.add(page)
                    if len(batch.rows) >= batch_size or page.cursor_after is None:
                        writer.submit(batch.take(completes=page.cursor_after is None))
                if batch.pages:
                    writer.submit(batch.take())
                writer.wait()
        except Exception:
            _keep_fetched_pages(writer, batch)
            raise
        finally:
            writer.close()
            run.annotate(cursor_after=run.cursor_after)
            if writer.listed is not None:
                run.annotate(states_listed=writer.listed.fetched)
        _judge_shapes(session, run, writer, shapes, state_shapes)
    return run.result


def _judge_shapes(
    session: IntegrationSession,
    run: SyncRun,
    writer: _BatchWriter,
    shapes: ShapeWatch,
    state_shapes: ShapeWatch | None,
) -> None:
    """After the last batch: the shapes seen, compared with the integration's (sync/shape_drift.py);
    complete only when the scan's deletions were judged (it listed everything, rejected nothing)."""
    if writer.scan_end is None or not writer.scan_end.judged:
        shapes.incomplete()
    judge(session, run, shapes)
    if state_shapes is not None:
        if not shapes.complete:
            state_shapes.incomplete()
        judge(session, run, state_shapes)


def _listed_states(session: IntegrationSession, run: SyncRun, scan: ScanEpoch) -> ListedStates:
    """What this scan has stored of the states its listing carries (a resumed scan's so far)."""
    integ = session.integration
    with session.store.connect() as conn:
        cursor = get_cursor(conn, integ.organization_id, integ.integration_id, STATES_STREAM)
    return resumed_or_new(
        cursor,
        scan.epoch,
        session.run.run_id,
        run.sync_id,
        resumed=run.cursor_before is not None,
    )


def _keep_fetched_pages(writer: _BatchWriter, batch: _Batch) -> None:
    """Whole pages fetched before a failure are good: keep them, with their cursor, unless a
    batch write failed (a later cursor must never be committed over lost rows)."""
    try:
        writer.wait()
        if batch.pages and not writer.failed:
            writer.submit(batch.take())
            writer.wait()
    except Exception:  # the sync's own error is the one to report
        _log.error("batch_commit_after_failure_failed", exc_info=True)


#: what a batch write did: its upsert counts, the scan's end when the batch ended the listing,
#: and the listed states so far when it wrote states too
_Written = tuple[UpsertCounts, ScanEnd | None, ListedStates | None]


@dataclass(slots=True)
class _Pending:
    """A batch handed to the writer: its rows and the cursor after its last page."""

    rows: dict[str, dict[str, Any]]
    pages: int
    cursor_after: Any
    #: records of its pages that were rejected
    rejected: int = 0
    #: its last page ended a listing that ran to the end: the scan's deletions are judged with it
    completes: bool = False
    #: the states its pages carried, by external id (a listing with states)
    states: dict[str, dict[str, Any]] | None = None
    #: devices of its pages listed without their state
    without_state: list[str] | None = None


class _Batch:
    """Rows of whole pages awaiting one commit, deduplicated by external id (page shifts can
    serve a device twice, and Postgres refuses to upsert one key twice in a statement)."""

    def __init__(self, session: IntegrationSession) -> None:
        self.session = session
        self.rows: dict[str, dict[str, Any]] = {}
        self.states: dict[str, dict[str, Any]] = {}
        #: the pages carry their devices' states (a listing with states)
        self.with_states = False
        self.pages = 0
        self.rejected = 0
        self.cursor_after: Any = None

    def add(self, page: DevicePage) -> None:
        integ, now = self.session.integration, utc_now()
        for device in page.devices:
            self.rows[device.external_id] = device_row(
                device,
                organization_id=integ.organization_id,
                integration_id=integ.integration_id,
                run_id=self.session.run.run_id,
                request_id=page.request_id,
                now=now,
            )
        for state in page.states:
            self.states[state.external_id] = state_row(
                state,
                organization_id=integ.organization_id,
                integration_id=integ.integration_id,
                run_id=self.session.run.run_id,
                now=now,
            )
        self.pages += 1
        self.rejected += len(page.rejected)
        self.cursor_after = page.cursor_after

    def take(self, *, completes: bool = False) -> _Pending:
        pending = _Pending(self.rows, self.pages, self.cursor_after, self.rejected, completes)
        if self.with_states:
            pending.states = self.states
            pending.without_state = [i for i in self.rows if i not in self.states]
        self.rows, self.states, self.pages, self.rejected = {}, {}, 0, 0
        return pending


class _BatchWriter:
    """Commits batches on one background thread, so batch N is written while batch N+1 is
    fetched and built (psycopg and sqlite3 release the GIL while the database works).

    Up to `WRITER_QUEUE` batches are handed over and not yet counted (one being written, the
    next waiting: a batch that commits slowly does not stop the fetching and building), and
    batches commit in order, each in one transaction with its cursor and the activity rows
    recorded since the previous hand-over. Once a write fails nothing more is written — a
    batch queued behind it writes nothing, `submit` and `wait` raise that failure — so the
    cursor never passes rows that were not stored.
    """

    def __init__(self, session: IntegrationSession, run: SyncRun, scan: ScanEpoch) -> None:
        self.session = session
        self.run = run
        self.scan = scan
        self.failed = False
        #: a listing with states: what the committed batches stored of them (else None)
        self.listed: ListedStates | None = None
        #: the scan's end, once the batch that ended the listing committed
        self.scan_end: ScanEnd | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inventory-writer")
        self._in_flight: deque[tuple[_Pending, Future[_Written]]] = deque()
        #: a write failed (set on the writer's thread, which runs the writes one after another)
        self._broken = False
        #: the listed states as the last committed write left them, kept on the writer's thread:
        #: the next write builds on it even before the main thread has counted that one
        self._listed_written: ListedStates | None = None

    def submit(self, batch: _Pending) -> None:
        while len(self._in_flight) >= WRITER_QUEUE:
            self._settle_oldest()
        if self.failed:
            raise RuntimeError("an earlier batch failed to commit; no later batch may be written")
        activity = self.session.recorder.take_buffered()
        # copy_context: the writer's log lines carry the run's bound fields
        future = self._pool.submit(contextvars.copy_context().run, self._write, batch, activity)
        self._in_flight.append((batch, future))

    def wait(self) -> None:
        """Wait for the batches handed over; count them, or raise why one failed."""
        while self._in_flight:
            self._settle_oldest()

    def _settle_oldest(self) -> None:
        batch, future = self._in_flight.popleft()
        try:
            written, scan_end, listed = future.result()
        except BaseException:
            if self.failed:  # queued behind the batch that failed: it wrote nothing
                return
            self.failed = True
            raise
        counts = self.run.counts
        counts.created += written.created
        counts.updated += written.updated
        counts.unchanged += written.unchanged
        self.run.cursor_after = batch.cursor_after
        if listed is not None:
            self.listed = listed
        if scan_end is not None:
            self.scan_end = scan_end
            counts.deleted += scan_end.deleted
            self.run.annotate(deletions_held=scan_end.held, active_devices=scan_end.active)
            report_scan_end(self.session, scan_end)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _write(self, batch: _Pending, activity: list[ActivityRow]) -> _Written:
        session, recorder = self.session, self.session.recorder
        integ = session.integration
        if self._broken:
            recorder.put_back(activity)
            raise RuntimeError("an earlier batch failed to commit; no later batch may be written")
        try:
            with (
                otel.span(
                    "batch_write devices",
                    {
                        "db.system.name": session.store.dialect,
                        "db.operation.name": "upsert",
                        "db.collection.name": "devices",
                        "sync_pipelines.rows": len(batch.rows),
                        "sync_pipelines.pages": batch.pages,
                    },
                ),
                session.store.transaction() as conn,
            ):
                self.run.fence(conn)  # a sync whose lease was taken over writes nothing
                written = upsert_devices(conn, list(batch.rows.values()))
                resolve_synced(session, conn, STREAM, list(batch.rows))
                set_cursor(
                    conn,
                    integ.organization_id,
                    integ.integration_id,
                    STREAM,
                    batch.cursor_after,
                    session.run.run_id,
                )
                scan_end = self.scan.commit_batch(
                    conn,
                    batch.rows,
                    rejected=batch.rejected,
                    cursor_after=batch.cursor_after,
                    completes=batch.completes,
                )
                listed = self._write_states(conn, batch)
                if activity:
                    recorder.sink.insert_within(conn, activity)
        except BaseException:
            self._broken = True
            # not lost: the recorder writes them in a transaction of their own on its next flush
            recorder.put_back(activity)
            raise
        if listed is not None:
            self._listed_written = listed  # committed: the next batch's states build on it
        _log.debug(
            "batch_committed",
            rows=len(batch.rows),
            pages=batch.pages,
            cursor_after=batch.cursor_after,
        )
        return written, scan_end, listed

    def _write_states(self, conn: Connection, batch: _Pending) -> ListedStates | None:
        """A listing with states: the batch's states, in its transaction, and the record the
        state sync of this run finds them by (the `device_states` cursor)."""
        before = self._listed_written or self.listed
        if before is None or batch.states is None:
            return None
        session, integ = self.session, self.session.integration
        states = [row for key, row in batch.states.items() if key in batch.rows]
        written = upsert_device_states(conn, states)
        resolve_synced(session, conn, STATES_STREAM, [row["external_id"] for row in states])
        listed = before.after_batch(
            run_id=session.run.run_id,
            sync_id=self.run.sync_id,
            pages=batch.pages,
            states=len(states),
            created=written.created,
            updated=written.updated,
            unchanged=written.unchanged,
            without_state=batch.without_state or [],
            completes=batch.completes,
        )
        set_cursor(
            conn,
            integ.organization_id,
            integ.integration_id,
            STATES_STREAM,
            listed.to_cursor(),
            session.run.run_id,
        )
        return listed


def _record_rejected(session: IntegrationSession, page: DevicePage) -> None:
    """Each rejected record: an activity row and a dead letter holding its whole payload."""
    recorder = session.recorder
    for rejected in page.rejected:
        row = recorder.new_row(
            RECORD_REJECTED,
            status="failed",
            request_id=page.request_id,
            error_type=rejected.error_type,
            error_message=rejected.error_message,
            metadata={
                "external_id": rejected.external_id,
                "page": page.page_number,
                "payload": _bounded(rejected.payload),
            },
        )
        row.completed_at = row.created_at
        recorder.record(row)
        _log.warning(
            "record_rejected",
            external_id=rejected.external_id,
            page=page.page_number,
            request_id=page.request_id,
            error={"type": rejected.error_type, "message": rejected.error_message},
        )
    dead_letter(
        session,
        [
            FailedRecord(
                stream=STREAM,
                dedupe_key=r.external_id or payload_key(r.payload),
                error_type=r.error_type,
                error_message=r.error_message,
                payload=r.payload,
                external_id=r.external_id,
                request_id=page.request_id,
            )
            for r in page.rejected
        ],
    )


def _bounded(payload: Any, limit: int = 4000) -> Any:
    text = json.dumps(payload, default=str)
    return payload if len(text) <= limit else text[:limit] + "…"
