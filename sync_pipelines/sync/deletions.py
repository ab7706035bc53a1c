"""Deletions from complete inventory scans, and the mass-deletion guard.

Every inventory scan is an epoch: it starts when a sync begins without a cursor and completes
when the page that ends the listing (`cursor_after` None) is committed. Its id travels with the
cursor (integration_sync_state), so a scan resumed after a kill is the same epoch. Each batch
commits the ids it saw as 64-bit digests (`device_scan_seen`, 8 bytes a device) — unchanged
devices are not rewritten to say "seen". In the transaction of the scan's last batch, the
integration's active devices stored before the scan began and not seen by it are the deletions.

Which scans are complete: every provider's `list_devices` lists the whole inventory (Golioth's
pages, AWS ListThings, Azure's twin query, MQTT's retained `meta` set); the cursor only resumes
an interrupted listing, none is incremental by time. So a scan is complete when its listing
ended normally. It deletes nothing when it is partial — a record of it was rejected (that device
may exist), or it resumed a cursor stored before epochs existed — or when it fails (the cursor
kept after a failure still ends the epoch, without deletions).

The guard: a scan that would delete more than `max_delete_fraction` of the active inventory
applies none of it; the deletions are held (`held_deletions`), a `deletion_guard_tripped`
activity row is recorded, the inventory-volume check fails and an alert is raised.
`sync-pipelines devices confirm-deletions INTEGRATION` applies exactly the held set, once. The
next complete scan replaces a hold it has not been confirmed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.clock import utc_now
from sync_pipelines.observability import metrics
from sync_pipelines.observability.activity import (
    DELETION_GUARD_TRIPPED,
    DELETIONS_CONFIRMED,
    ActivityRecorder,
    ActivityScope,
)
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.providers.settings import IntegrationSettings
from sync_pipelines.store.deletions import (
    ScanState,
    active_ids_stored_before,
    apply_held_deletions,
    drop_held_deletions,
    forget_seen,
    get_scan_state,
    hold_deletions,
    record_seen,
    seen_digests,
    set_scan_state,
)
from sync_pipelines.store.device_changes import set_change_source
from sync_pipelines.store.devices import count_devices
from sync_pipelines.store.integrations import Integration
from sync_pipelines.sync.integration_config import integration_settings
from sync_pipelines.sync.seen_ids import SeenIds, pack_digests
from sync_pipelines.sync.session import IntegrationSession

DEFAULT_MAX_DELETE_FRACTION = IntegrationSettings.model_fields["max_delete_fraction"].default
#: active device ids read per query at the end of a scan
_ID_PAGE = 5000

_log = get_logger("sync.deletions")


def max_delete_fraction(integration: Integration) -> float:
    """The integration's `max_delete_fraction` (typed setting: 0 < x ≤ 1, default 0.2)."""
    return integration_settings(integration).max_delete_fraction


@dataclass(frozen=True, slots=True)
class ScanEnd:
    """What the end of a scan did about deletions."""

    epoch: str
    #: the scan listed everything and nothing of it was rejected: deletions were judged
    judged: bool = False
    deleted: int = 0
    #: deletions held by the guard (0 when it did not trip)
    held: int = 0
    #: active devices before the deletions
    active: int = 0
    max_delete_fraction: float = DEFAULT_MAX_DELETE_FRACTION


