"""Dead-letter replay: claim an integration's due dead letters (or the ones an operator names)
and process each again the way its stream would, then resolve it, or leave it retrying with
backoff, or quarantine it once it has used its attempts.

Per stream: `devices` re-normalises the stored payload with the provider's parser and upserts
it; `device_states` reads the device's state from the provider again; `desired_exports` sets the
failed desired changes back to pending and runs the export; `telemetry` re-parses the stored
message and inserts it. Every write is the streams' own idempotent upsert or insert, and a
resolved letter is never claimed again, so replaying twice never applies a record twice.
The replay is one `replay` operation in the activity log with one `replay` row per letter
(status success / retrying / failed = quarantined) and one sync-log row (stream
`dead_letter_replay`).

Every commit of the replay (the claim, each stream's writes, the letters' outcomes) is fenced by
the replay's lease: a replay that stalled past it, taken over by a newer one, writes nothing more
and ends `fenced`; the letters it claimed come due again. (A replay of desired exports runs the
export, which holds and fences by the export stream's own lease.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import CONFIG, PERMANENT, category_of
from sync_pipelines.observability.activity import REPLAY
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.observability.redaction import redact_text
from sync_pipelines.providers.contract import Provider
from sync_pipelines.store.dead_letters import (
    QUARANTINED,
    RESOLVED,
    RETRYING,
    DeadLetter,
    DeadLetterPolicy,
    change_outcomes,
    claim_dead_letters,
    mark_failed,
    mark_resolved,
    requeue_failed_changes,
)
from sync_pipelines.store.device_changes import set_change_source
from sync_pipelines.store.devices import upsert_device_states, upsert_devices
from sync_pipelines.store.telemetry import insert_telemetry
from sync_pipelines.sync import device_states, export, inventory, telemetry
from sync_pipelines.sync.failed_records import dead_letter_policy
from sync_pipelines.sync.records import device_row, state_row
from sync_pipelines.sync.results import SyncResult
from sync_pipelines.sync.session import IntegrationSession
from sync_pipelines.sync.sync_run import SyncRun

STREAM = "dead_letter_replay"
DEFAULT_LIMIT = 500

_log = get_logger("sync.replay")


@dataclass(slots=True)
class ReplayResult(SyncResult):
    """A replay's figures: the letters it resolved, left retrying and quarantined."""

    resolved: int = 0
    retrying: int = 0
    quarantined: int = 0

    def metadata(self) -> dict[str, float | int | str]:
        return {
            **SyncResult.metadata(self),
            "resolved": self.resolved,
            "retrying": self.retrying,
            "quarantined": self.quarantined,
        }


@dataclass(frozen=True, slots=True)
class _Failure:
    error_type: str
    error_message: str

    @classmethod
    def of(cls, exc: BaseException) -> _Failure:
        category = CONFIG if isinstance(exc, NotImplementedError) else category_of(exc)
        return cls(category, redact_text(f"{type(exc).__name__}: {exc}"))


#: letter id -> None (processed) or why it failed again
_Outcomes = dict[str, _Failure | None]


def replay_dead_letters(
    session: IntegrationSession, *, ids: Sequence[str] | None = None, limit: int = DEFAULT_LIMIT
) -> ReplayResult:
    """Replay the integration's due dead letters (at most `limit`), or the unresolved ones among
    `ids` whether due or not (quarantined included: an operator asked). Records, then re-raises,
    a failure of the replay itself; letters that fail again are counted, not raised."""
    integ = session.integration
    tallies = {RESOLVED: 0, RETRYING: 0, QUARANTINED: 0}
    with SyncRun(
        session,
        STREAM,
        REPLAY,
        log=_log,
        event="replay",
        requested_ids=list(ids) if ids else None,
        limit=limit,
    ) as run:
        policy = dead_letter_policy(integ)
        with session.store.transaction() as conn:
            run.fence(conn)  # a replay whose lease was taken over writes nothing
            letters = claim_dead_letters(
                conn,
                integ.organization_id,
                integ.integration_id,
                policy=policy,
                now=utc_now(),
                streams=tuple(_REPLAYERS),
                ids=ids,
                limit=limit,
            )
        run.counts.fetched, run.counts.pages = len(letters), int(bool(letters))
        outcomes = _replay_by_stream(_Work(session, run), letters)
        _settle(session, run, letters, outcomes, policy, tallies)
        # letters that failed again are the replay's failed records: it ends `partial`, and
        # health, the report and the checks count it so (never as a clean success)
        run.counts.failed = tallies[RETRYING] + tallies[QUARANTINED]
        run.annotate(**tallies)
    return ReplayResult(
        **{f.name: getattr(run.result, f.name) for f in fields(SyncResult)},
        resolved=tallies[RESOLVED],
        retrying=tallies[RETRYING],
        quarantined=tallies[QUARANTINED],
    )


