"""What an operator does to dead letters by hand — replay named letters, quarantine them, put them
back in line — one implementation for the CLI (`sync-pipelines replay|quarantine|dead-letters
requeue`) and the console's buttons, each action leaving one `replay` activity row per letter
that names who did it (`metadata.by`: cli | console, `metadata.actor`: the operator).

A replay here is the replay job's own code (sync/replay.py) run on the named letters, due or not;
its per-letter outcome rows are written as the job's are, under the action's run id."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import SyncError
from sync_pipelines.observability.activity import REPLAY, ActivityScope, activity_row, redact_row
from sync_pipelines.store.database import Store
from sync_pipelines.store.dead_letters import (
    DeadLetter,
    DeadLetterSelection,
    due_letter_ids,
    list_dead_letters,
    quarantine_dead_letters,
    requeue_dead_letters,
)
from sync_pipelines.sync.activity_sink import StoreActivitySink
from sync_pipelines.sync.replay import REPLAYABLE_STREAMS, ReplayResult, replay_dead_letters
from sync_pipelines.sync.session import RunContext, integration_session

#: letters replayed per replay run (one claim transaction each)
REPLAY_CHUNK = 500

REPLAY_ACTION = "replay"
QUARANTINE_ACTION = "quarantine"
REQUEUE_ACTION = "requeue"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: `by` is the door (cli | console), `name` the operator (the console's operator
    name; the CLI's `cli:<SYNC_OPERATOR or login user>`, cli/context.py) and `run_id` the
    action's id, shared by its rows."""

    by: str
    name: str | None = None
    run_id: str = ""

    @classmethod
    def new(cls, by: str, name: str | None = None) -> Actor:
        return cls(by, name, f"{by}-{uuid.uuid4()}")


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    """One replay run of an integration's named letters, and the letters as they are after it."""

    integration_id: str
    result: ReplayResult
    letters: list[DeadLetter]


def replay_letters(
    store: Store, organization_id: str, letters: Sequence[DeadLetter], actor: Actor
) -> list[ReplayOutcome]:
    """Replay `letters` (one organization's) now, due or not: per integration, chunk by chunk,
    through the replay job's code; then one activity row per letter naming the actor and the
    letter's outcome (resolved, retrying, quarantined). A letter resolved meanwhile is skipped by
    the replay's claim and reported as it is."""
    store = store.scoped(organization_id)
    run = RunContext(run_id=actor.run_id, step_key=f"{actor.by}_replay", job_name=actor.by)
    by_integration: dict[str, list[str]] = {}
    for letter in letters:
        by_integration.setdefault(letter.integration_id, []).append(letter.id)
    outcomes = []
    for integration_id, ids in by_integration.items():
        try:
            with integration_session(store, integration_id, run) as session:
                for start in range(0, len(ids), REPLAY_CHUNK):
                    chunk = ids[start : start + REPLAY_CHUNK]
                    result = replay_dead_letters(session, ids=chunk, limit=len(chunk))
                    with store.transaction() as conn:
                        after = list_dead_letters(
                            conn, organization_id, DeadLetterSelection(ids=tuple(chunk))
                        )
                        record_operator_action(conn, store, after, REPLAY_ACTION, actor)
                    outcomes.append(ReplayOutcome(integration_id, result, after))
        except SyncError as exc:
            # the replay could not start (its configuration is refused, another replay holds
            # the lease…): the operator's attempt is still a row of each letter, saying why
            with store.transaction() as conn:
                untouched = list_dead_letters(
                    conn, organization_id, DeadLetterSelection(ids=tuple(ids))
                )
                record_operator_action(
                    conn, store, untouched, REPLAY_ACTION, actor, reason=str(exc), status="failed"
                )
            raise
    return outcomes


def due_letters(
    conn: Connection, organization_id: str, integration_id: str, *, limit: int = REPLAY_CHUNK
) -> list[DeadLetter]:
    """The integration's letters due for replay now (what the replay job would claim next, in
    its order): the console's "replay all due"."""
    ids = due_letter_ids(
        conn,
        organization_id,
        integration_id,
        now=utc_now(),
        streams=REPLAYABLE_STREAMS,
        limit=limit,
    )
    found = {
        d.id: d
        for d in list_dead_letters(conn, organization_id, DeadLetterSelection(ids=tuple(ids)))
    }
    return [found[i] for i in ids if i in found]


def quarantine_letters(
    store: Store,
    organization_id: str,
    selection: DeadLetterSelection,
    actor: Actor,
    *,
    reason: str | None = None,
) -> list[DeadLetter]:
    """Set the selection's pending/retrying letters aside (no replay picks them up until they
    are requeued), with their activity rows, in one transaction; returns the letters moved."""
    with store.scoped(organization_id).transaction() as conn:
        moved = quarantine_dead_letters(conn, organization_id, selection, now=utc_now())
        record_operator_action(conn, store, moved, QUARANTINE_ACTION, actor, reason=reason)
    return moved


def requeue_letters(
    store: Store, organization_id: str, selection: DeadLetterSelection, actor: Actor
) -> list[DeadLetter]:
    """Put the selection's unresolved or quarantined letters back in line (pending, attempts
    reset, due now), with their activity rows, in one transaction; returns the letters moved."""
    with store.scoped(organization_id).transaction() as conn:
        moved = requeue_dead_letters(conn, organization_id, selection, now=utc_now())
        record_operator_action(conn, store, moved, REQUEUE_ACTION, actor)
    return moved


def record_operator_action(
    conn: Connection,
    store: Store,
    letters: Sequence[DeadLetter],
    action: str,
    actor: Actor,
    *,
    reason: str | None = None,
    status: str = "success",
) -> None:
    """One `replay` activity row per letter an operator acted on, under the action's run id,
    in the caller's transaction `conn` (of `store`, in the letters' organization): the rows
    commit with the change they describe. `status` failed: the action could not run (`reason`
    says why) and the letter is as it was."""
    now = utc_now()
    rows = []
    for letter in letters:
        scope = ActivityScope(
            organization_id=letter.organization_id,
            integration_id=letter.integration_id,
            run_id=actor.run_id,
            step_key=f"{actor.by}_{action}",
            job_name=actor.by,
        )
        row = activity_row(
            scope,
            REPLAY,
            created_at=now,
            status=status,
            request_id=letter.request_id,
            completed_at=now,
            metadata={
                "dead_letter_id": letter.id,
                "stream": letter.stream,
                "external_id": letter.external_id,
                "action": action,
                "outcome": letter.status,
                "reason": reason,
                "by": actor.by,
                "actor": actor.name,
            },
        )
        redact_row(row)  # the reason is an operator's free text
        rows.append(row)
    if rows:
        StoreActivitySink(store).insert_within(conn, rows)