class ScanEpoch:
    """The scan a sync of the devices stream belongs to; `commit_batch` runs in each batch's
    transaction."""

    def __init__(self, session: IntegrationSession, stream: str, state: ScanState) -> None:
        self.session = session
        self.stream = stream
        self.state = state
        self._dropped_old = False

    @classmethod
    def begin(cls, session: IntegrationSession, stream: str, cursor_before: Any) -> ScanEpoch:
        """A new epoch when the sync starts a listing; the stored one when it resumes."""
        integ = session.integration
        max_delete_fraction(integ)  # a bad setting fails the sync before it lists anything
        fresh = ScanState(uuid.uuid4().hex, utc_now(), partial=False)
        if cursor_before is None:
            return cls(session, stream, fresh)
        with session.store.connect() as conn:
            stored = get_scan_state(conn, integ.organization_id, integ.integration_id, stream)
        if stored.epoch is None or stored.started_at is None:
            # a cursor from before scan epochs: the start of this scan was not recorded as seen
            return cls(session, stream, ScanState(fresh.epoch, fresh.started_at, partial=True))
        return cls(session, stream, stored)

    @property
    def epoch(self) -> str:
        assert self.state.epoch is not None
        return self.state.epoch

    def commit_batch(
        self,
        conn: Connection,
        seen: Iterable[str],
        *,
        rejected: int,
        cursor_after: Any,
        completes: bool,
    ) -> ScanEnd | None:
        """Record the batch's seen ids and the epoch with its cursor (call after `set_cursor`);
        at the end of the listing, apply or hold the scan's deletions."""
        integ = self.session.integration
        o, i = integ.organization_id, integ.integration_id
        if rejected and not self.state.partial:
            self.state = ScanState(self.state.epoch, self.state.started_at, partial=True)
        if not self._dropped_old:  # seen ids of a scan abandoned before it ended
            forget_seen(conn, o, i, except_epoch=self.epoch)
            self._dropped_old = True
        if cursor_after is not None:
            if not self.state.partial:  # a partial scan's seen ids are never read
                record_seen(conn, o, i, self.epoch, pack_digests(seen))
            set_scan_state(conn, o, i, self.stream, self.state)
            return None
        # the listing ended: the epoch with it
        end = ScanEnd(self.epoch)
        if completes and not self.state.partial:
            end = self._judge(conn, seen)
        forget_seen(conn, o, i)
        set_scan_state(conn, o, i, self.stream, ScanState(None, None, False))
        return end

    def _judge(self, conn: Connection, last_seen: Iterable[str]) -> ScanEnd:
        integ, run_id = self.session.integration, self.session.run.run_id
        o, i = integ.organization_id, integ.integration_id
        fraction = max_delete_fraction(integ)
        seen = SeenIds()
        seen.add(last_seen)
        for packed in seen_digests(conn, o, i, self.epoch):
            seen.add_digests(packed)
        # a complete scan supersedes an earlier hold nobody confirmed
        drop_held_deletions(conn, o, i)
        now = utc_now()
        assert self.state.started_at is not None
        missing, after = 0, ""
        while ids := active_ids_stored_before(conn, o, i, self.state.started_at, after, _ID_PAGE):
            gone = seen.missing(ids)
            if gone:
                hold_deletions(conn, o, i, self.epoch, gone, now)
                missing += len(gone)
            after = ids[-1]
        active = count_devices(conn, o, i)
        end = ScanEnd(self.epoch, judged=True, active=active, max_delete_fraction=fraction)
        if missing == 0:
            return end
        if missing > fraction * active:
            return ScanEnd(
                self.epoch, judged=True, held=missing, active=active, max_delete_fraction=fraction
            )
        set_change_source(conn, "deletion_scan")  # the devices' history (sql/027)
        deleted = apply_held_deletions(conn, o, i, run_id=run_id, now=now)
        return ScanEnd(
            self.epoch, judged=True, deleted=deleted, active=active, max_delete_fraction=fraction
        )


def report_scan_end(session: IntegrationSession, end: ScanEnd) -> None:
    """After the commit: count what was deleted; a tripped guard is recorded and alerted, and a
    scan that judged deletions without tripping it resolves an earlier guard alert."""
    integ = session.integration
    if end.deleted:
        metrics.devices_deleted(integ.provider, "scan", end.deleted)
        _log.info("devices_deleted", deleted=end.deleted, active=end.active, scan_epoch=end.epoch)
    if end.held:
        _guard_tripped(session, end)
    elif end.judged:
        _resolve_guard_alert(session, reason="a later complete scan superseded the held deletions")


