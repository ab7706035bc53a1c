"""Shape drift: each sync compares the shape of what the provider sent — the devices' attributes
(stream `devices`) and their reported and desired state (stream `device_states`) — with the
integration's last known shape of that stream (`integration_shapes`, sql/028), and says when it
changed. Shapes, paths and types: sync/shapes.py.

- The first sync of a stream records its shape as the baseline, without an event. A baseline
  from an incomplete observation (a resumed scan, a webhook batch) grows silently until the
  first complete one: a key it did not see may have been there all along.
- A sync that saw a difference — a key path added or removed, a path whose JSON types changed —
  writes ONE `shape_changed` activity row listing every difference (an attribute renamed at the
  provider is one row: one path removed, one added), which the integration's timeline shows, and
  its shape becomes the baseline. An unchanged re-sync writes nothing but who judged it last.
- Removals are judged from complete observations only: a whole inventory scan that started in
  this sync, ran to the end and rejected no record (sync/deletions.py's judged scan); a state
  sync that read every device's state. An incremental poll, a webhook batch, a resumed or failed
  scan only adds to the shape (a key seen on none of the devices it saw may be on the others).
- The shape is the union over the devices seen: a key on some devices only is part of it, and
  is removed only when no device of a complete scan has it.

What a change does besides its row is the integration's `shape_drift_policy` (typed setting,
default `alert`):
- `ignore`: nothing more (the change is recorded as accepted by the policy);
- `alert`: an alert incident `shape_drift:<integration>` (warning) through the alert machinery,
  deduplicated like every alert: a later change while it is open counts an occurrence;
- `pause`: the alert (critical), and the integration is disabled (enabled = false) in the same
  transaction as the change, with a `config_change` row (action `pause`) saying why and how to
  resume: `sync-pipelines integrations enable --organization ORG --id ID`. Schedules and sensors
  sync only enabled integrations, so no further sync runs until then.

Until an operator accepts it — `sync-pipelines integrations accept-shape`, or enabling a paused
integration — the change is unacknowledged and the check `device_shape_stable` fails
(checks/shape_drift.py); accepting resolves the alert.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import ConfigError, FencedError
from sync_pipelines.observability.activity import (
    CONFIG_CHANGE,
    SHAPE_ACCEPTED,
    SHAPE_CHANGED,
    ActivityRecorder,
    ActivityRow,
    ActivityScope,
    NullSink,
    redact_row,
)
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.providers.contract import DeviceRecord, DeviceState
from sync_pipelines.store.activity import activity_values, insert_activity_rows
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.shapes import (
    StoredShape,
    acknowledge_changes,
    disable_integration,
    get_shape,
    record_baseline,
    record_change,
    record_judged,
)
from sync_pipelines.sync.integration_config import integration_settings
from sync_pipelines.sync.session import IntegrationSession
from sync_pipelines.sync.shapes import (
    ShapeDiff,
    ShapeObserver,
    compare,
    shape_from_json,
    shape_to_json,
)
from sync_pipelines.sync.sync_run import SyncRun

IGNORE, ALERT, PAUSE = "ignore", "alert", "pause"
DEFAULT_POLICY = ALERT

_log = get_logger("sync.shape_drift")


def resume_command(integration: Integration) -> str:
    return (
        f"sync-pipelines integrations enable --organization {integration.organization_id} "
        f"--id {integration.integration_id}"
    )


def accept_command(integration: Integration) -> str:
    return (
        f"sync-pipelines integrations accept-shape --organization {integration.organization_id} "
        f"--id {integration.integration_id}"
    )


class ShapeWatch:
    """What one sync sees of one stream's shape. Call `devices` / `states` with what it fetched,
    `incomplete()` when it saw only some devices, then `judge` after its writes."""

    def __init__(self, stream: str, *, complete: bool = True) -> None:
        self.stream = stream
        self.observer = ShapeObserver()
        self.complete = complete

    def devices(self, records: Iterable[DeviceRecord]) -> None:
        observe = self.observer.observe
        for record in records:
            observe("attributes", record.attributes)

    def states(self, states: Iterable[DeviceState]) -> None:
        observe = self.observer.observe
        for state in states:
            observe("reported", state.reported)
            observe("desired", state.desired)

    def incomplete(self) -> None:
        self.complete = False


@dataclass(frozen=True, slots=True)
class ShapeChange:
    """A change a sync found, and what its policy did."""

    stream: str
    diff: ShapeDiff
    policy: str
    activity_id: str
    complete: bool
    paused: bool = False


def drift_policy(integration: Integration) -> str:
    """The integration's `shape_drift_policy` (default `alert`)."""
    return str(integration_settings(integration).shape_drift_policy)