def _replay_by_stream(work: _Work, letters: list[DeadLetter]) -> _Outcomes:
    """Each stream's letters through its replayer; a replayer that fails as a whole (provider
    unreachable, bad configuration) fails each of its letters with that error."""
    outcomes: _Outcomes = {}
    try:
        for stream, replayer in _REPLAYERS.items():
            group = [letter for letter in letters if letter.stream == stream]
            if not group:
                continue
            try:
                outcomes.update(replayer(work, group))
            except Exception as exc:
                if work.run.lease.fenced:  # this replay lost its lease: it stops, writing nothing
                    raise
                _log.warning(
                    "replay_group_failed",
                    dead_letter_stream=stream,
                    letters=len(group),
                    error={"type": category_of(exc), "message": str(exc)},
                )
                outcomes.update(dict.fromkeys((letter.id for letter in group), _Failure.of(exc)))
    finally:
        work.close()
    return outcomes


class _Work:
    """What the per-stream replayers share: the session, the counts, one provider opened on
    first use (a replay of desired exports only runs the export, which opens its own)."""

    def __init__(self, session: IntegrationSession, run: SyncRun) -> None:
        self.session, self.run = session, run
        integ = session.integration
        self.org, self.integration_id, self.run_id = (
            integ.organization_id,
            integ.integration_id,
            session.run.run_id,
        )
        self._provider: Provider | None = None

    def provider(self) -> Provider:
        if self._provider is None:
            self._provider = self.session.open_provider()
        return self._provider

    def close(self) -> None:
        if self._provider is not None:
            self._provider.close()

    def count_written(self, created: int, updated: int, unchanged: int) -> None:
        c = self.run.counts
        c.created, c.updated, c.unchanged = (
            c.created + created,
            c.updated + updated,
            c.unchanged + unchanged,
        )


def _replay_devices(work: _Work, letters: list[DeadLetter]) -> _Outcomes:
    """Re-normalise each stored payload with the provider's parser; upsert what now normalises."""
    provider, now = work.provider(), utc_now()
    outcomes: _Outcomes = {}
    rows: dict[str, dict[str, Any]] = {}
    for letter in letters:
        try:
            device = provider.parse_device(letter.payload)
        except Exception as exc:
            outcomes[letter.id] = _Failure.of(exc)
            continue
        rows[device.external_id] = device_row(
            device,
            organization_id=work.org,
            integration_id=work.integration_id,
            run_id=work.run_id,
            request_id=letter.request_id,
            now=now,
        )
        outcomes[letter.id] = None
    if rows:
        with work.session.store.transaction() as conn:
            work.run.fence(conn)  # a replay whose lease was taken over writes nothing
            set_change_source(conn, "replay")  # the devices' history (sql/027)
            written = upsert_devices(conn, list(rows.values()))
        work.count_written(written.created, written.updated, written.unchanged)
    return outcomes