def _guard_tripped(session: IntegrationSession, end: ScanEnd) -> None:
    integ, recorder = session.integration, session.recorder
    figures: Mapping[str, Any] = {
        "would_delete": end.held,
        "active": end.active,
        "fraction": round(end.held / end.active, 4) if end.active else None,
        "max_delete_fraction": end.max_delete_fraction,
        "scan_epoch": end.epoch,
    }
    row = recorder.new_row(
        DELETION_GUARD_TRIPPED,
        direction="internal",
        status="failed",
        error_type="deletion_guard",
        error_message=(
            f"the scan would delete {end.held} of {end.active} devices, more than "
            f"max_delete_fraction {end.max_delete_fraction}: held until "
            f"`sync-pipelines devices confirm-deletions {integ.integration_id}`"
        ),
        metadata=dict(figures),
    )
    row.completed_at = row.created_at
    recorder.record(row)
    metrics.deletion_guard_tripped(integ.provider)
    _log.warning("deletion_guard_tripped", **figures)
    from sync_pipelines.alerts.deletion_guard import deletion_guard_condition
    from sync_pipelines.alerts.incidents import raise_alert

    try:
        raise_alert(
            session.store,
            deletion_guard_condition(
                organization_id=integ.organization_id,
                integration_id=integ.integration_id,
                run_id=session.run.run_id,
                would_delete=end.held,
                active=end.active,
                max_delete_fraction=end.max_delete_fraction,
                scan_epoch=end.epoch,
            ),
            _alert_settings(),
            now=utc_now(),
        )
    except (
        Exception
    ):  # the hold is recorded and the check fails: an alert channel must not fail the sync
        _log.error("deletion_guard_alert_failed", exc_info=True)


def _resolve_guard_alert(session: IntegrationSession, *, reason: str) -> None:
    resolve_guard_alert(session.store, session.integration, reason=reason)


def resolve_guard_alert(store: Any, integration: Integration, *, reason: str) -> None:
    from sync_pipelines.alerts.deletion_guard import deletion_guard_key
    from sync_pipelines.alerts.incidents import clear_alert

    try:
        clear_alert(
            store,
            integration.organization_id,
            deletion_guard_key(integration.integration_id),
            _alert_settings(),
            now=utc_now(),
            reason=reason,
        )
    except Exception:
        _log.error("deletion_guard_alert_resolve_failed", exc_info=True)


def _alert_settings() -> Any:
    from sync_pipelines.alerts.settings import AlertSettings

    return AlertSettings.from_env()


@dataclass(frozen=True, slots=True)
class Confirmed:
    deleted: int
    held: int
    epoch: str | None
    held_at: datetime | None
    #: the `deletions_confirmed` activity row (None when nothing was held)
    activity_id: str | None = None


def confirm_deletions(
    store: Any, integration: Integration, *, run_id: str | None = None
) -> Confirmed:
    """Apply the deletions the guard held for the integration, once (the hold is then gone), and
    record who did it: one `deletions_confirmed` activity row naming the count and the scan
    epoch, in the same transaction. `run_id` (default: a new `cli-…` id, the operator's action)
    goes on the row and on the deleted devices."""
    from sync_pipelines.store.deletions import held_deletions
    from sync_pipelines.sync.activity_sink import StoreActivitySink

    o, i = integration.organization_id, integration.integration_id
    store = store.scoped(o)
    run_id = run_id or f"cli-{uuid.uuid4()}"
    recorder = ActivityRecorder(
        StoreActivitySink(store),
        ActivityScope(o, i, run_id=run_id, step_key="cli_confirm_deletions", job_name="cli"),
    )
    with store.transaction() as conn:
        hold = held_deletions(conn, o, i)
        if not hold.count:
            return Confirmed(0, 0, hold.epoch, hold.held_at)
        set_change_source(conn, "operator")  # the devices' history (sql/027)
        deleted = apply_held_deletions(conn, o, i, run_id=run_id, now=utc_now())
        row = recorder.new_row(
            DELETIONS_CONFIRMED,
            status="success",
            metadata={
                "deleted": deleted,
                "held": hold.count,
                "scan_epoch": hold.epoch,
                "held_at": hold.held_at.isoformat() if hold.held_at else None,
                "by": "cli",
            },
        )
        row.completed_at = row.created_at
        recorder.record(row)
        recorder.sink.insert_within(conn, recorder.take_buffered())
    metrics.devices_deleted(integration.provider, "confirmed", deleted)
    resolve_guard_alert(store, integration, reason=f"{deleted} held deletions confirmed")
    return Confirmed(deleted, hold.count, hold.epoch, hold.held_at, activity_id=row.id)