def judge(session: IntegrationSession, run: SyncRun, watch: ShapeWatch) -> ShapeChange | None:
    """Compare what the sync saw with the stream's baseline, record the outcome (in one
    transaction: the new baseline, the `shape_changed` row, a pause) and, after the commit, raise
    the alert the policy asks for. Nothing seen (an empty inbox batch): nothing judged. A failure
    here is logged, never the sync's: its devices are stored (a lost lease still fences it)."""
    try:
        return _judge(session, run, watch)
    except FencedError:
        raise
    except Exception:
        _log.error("shape_drift_failed", stream=watch.stream, exc_info=True)
        return None


def _judge(session: IntegrationSession, run: SyncRun, watch: ShapeWatch) -> ShapeChange | None:
    observer = watch.observer
    if not observer.documents:
        return None
    integ = session.integration
    try:
        policy = drift_policy(integ)
    except ConfigError:  # the sync checked the settings already; never let this fail a sync
        policy = DEFAULT_POLICY
    complete = watch.complete and not observer.truncated
    seen = observer.shape
    now = utc_now()
    with session.store.transaction() as conn:
        run.fence(conn)
        stored = get_shape(conn, integ.organization_id, integ.integration_id, watch.stream)
        if stored is None:
            record_baseline(
                conn,
                integ.organization_id,
                integ.integration_id,
                watch.stream,
                shape_to_json(seen),
                sync_id=run.sync_id,
                now=now,
                complete=complete,
            )
            run.annotate(**{f"{watch.stream}_shape_paths": len(seen)})
            return None
        baseline = shape_from_json(stored.shape)
        if not stored.baseline_complete:
            # a baseline from some devices only: what else is seen was there all along, as far
            # as anyone can tell — added without an event until a complete observation
            _diff, new = compare(baseline, seen, complete=False)
            record_judged(
                conn,
                stored,
                shape_to_json(seen if complete else new),
                sync_id=run.sync_id,
                now=now,
                complete_baseline=complete,
            )
            return None
        diff, new = compare(baseline, seen, complete=complete)
        record_judged(
            conn,
            stored,
            shape_to_json(new) if new != baseline else None,
            sync_id=run.sync_id,
            now=now,
        )
        if not diff:
            return None
        change = _record(conn, session, run, stored, diff, policy, complete, now)
    run.annotate(**{f"{watch.stream}_shape_changes": diff.count})
    _log.warning(
        "shape_changed",
        stream=watch.stream,
        policy=policy,
        complete=complete,
        added=len(diff.added),
        removed=len(diff.removed),
        changed=len(diff.changed),
        differences=diff.summary(),
        paused=change.paused,
    )
    if policy != IGNORE:
        _alert(session, change)
    return change


def _record(
    conn: Connection,
    session: IntegrationSession,
    run: SyncRun,
    stored: StoredShape,
    diff: ShapeDiff,
    policy: str,
    complete: bool,
    now: Any,
) -> ShapeChange:
    integ = session.integration
    row = session.recorder.new_row(
        SHAPE_CHANGED,
        status="success",
        metadata={
            "stream": stored.stream,
            "sync_id": run.sync_id,
            "policy": policy,
            "complete": complete,
            "differences": diff.count,
            **diff.to_json(),
            "summary": diff.summary(),
        },
    )
    row.completed_at = row.created_at
    rows = [row]
    # paused now, or already (by the other stream of the same sync, or by hand): either way the
    # change waits for `integrations enable`; the pause itself is recorded once
    paused = policy == PAUSE
    if paused and disable_integration(conn, integ.organization_id, integ.integration_id, now=now):
        rows.append(_pause_row(integ, stored.stream, diff, row.id))
    record_change(
        conn,
        stored,
        activity_id=row.id,
        policy=policy,
        change=diff.to_json(),
        now=now,
        paused=paused,
    )
    _insert(conn, rows)  # written even when the run's activity log is off (NullSink)
    return ShapeChange(stored.stream, diff, policy, row.id, complete, paused)