def _replay_states(work: _Work, letters: list[DeadLetter]) -> _Outcomes:
    """Read each device's state from the provider again; store what it returns."""
    outcomes: _Outcomes = {}
    wanted = [letter for letter in letters if letter.external_id]
    for letter in letters:
        if not letter.external_id:
            outcomes[letter.id] = _Failure(PERMANENT, "the dead letter names no device")
    ids = sorted({letter.external_id for letter in wanted if letter.external_id})
    states, failures = work.provider().get_states(ids) if ids else ([], [])
    if states:
        now = utc_now()
        rows = [
            state_row(
                s,
                organization_id=work.org,
                integration_id=work.integration_id,
                run_id=work.run_id,
                now=now,
            )
            for s in states
        ]
        with work.session.store.transaction() as conn:
            work.run.fence(conn)  # a replay whose lease was taken over writes nothing
            set_change_source(conn, "replay")
            written = upsert_device_states(conn, rows)
        work.count_written(written.created, written.updated, written.unchanged)
    read = {s.external_id for s in states}
    failed = {f.external_id: _Failure(f.error_type, redact_text(f.error_message)) for f in failures}
    for letter in wanted:
        outcomes[letter.id] = (
            None
            if letter.external_id in read
            else failed.get(
                letter.external_id or "",
                _Failure(PERMANENT, "the provider returned no state for the device"),
            )
        )
    return outcomes


def _replay_exports(work: _Work, letters: list[DeadLetter]) -> _Outcomes:
    """Set the letters' failed desired changes back to pending and run the export (which pushes
    every pending change of the integration, these among them)."""
    change_ids = {letter.id: _change_ids(letter) for letter in letters}
    every = sorted({c for ids in change_ids.values() for c in ids})
    with work.session.store.transaction() as conn:
        work.run.fence(conn)  # a replay whose lease was taken over writes nothing
        requeue_failed_changes(conn, work.org, work.integration_id, every, now=utc_now())
    export.export_desired_states(work.session)
    with work.session.store.connect() as conn:
        changes = change_outcomes(conn, work.org, every)
    outcomes: _Outcomes = {}
    for letter in letters:
        statuses = [changes.get(c) for c in change_ids[letter.id]]
        failed = next((c for c in statuses if c and c["status"] in ("failed", "pending")), None)
        # pushed, settled as a conflict, or gone: nothing is left to retry
        outcomes[letter.id] = (
            None
            if failed is None
            else _Failure(
                failed["error_type"] or PERMANENT,
                failed["error_message"]
                or f"desired change {failed['id']} is still {failed['status']}",
            )
        )
    return outcomes


def _replay_telemetry(work: _Work, letters: list[DeadLetter]) -> _Outcomes:
    """Re-parse each stored message; insert what now parses (the store's key absorbs repeats)."""
    provider = work.provider()
    outcomes: _Outcomes = {}
    messages = []
    for letter in letters:
        try:
            message = provider.parse_telemetry(letter.payload)
        except Exception as exc:
            outcomes[letter.id] = _Failure.of(exc)
            continue
        messages.append(replace(message, received_at=letter.first_failed_at))
        outcomes[letter.id] = None
    if messages:
        rows = telemetry.message_rows(
            work.session, messages, request_id=f"replay-{work.run.sync_id}"
        )
        with work.session.store.transaction() as conn:
            work.run.fence(conn)  # a replay whose lease was taken over writes nothing
            stored = insert_telemetry(conn, rows)
        work.count_written(stored, 0, len(rows) - stored)
    return outcomes


def _replay_webhook_events(work: _Work, letters: list[DeadLetter]) -> _Outcomes:
    """Put the letters' failed inbox events back to pending and process them again; an event
    processed meanwhile stays processed (the inbox never applies one twice)."""
    from sync_pipelines.store.webhook_events import list_events, requeue_events
    from sync_pipelines.sync.webhook_processing import process_webhook_events

    event_ids = {letter.id: letter.source_id for letter in letters if letter.source_id}
    with work.session.store.transaction() as conn:
        work.run.fence(conn)  # a replay whose lease was taken over writes nothing
        requeue_events(conn, work.org, sorted(set(event_ids.values())))
    process_webhook_events(work.session, limit=max(1, len(event_ids)), change_source="replay")
    with work.session.store.connect() as conn:
        events = {e.id: e for e in list_events(conn, work.org, work.integration_id)}
    outcomes: _Outcomes = {}
    for letter in letters:
        event = events.get(event_ids.get(letter.id, ""))
        if event is None:
            outcomes[letter.id] = _Failure(
                PERMANENT, f"webhook event {letter.source_id} is no longer in the inbox"
            )
        elif event.status == "processed":
            outcomes[letter.id] = None
        else:
            outcomes[letter.id] = _Failure(
                event.error_type or PERMANENT,
                event.error_message or f"webhook event {event.id} is still {event.status}",
            )
    return outcomes


