"""The device state sync: reported/desired documents for every device the store knows,
read from the provider in batches (bounded concurrency is the provider's job). A device whose
state cannot be read is dead-lettered; reading it fine later resolves its letter.

Where the provider can list many devices' states per call and the integration asks for it
(`Provider.lists_states`), the listing comes first and the per-device reads cover only what it
did not give, so a device missing from the listing still ends stored or dead-lettered.

Where this run's inventory sync already stored the states from the listing it read
(sync/listed_states.py), they are this sync's figures and only the devices it listed without a
state are read.

The shape of the states read is compared with the integration's last known one at the end
(sync/shape_drift.py): removals only when every device's state was read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import AuthError, ProviderError
from sync_pipelines.observability.activity import RECORD_REJECTED, STATE_IMPORT
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.providers.contract import DeviceState, Provider, StateFailure
from sync_pipelines.store.dead_letters import FailedRecord
from sync_pipelines.store.devices import device_ids_after, known_device_ids, upsert_device_states
from sync_pipelines.store.sync_state import set_cursor
from sync_pipelines.sync.failed_records import dead_letter, resolve_synced
from sync_pipelines.sync.listed_states import ListedStates
from sync_pipelines.sync.records import state_row
from sync_pipelines.sync.results import SyncResult
from sync_pipelines.sync.session import IntegrationSession
from sync_pipelines.sync.shape_drift import ShapeWatch, judge
from sync_pipelines.sync.sync_run import SyncRun

if TYPE_CHECKING:
    from sync_pipelines.sync.seen_ids import SeenIds

STREAM = "device_states"
DEFAULT_BATCH_SIZE = 200

_log = get_logger("sync.device_states")


def sync_device_states(
    session: IntegrationSession, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> SyncResult:
    with (
        SyncRun(session, STREAM, STATE_IMPORT, log=_log) as run,
        session.open_provider() as provider,
    ):
        with_devices = ListedStates.from_cursor(run.cursor_before)
        if with_devices is not None and with_devices.serves(session.run.run_id):
            # the inventory judged the listed states' shape; these few only add to it
            shapes = ShapeWatch(STREAM, complete=False)
            _states_listed_with_devices(session, run, provider, with_devices, batch_size, shapes)
        else:
            # every device the store knows is read: complete unless a read failed
            shapes = ShapeWatch(STREAM)
            listed = (
                _states_from_listing(session, run, provider, shapes)
                if provider.lists_states
                else None
            )
            _states_one_by_one(session, run, provider, batch_size, shapes, skip=listed)
        if run.counts.failed:
            shapes.incomplete()
        judge(session, run, shapes)
    return run.result


def _states_listed_with_devices(
    session: IntegrationSession,
    run: SyncRun,
    provider: Provider,
    listed: ListedStates,
    batch_size: int,
    shapes: ShapeWatch,
) -> None:
    """The states this run's inventory sync stored from its listing, counted as this sync's;
    the devices it listed without a state read one by one; then the record is cleared."""
    c = run.counts
    c.fetched, c.pages = listed.fetched, listed.pages
    c.created, c.updated, c.unchanged = listed.created, listed.updated, listed.unchanged
    run.annotate(states_from="device_listing", listing_sync_id=listed.sync_id)
    ids = list(listed.without_state)
    for start in range(0, len(ids), batch_size):
        states, failures = provider.get_states(ids[start : start + batch_size])
        _store_states(session, run, states, failures, shapes)
    integ = session.integration
    with session.store.transaction() as conn:
        run.fence(conn)
        set_cursor(
            conn, integ.organization_id, integ.integration_id, STREAM, None, session.run.run_id
        )


def _states_one_by_one(
    session: IntegrationSession,
    run: SyncRun,
    provider: Provider,
    batch_size: int,
    shapes: ShapeWatch,
    *,
    skip: SeenIds | None,
) -> None:
    """Every device the store knows, `batch_size` at a time, read device by device (but those in
    `skip`: their states came with the device list already)."""
    integ, store = session.integration, session.store
    after = ""
    while True:
        with store.connect() as conn:
            ids = device_ids_after(
                conn, integ.organization_id, integ.integration_id, after, batch_size
            )
        if not ids:
            return
        after = ids[-1]
        if skip is not None:
            ids = skip.missing(ids)
            if not ids:
                continue
        states, failures = provider.get_states(ids)
        _store_states(session, run, states, failures, shapes)


def _states_from_listing(
    session: IntegrationSession, run: SyncRun, provider: Provider, shapes: ShapeWatch
) -> SeenIds:
    """The states the provider lists, page by page, kept for the devices the store knows. What
    the listing could not give (a device listed without its state, one the provider no longer
    lists, a page that failed for good) is left to the per-device pass: the ids stored here are
    the ones it skips."""
    # imported here: numpy costs every CLI sync 60 ms and 12 MiB, and only this path needs it
    from sync_pipelines.sync.seen_ids import SeenIds

    integ, store = session.integration, session.store
    seen = SeenIds()
    try:
        for page in provider.list_states():
            with store.connect() as conn:
                known = set(
                    known_device_ids(
                        conn,
                        integ.organization_id,
                        integ.integration_id,
                        [s.external_id for s in page.states],
                    )
                )
            states = [s for s in page.states if s.external_id in known]
            _store_states(session, run, states, [], shapes)
            seen.add(s.external_id for s in states)
    except AuthError:
        raise  # the per-device reads would fail the same way
    except ProviderError as exc:
        _log.warning(
            "state_listing_failed",
            stored=len(seen),
            error={"type": exc.category, "message": str(exc)},
            note="the devices not stored yet are read one by one",
        )
    return seen


def _store_states(
    session: IntegrationSession,
    run: SyncRun,
    states: Sequence[DeviceState],
    failures: list[StateFailure],
    shapes: ShapeWatch,
) -> None:
    integ = session.integration
    now = utc_now()
    shapes.states(states)
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
    with session.store.transaction() as conn:
        run.fence(conn)  # a sync whose lease was taken over writes nothing
        written = upsert_device_states(conn, rows)
        resolve_synced(session, conn, STREAM, [s.external_id for s in states])
    c = run.counts
    c.pages += 1
    c.fetched += len(states) + len(failures)
    c.created += written.created
    c.updated += written.updated
    c.unchanged += written.unchanged
    c.failed += len(failures)
    _record_failures(session, failures)
    session.recorder.flush()


def _record_failures(session: IntegrationSession, failures: list[StateFailure]) -> None:
    """Each device whose state could not be read is an activity row naming it (the call's own
    row may well be a 200: an invalid shadow, a document that is not JSON) and a dead letter
    (replayed by reading the device's state again), both under the failed call's request id."""
    recorder, integration_id = session.recorder, session.integration.integration_id
    letters = []
    for failure in failures:
        message = failure.error_message
        if failure.external_id not in message:
            message = f"device {failure.external_id}: {message}"
        row = recorder.new_row(
            RECORD_REJECTED,
            status="failed",
            request_id=failure.request_id,
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
                request_id=failure.request_id,
            )
        )
    dead_letter(session, letters)
