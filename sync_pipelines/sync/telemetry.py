"""The telemetry sync: drain the provider's telemetry stream into `device_telemetry`, at least
once from the broker and exactly once in the store.

Each batch the provider hands over is written in ONE transaction — messages (duplicates absorbed
by the primary key), the per-device sequence baselines, and any gaps those sequences reveal —
and only after that commit is the batch acknowledged to the broker. A sync killed before the
commit gets the batch redelivered next time; one killed between commit and acknowledgement gets
it redelivered too, and the store absorbs it. Gaps (readings that never arrived, e.g. dropped
by a broker whose queue overflowed) are stored, logged, recorded as activity and counted in the
sync log; the sync is then "partial", as it is when messages are rejected, or when the provider
reports loss around the drain — messages its broker dropped, a lost session (telemetry_loss.py:
sync log, activity row, alert). A rejected message is
acknowledged (it would only come back) and dead-lettered, so a replay can parse it again once
what rejected it is fixed (e.g. a raised `max_message_bytes`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import ConfigError
from sync_pipelines.observability.activity import MQTT_MESSAGE, TELEMETRY_GAP, TELEMETRY_IMPORT
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.providers.contract import TelemetryBatch, TelemetryLoss, TelemetryMessage
from sync_pipelines.store.database import dump_json
from sync_pipelines.store.dead_letters import FailedRecord
from sync_pipelines.store.telemetry import (
    TelemetryRow,
    advance_sequences,
    fill_gaps,
    insert_gaps,
    insert_telemetry,
    last_sequences,
    lowest_sequences,
)
from sync_pipelines.sync.failed_records import dead_letter, payload_key
from sync_pipelines.sync.results import SyncResult
from sync_pipelines.sync.session import IntegrationSession
from sync_pipelines.sync.sync_run import SyncRun
from sync_pipelines.sync.telemetry_gaps import SequenceGap, find_gaps
from sync_pipelines.sync.telemetry_loss import alert_on_loss, previous_watermark, record_loss

STREAM = "telemetry"
DEFAULT_MAX_MESSAGES = 1000
DEFAULT_WINDOW_S = 30.0
#: Test seam for the kill test, deliberately in the engine: when set to a file path, each batch
#: writes that file once its rows are inserted, then waits — uncommitted — until it is removed.
HOLD_BEFORE_COMMIT_ENV = "SYNC_TEST_HOLD_TELEMETRY_BEFORE_COMMIT"
_TOPICS_LISTED = 20

_log = get_logger("sync.telemetry")


def sync_telemetry(
    session: IntegrationSession,
    *,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    window_s: float = DEFAULT_WINDOW_S,
) -> SyncResult:
    """Drain telemetry for at most `window_s`. Records, then re-raises, if the sync fails."""
    with (
        SyncRun(
            session,
            STREAM,
            TELEMETRY_IMPORT,
            log=_log,
            max_messages=max_messages,
            window_s=window_s,
        ) as run,
        session.open_provider() as provider,
    ):
        if not provider.supports_telemetry:
            raise ConfigError(
                session.integration.integration_id,
                f"provider {provider.name} has no telemetry stream to sync",
            )
        loss = TelemetryLoss(since=previous_watermark(run))
        for batch in provider.drain_telemetry(
            max_messages=max_messages, window_s=window_s, loss=loss
        ):
            outcome = _commit(session, run, batch)
            batch.acknowledge()  # only now: until here the broker still holds the batch
            _count(run, outcome)
            _record(session, outcome)
            session.recorder.flush()  # activity rows land between data transactions
        record_loss(session, run, STREAM, loss)
    alert_on_loss(session, run.result, loss)
    return run.result


@dataclass(slots=True)
class _BatchOutcome:
    batch: TelemetryBatch
    batch_id: str
    stored: int = 0
    absorbed: int = 0
    commit_ms: float = 0.0
    gaps: list[SequenceGap] = field(default_factory=list)


def _commit(session: IntegrationSession, run: SyncRun, batch: TelemetryBatch) -> _BatchOutcome:
    integ, run_id = session.integration, session.run.run_id
    outcome = _BatchOutcome(batch, batch_id=f"mqtt-batch-{uuid.uuid4()}")
    rows = message_rows(session, batch.messages, request_id=outcome.batch_id)
    sequences: dict[str, list[int]] = {}
    for message in batch.messages:
        if message.sequence is not None:
            sequences.setdefault(message.external_id, []).append(message.sequence)
    started, now = time.perf_counter(), utc_now()
    with session.store.transaction() as conn:
        run.fence(conn)  # a sync whose lease was taken over writes nothing (the broker keeps it)
        o, i = integ.organization_id, integ.integration_id
        baselines = last_sequences(conn, o, i, sorted(sequences))
        # late readings (below the baseline) fill recorded gaps, or extend below the floor:
        # gaps then do not depend on the order readings arrive in (telemetry_gaps.py)
        late = {
            e: [s for s in seqs if s < baselines[e]]
            for e, seqs in sequences.items()
            if e in baselines and min(seqs) < baselines[e]
        }
        floors = lowest_sequences(conn, o, i, sorted(late))
        outcome.stored = insert_telemetry(conn, rows)
        outcome.gaps, raised = find_gaps(baselines, sequences, floors)
        fill_gaps(conn, o, i, late)
        advance_sequences(
            conn, integ.organization_id, integ.integration_id, raised, run_id=run_id, now=now
        )
        insert_gaps(
            conn,
            integ.organization_id,
            integ.integration_id,
            outcome.gaps,
            run_id=run_id,
            now=now,
        )
        _hold_before_commit_if_asked(len(rows))
    outcome.absorbed = len(batch.messages) - outcome.stored
    outcome.commit_ms = round((time.perf_counter() - started) * 1000, 3)
    return outcome


def message_rows(
    session: IntegrationSession, messages: Iterable[TelemetryMessage], *, request_id: str
) -> list[TelemetryRow]:
    """`device_telemetry` rows of messages, one per message key (a key twice is one row);
    `request_id` is the batch (or replay) they were stored by."""
    integ = session.integration
    stored_by = {
        "organization_id": integ.organization_id,
        "integration_id": integ.integration_id,
        "run_id": session.run.run_id,
        "request_id": request_id,
    }
    rows: dict[tuple[str, str], TelemetryRow] = {}
    for message in messages:
        key = _message_key(message)
        if (message.external_id, key) in rows:
            continue
        rows[message.external_id, key] = TelemetryRow(
            external_id=message.external_id,
            message_key=key,
            sequence=message.sequence,
            topic=message.topic,
            payload=dump_json(message.payload),
            device_time=message.device_time,
            received_at=message.received_at,
            **stored_by,
        )
    return list(rows.values())


def _message_key(message: TelemetryMessage) -> str:
    """The dedupe key: the device's sequence number, else a digest of what it sent."""
    if message.sequence is not None:
        return f"seq:{message.sequence}"
    canonical = json.dumps(message.payload, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(f"{message.topic}\n{canonical}".encode()).hexdigest()


def _count(run: SyncRun, outcome: _BatchOutcome) -> None:
    c, batch = run.counts, outcome.batch
    c.pages += 1
    c.fetched += len(batch.messages) + len(batch.rejected)
    c.created += outcome.stored
    c.unchanged += outcome.absorbed
    c.failed += len(batch.rejected)
    c.gaps += len(outcome.gaps)


def _record(session: IntegrationSession, outcome: _BatchOutcome) -> None:
    """One summary row per batch, plus a row per rejected message and per gap.

    Not a row per message: telemetry runs to thousands of messages a minute, and a row each
    would make the activity log dominate the sync; the stored rows carry the batch id instead
    (device_telemetry.request_id = this row's request_id)."""
    recorder, batch = session.recorder, outcome.batch
    topics = Counter(m.topic for m in batch.messages)
    summary = recorder.new_row(
        MQTT_MESSAGE,
        direction="incoming",
        status="success",
        request_id=outcome.batch_id,
        method="RECEIVE",
        response_time_ms=outcome.commit_ms,
        metadata={
            "batch_id": outcome.batch_id,
            "messages": len(batch.messages),
            "stored": outcome.stored,
            "duplicates_absorbed": outcome.absorbed,
            "redelivered": sum(1 for m in batch.messages if m.duplicate),
            "rejected": len(batch.rejected),
            "devices": len({m.external_id for m in batch.messages}),
            "topic_count": len(topics),
            "topics": [t for t, _ in topics.most_common(_TOPICS_LISTED)],
            "gaps": len(outcome.gaps),
        },
    )
    summary.completed_at = summary.created_at
    recorder.record(summary)
    letters = []
    for rejected in batch.rejected:
        topic = rejected.payload.get("topic") if isinstance(rejected.payload, dict) else None
        row = recorder.new_row(
            MQTT_MESSAGE,
            direction="incoming",
            status="failed",
            request_id=outcome.batch_id,
            method="RECEIVE",
            endpoint=topic,
            error_type=rejected.error_type,
            error_message=rejected.error_message,
            metadata={"external_id": rejected.external_id, "payload": _bounded(rejected.payload)},
        )
        row.completed_at = row.created_at
        recorder.record(row)
        _log.warning(
            "telemetry_message_rejected",
            external_id=rejected.external_id,
            topic=topic,
            request_id=outcome.batch_id,
            error={"type": rejected.error_type, "message": rejected.error_message},
        )
        # keyed by what arrived (topic + bytes), not the delivery (its DUP flag)
        key = payload_key(
            {"topic": topic, "payload": rejected.payload.get("payload")}
            if isinstance(rejected.payload, dict)
            else rejected.payload
        )
        letters.append(
            FailedRecord(
                stream=STREAM,
                dedupe_key=key,
                source_id=key,
                external_id=rejected.external_id,
                error_type=rejected.error_type,
                error_message=rejected.error_message,
                payload=rejected.payload,
                request_id=outcome.batch_id,
            )
        )
    dead_letter(session, letters)
    for gap in outcome.gaps:
        message = (
            f"device {gap.external_id}: telemetry seq {gap.first_missing}..{gap.last_missing} never arrived "
            f"({gap.missing_count} messages; a broker drops messages silently when a session's queue "
            "overflows — check max_queued_messages)"
        )
        row = recorder.new_row(
            TELEMETRY_GAP,
            status="failed",
            request_id=outcome.batch_id,
            error_type="telemetry_gap",
            error_message=message,
            metadata={
                "external_id": gap.external_id,
                "first_missing": gap.first_missing,
                "last_missing": gap.last_missing,
                "missing_count": gap.missing_count,
            },
        )
        row.completed_at = row.created_at
        recorder.record(row)
        _log.warning(
            "telemetry_gap_detected",
            external_id=gap.external_id,
            first_missing=gap.first_missing,
            last_missing=gap.last_missing,
            missing_count=gap.missing_count,
            request_id=outcome.batch_id,
        )


def _hold_before_commit_if_asked(rows: int) -> None:
    marker = os.environ.get(HOLD_BEFORE_COMMIT_ENV)
    if not marker or not rows:  # a kill test holds a batch that has rows (a slow broker's
        return  # first window may close empty)
    path = Path(marker)
    path.write_text(str(rows))
    while path.exists():
        time.sleep(0.01)


def _bounded(payload: Any, limit: int = 4000) -> Any:
    text = json.dumps(payload, default=str)
    return payload if len(text) <= limit else text[:limit] + "…"