#: stream -> its replayer; a letter of any other stream is left for whoever owns that stream
_REPLAYERS: dict[str, Callable[[_Work, list[DeadLetter]], _Outcomes]] = {
    inventory.STREAM: _replay_devices,
    device_states.STREAM: _replay_states,
    export.STREAM: _replay_exports,
    telemetry.STREAM: _replay_telemetry,
    "webhook_events": _replay_webhook_events,
}
REPLAYABLE_STREAMS = tuple(_REPLAYERS)


def _change_ids(letter: DeadLetter) -> list[str]:
    ids = letter.payload.get("change_ids") if isinstance(letter.payload, dict) else None
    if isinstance(ids, list) and ids:
        return [str(i) for i in ids]
    return [letter.source_id] if letter.source_id else []


def _settle(
    session: IntegrationSession,
    run: SyncRun,
    letters: list[DeadLetter],
    outcomes: _Outcomes,
    policy: DeadLetterPolicy,
    tallies: dict[str, int],
) -> None:
    """Write each letter's outcome, then one `replay` activity row per letter."""
    missing = _Failure(PERMANENT, "the replay produced no outcome for this letter")
    now = utc_now()
    statuses: dict[str, str] = {}
    with session.store.transaction() as conn:
        run.fence(conn)  # a replay whose lease was taken over writes nothing
        # a failed replay is a `rejected` row of the device's history, by the replay's run
        set_change_source(conn, "replay")
        processed = [
            letter.id for letter in letters if letter.id in outcomes and outcomes[letter.id] is None
        ]
        mark_resolved(
            conn, session.integration.organization_id, processed, run_id=session.run.run_id, now=now
        )
        statuses.update(dict.fromkeys(processed, RESOLVED))
        for letter in letters:
            if letter.id not in statuses:
                failure = outcomes.get(letter.id) or missing
                statuses[letter.id] = mark_failed(
                    conn,
                    letter,
                    error_type=failure.error_type,
                    error_message=failure.error_message,
                    policy=policy,
                    now=now,
                    run_id=session.run.run_id,
                )
    recorder = session.recorder
    for letter in letters:
        status, failure = statuses[letter.id], outcomes.get(letter.id, missing)
        tallies[status] = tallies.get(status, 0) + 1
        row = recorder.new_row(
            REPLAY,
            status={RESOLVED: "success", QUARANTINED: "failed"}.get(status, "retrying"),
            request_id=letter.request_id,
            attempt=letter.attempts,
            error_type=failure.error_type if failure and status != RESOLVED else None,
            error_message=failure.error_message if failure and status != RESOLVED else None,
            metadata={
                "dead_letter_id": letter.id,
                "stream": letter.stream,
                "external_id": letter.external_id,
                "source_id": letter.source_id,
                "outcome": status,
                "attempts": letter.attempts,
                "max_attempts": letter.max_attempts,
                "next_attempt_at": letter.next_attempt_at.isoformat()
                if status == RETRYING and letter.next_attempt_at
                else None,
            },
        )
        row.completed_at = row.created_at
        recorder.record(row)
        if status == QUARANTINED:
            _log.warning(
                "dead_letter_quarantined",
                dead_letter_id=letter.id,
                dead_letter_stream=letter.stream,
                external_id=letter.external_id,
                attempts=letter.attempts,
                error={"type": failure.error_type, "message": failure.error_message}
                if failure
                else None,
            )
        else:
            _log.info(
                "dead_letter_replayed",
                dead_letter_id=letter.id,
                dead_letter_stream=letter.stream,
                external_id=letter.external_id,
                outcome=status,
                attempts=letter.attempts,
            )
    run.counts.failed = sum(1 for s in statuses.values() if s != RESOLVED)
