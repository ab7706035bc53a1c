"""Export: push desired-state changes made on our side to the provider, with conflict detection.

A change remembers the provider's state version we had last synced (`base_version`). At push
time the provider's current state is read: if its version moved, both sides changed since the
last sync — a conflict. Every conflict is recorded (`sync_conflicts` + a `conflict` activity
row) and resolved by the integration's `conflict_resolution` setting: `provider_wins` (the
default: our change is set aside and our copy takes the provider's state) or `local_wins` (our
change is pushed over the provider's, against its current version). The push itself is
conditional on the version too (shadow version, twin etag), so a writer racing us between the
read and the write is a conflict as well, never a silent overwrite.

Several pending changes for one device are merged (JSON merge patch, oldest first) into one push.
Changes that fail (the device's state unreadable, the push refused) are dead-lettered — payload:
their ids and merged patch — and replayed by setting them back to pending; a change that is
later pushed (or settled as a conflict) resolves its letter.

Each device's outcome (the changes' status, the conflict, the stored state, the dead letter) is
one transaction fenced by the export's lease, and the lease is checked again just before each
push: an export that stalled past its lease, taken over by a newer one, pushes and writes nothing
more and ends `fenced`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import ConfigError, ConflictError, SyncError
from sync_pipelines.observability.activity import CONFLICT as CONFLICT_ACTIVITY
from sync_pipelines.observability.activity import DESIRED_PUSH, EXPORT
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.observability.redaction import redact_text
from sync_pipelines.providers.contract import DeviceState, Provider
from sync_pipelines.store.dead_letters import FailedRecord
from sync_pipelines.store.desired import (
    CONFLICT,
    FAILED,
    LOCAL_WINS,
    PROVIDER_WINS,
    PUSHED,
    PendingChange,
    finish_change,
    pending_changes,
    record_conflict,
)
from sync_pipelines.store.device_changes import set_change_source
from sync_pipelines.store.devices import upsert_device_states
from sync_pipelines.sync.failed_records import dead_letter, resolve_synced
from sync_pipelines.sync.integration_config import integration_settings
from sync_pipelines.sync.records import state_row
from sync_pipelines.sync.results import SyncResult
from sync_pipelines.sync.session import IntegrationSession
from sync_pipelines.sync.sync_run import SyncRun

STREAM = "desired_exports"
DEFAULT_BATCH_SIZE = 100

_log = get_logger("sync.export")


def merge_patch(target: Any, patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch: objects merge recursively, `null` deletes a member."""
    merged = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping):
            merged[key] = merge_patch(merged.get(key), value)
        else:
            merged[key] = value
    return merged


def conflict_resolution_of(session: IntegrationSession) -> str:
    """The integration's `conflict_resolution` (a ConfigError names a bad one)."""
    return integration_settings(session.integration).conflict_resolution