def pause_reason(integration: Integration, stream: str, diff: ShapeDiff | None = None) -> str:
    what = f": {diff.summary(3)}" if diff else ""
    return (
        f"paused for shape drift: the shape of {stream} changed{what}. Check the provider's "
        f"change; resume with `{resume_command(integration)}`"
    )


def _pause_row(integ: Integration, stream: str, diff: ShapeDiff, change_id: str) -> ActivityRow:
    recorder = ActivityRecorder(
        NullSink(), ActivityScope(integ.organization_id, integ.integration_id)
    )
    row = recorder.new_row(
        CONFIG_CHANGE,
        status="success",
        metadata={
            "action": "pause",
            "provider": integ.provider,
            "changed": ["enabled"],
            "actor": "shape_drift_policy",
            "reason": pause_reason(integ, stream, diff),
            "resume": resume_command(integ),
            "shape_changed_id": change_id,
        },
    )
    row.completed_at = row.created_at
    return row


def _alert(session: IntegrationSession, change: ShapeChange) -> None:
    from sync_pipelines.alerts.incidents import raise_alert
    from sync_pipelines.alerts.settings import AlertSettings
    from sync_pipelines.alerts.shape_drift import shape_drift_condition

    integ = session.integration
    try:
        raise_alert(
            session.store,
            shape_drift_condition(
                integ,
                run_id=session.run.run_id,
                stream=change.stream,
                diff=change.diff,
                paused=change.paused,
                activity_id=change.activity_id,
                accept=resume_command(integ) if change.paused else accept_command(integ),
            ),
            AlertSettings.from_env(),
            now=utc_now(),
        )
    except Exception:  # the change is recorded and the check fails: a channel must not fail a sync
        _log.error("shape_drift_alert_failed", exc_info=True)


def accept_within(conn: Connection, integration: Integration, *, by: str) -> int:
    """In the caller's transaction: accept the integration's unacknowledged shape changes and
    clear a drift pause, with a `shape_accepted` row; the number of streams accepted."""
    accepted = acknowledge_changes(
        conn, integration.organization_id, integration.integration_id, by=by, now=utc_now()
    )
    if not accepted:
        return 0
    recorder = ActivityRecorder(
        NullSink(), ActivityScope(integration.organization_id, integration.integration_id)
    )
    row = recorder.new_row(
        SHAPE_ACCEPTED,
        status="success",
        metadata={
            "by": by,
            "streams": [s.stream for s in accepted],
            "shape_changed_ids": [s.change_activity_id for s in accepted],
        },
    )
    row.completed_at = row.created_at
    _insert(conn, [row])
    return len(accepted)


def _insert(conn: Connection, rows: list[ActivityRow]) -> None:
    for row in rows:
        redact_row(row)
    insert_activity_rows(conn, [activity_values(r) for r in rows])


def resolve_drift_alert(store: Store, integration: Integration, *, reason: str) -> None:
    """After the commit that accepted the change: resolve the open drift alert, if any."""
    from sync_pipelines.alerts.incidents import clear_alert
    from sync_pipelines.alerts.settings import AlertSettings
    from sync_pipelines.alerts.shape_drift import shape_drift_key

    try:
        clear_alert(
            store,
            integration.organization_id,
            shape_drift_key(integration.integration_id),
            AlertSettings.from_env(),
            now=utc_now(),
            reason=reason,
        )
    except Exception:
        _log.error("shape_drift_alert_resolve_failed", exc_info=True)


def accept_shape_changes(store: Store, integration: Integration, *, by: str) -> int:
    """Accept the integration's shape changes (the CLI's `integrations accept-shape`): the check
    passes again and the alert is resolved. Returns the number of streams accepted."""
    with store.scoped(integration.organization_id).transaction() as conn:
        accepted = accept_within(conn, integration, by=by)
    if accepted:
        resolve_drift_alert(store, integration, reason=f"shape change accepted by {by}")
    return accepted