def export_desired_states(
    session: IntegrationSession, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> SyncResult:
    """Push every pending desired change of the integration. Records, then re-raises, a failure."""
    with SyncRun(session, STREAM, EXPORT, log=_log) as run:
        rule = conflict_resolution_of(session)
        run.annotate(conflict_resolution=rule)
        with session.open_provider() as provider:
            if not provider.supports_desired:
                raise ConfigError(
                    session.integration.integration_id,
                    f"provider {provider.name} has no desired state to export to",
                )
            _Exporter(session, provider, run, rule).export_all(batch_size)
    return run.result


class _Exporter:
    def __init__(
        self, session: IntegrationSession, provider: Provider, run: SyncRun, rule: str
    ) -> None:
        self.session, self.provider, self.run, self.rule = session, provider, run, rule
        integ = session.integration
        self.org, self.integration_id = integ.organization_id, integ.integration_id
        self.run_id = session.run.run_id

    def export_all(self, batch_size: int) -> None:
        while True:
            with self.session.store.connect() as conn:
                changes = pending_changes(conn, self.org, self.integration_id, batch_size)
            if not changes:
                return
            by_device: dict[str, list[PendingChange]] = {}
            for change in changes:
                by_device.setdefault(change.external_id, []).append(change)
            self.run.counts.pages += 1
            self.run.counts.fetched += len(changes)
            states, failures = self.provider.get_states(list(by_device))
            current = {s.external_id: s for s in states}
            for failure in failures:
                self._fail(
                    by_device[failure.external_id],
                    failure.error_type,
                    f"device {failure.external_id}: cannot read its state before pushing: "
                    f"{failure.error_message}",
                )
            for external_id, device_changes in by_device.items():
                if external_id in current:
                    self._export_device(external_id, device_changes, current[external_id])
            self.session.recorder.flush()

    def _export_device(
        self, external_id: str, changes: list[PendingChange], state: DeviceState
    ) -> None:
        patch = _merged_patch(changes)
        base_version = changes[0].base_version
        change_ids = [c.id for c in changes]
        with self.session.recorder.operation(
            DESIRED_PUSH,
            external_id=external_id,
            change_ids=change_ids,
            base_version=base_version,
            provider_version=state.version,
        ) as op:
            if merge_patch(state.desired, patch) == (state.desired or {}):
                # The provider already holds what we want (both sides made the same change).
                with self._commit() as conn:
                    self._finish(conn, changes, PUSHED, version_after=state.version)
                self.run.counts.unchanged += 1
                op.annotate(outcome="already_applied")
                return
            provider_moved = base_version is not None and state.version != base_version
            if provider_moved:
                self._conflict(external_id, changes, patch, state)
                op.annotate(outcome="conflict", resolution=self.rule)
                if self.rule == PROVIDER_WINS:
                    return
            # Without a base (a change made before the first state sync) the provider's current
            # version is the base: the write still fails if someone moves it under us.
            expected = state.version if provider_moved or base_version is None else base_version
            with self.session.store.transaction() as conn:
                self.run.fence(
                    conn
                )  # renewed just before the push: a stale exporter pushes nothing
            try:
                result = self.provider.push_desired(external_id, patch, expected_version=expected)
            except ConflictError as exc:
                self._conflict(external_id, changes, patch, state, race=str(exc))
                op.annotate(outcome="conflict", resolution=PROVIDER_WINS, race=True)
                return
            except SyncError as exc:
                self._fail(changes, exc.category, str(exc))
                op.annotate(outcome="failed", _status="failed")
                return
            desired = (
                result.desired if result.desired is not None else merge_patch(state.desired, patch)
            )
            with self._commit() as conn:
                self._finish(
                    conn,
                    changes,
                    PUSHED,
                    version_after=result.version,
                    request_id=result.request_id,
                )
                self._store_state(
                    conn,
                    state,
                    desired=desired,
                    version=result.version,
                    request_id=result.request_id,
                )
            self.run.counts.updated += 1
            op.annotate(outcome="pushed", version_after=result.version)

    def _conflict(
        self,
        external_id: str,
        changes: list[PendingChange],
        patch: dict[str, Any],
        state: DeviceState,
        race: str | None = None,
    ) -> None:
        # A push refused by the provider's own version check is always resolved provider-wins:
        # we no longer know the provider's state, the next state sync will bring it.
        resolution = PROVIDER_WINS if race else self.rule
        recorder = self.session.recorder
        message = (
            f"device {external_id}: desired state changed on both sides since the last sync "
            f"(our base version {changes[0].base_version}, provider now {state.version}); "
            f"resolved {resolution}"
        )
        if race:
            message = f"device {external_id}: the provider refused the conditional write ({race}); resolved {resolution}"
        with self._commit() as conn:
            conflict_id = record_conflict(
                conn,
                organization_id=self.org,
                integration_id=self.integration_id,
                external_id=external_id,
                change_id=changes[0].id,
                local_patch=patch,
                provider_desired=state.desired,
                base_version=changes[0].base_version,
                provider_version=state.version,
                resolution=resolution,
                run_id=self.run_id,
                request_id=state.request_id,
            )
            if resolution == PROVIDER_WINS:  # our change is set aside; our copy takes theirs
                self._finish(
                    conn,
                    changes,
                    CONFLICT,
                    error_type="conflict",
                    error_message=message,
                    request_id=state.request_id,
                )
                if not race:
                    self._store_state(
                        conn,
                        state,
                        desired=state.desired,
                        version=state.version,
                        request_id=state.request_id,
                    )
        row = recorder.new_row(
            CONFLICT_ACTIVITY,
            status="success",
            request_id=state.request_id,
            error_type="conflict",
            error_message=redact_text(message),
            metadata={
                "external_id": external_id,
                "conflict_id": conflict_id,
                "resolution": resolution,
                "change_ids": [c.id for c in changes],
            },
        )
        row.completed_at = row.created_at
        recorder.record(row)
        _log.warning(
            "desired_conflict",
            external_id=external_id,
            resolution=resolution,
            conflict_id=conflict_id,
        )
        self.run.counts.conflicts += 1

    def _fail(self, changes: list[PendingChange], error_type: str, message: str) -> None:
        first = changes[0]
        with self._commit() as conn:
            self._finish(conn, changes, FAILED, error_type=error_type, error_message=message)
            dead_letter(
                self.session,
                [
                    FailedRecord(
                        stream=STREAM,
                        dedupe_key=first.id,
                        source_id=first.id,
                        external_id=first.external_id,
                        error_type=error_type,
                        error_message=message,
                        payload={
                            "external_id": first.external_id,
                            "change_ids": [c.id for c in changes],
                            "patch": _merged_patch(changes),
                        },
                    )
                ],
                conn,
            )
        self.run.counts.failed += len(changes)
        _log.warning(
            "desired_push_failed",
            external_id=changes[0].external_id,
            error={"type": error_type, "message": message},
        )

    @contextmanager
    def _commit(self) -> Iterator[Connection]:
        """The transaction of one device's outcome, fenced: an exporter whose lease was taken
        over writes nothing (FencedError; the export ends `fenced`)."""
        with self.session.store.transaction() as conn:
            self.run.fence(conn)
            yield conn

    def _finish(
        self, conn: Connection, changes: list[PendingChange], status: str, **fields: Any
    ) -> None:
        if "error_message" in fields and fields["error_message"]:
            fields["error_message"] = redact_text(fields["error_message"])
        for change in changes:
            finish_change(conn, self.org, change.id, status=status, run_id=self.run_id, **fields)
        if status != FAILED:  # pushed, or settled as a conflict: nothing left to retry
            resolve_synced(self.session, conn, STREAM, [c.id for c in changes])

    def _store_state(
        self,
        conn: Connection,
        state: DeviceState,
        *,
        desired: Any,
        version: str | None,
        request_id: str | None,
    ) -> None:
        pushed = DeviceState(
            external_id=state.external_id,
            reported=state.reported,
            desired=desired,
            version=version,
            observed_at=utc_now(),
            request_id=request_id,
        )
        set_change_source(conn, "export")  # the devices' history (sql/027)
        upsert_device_states(
            conn,
            [
                state_row(
                    pushed,
                    organization_id=self.org,
                    integration_id=self.integration_id,
                    run_id=self.run_id,
                    now=utc_now(),
                )
            ],
        )


def _merged_patch(changes: list[PendingChange]) -> dict[str, Any]:
    """The changes' patches merged oldest first: what one push sends."""
    patch: dict[str, Any] = {}
    for change in changes:
        patch = merge_patch(patch, change.patch) if patch else dict(change.patch)
    return patch


__all__ = ["LOCAL_WINS", "PROVIDER_WINS", "export_desired_states", "merge_patch"]
