"""Webhook inbox → devices and telemetry: the work a `process_webhook_inbox` run does.

A run claims the integration's oldest pending events (at most `limit`), then applies each in a
transaction of its own that first marks it processed — conditional on the run still holding
the claim — so an event is applied at most once however often it was delivered, claimed or
processed; `processed_at − received_at` is the processing delay. Device rows written carry the
event id as `last_request_id` and the run as `last_run_id`; telemetry rows are keyed
`webhook:<event id>`.

Every device write of a registry or connection event is conditional on the event being newer
than what the row holds (store/event_order.py), so events apply in the provider's order, not in
arrival order; an older one is processed and counted `stale`, changing nothing.

What is applied, per provider:
- Azure (Event Grid): DeviceCreated → the twin, written like an inventory row, ordered by
  eventTime; DeviceDeleted → soft-deleted at once, ordered the same way (an older creation
  cannot restore the device, a newer one does); DeviceConnected / DeviceDisconnected → status
  connected / disconnected (+ last_seen_at), ordered by
  `data.deviceConnectionStateEventInfo.sequenceNumber` (else eventTime); DeviceTelemetry → a
  telemetry row (+ last_seen_at).
- Golioth (pipeline webhook): the body (or the `data` of an inject-metadata envelope) is a
  telemetry reading of the `Ce-Source` device (+ last_seen_at, which only moves forward).
- AWS (rule HTTPS action): registry events (`eventType` THING_EVENT, `operation` CREATED /
  UPDATED / DELETED) → the thing written or soft-deleted, ordered by `versionNumber` within one
  `thingId` (else `timestamp`); lifecycle events (`eventType` connected / disconnected with a
  `clientId`) → status, ordered by (`versionNumber`, connected before disconnected) (else
  `timestamp`); any other payload with a `thingName` → a telemetry reading.
Other event types are marked processed and counted as ignored. An event that cannot be applied
(no device named, malformed data, a store constraint) or that the receiver would refuse today
(a payload nested too deep, or whose canonical size is over the integration's limit —
json_limits: stored by an older receiver, or by another writer) is marked failed and
dead-lettered, and
the run ends `partial`; a store outage fails the run instead, and the claim's lease hands the
events to a later run.

Fencing: every transaction that writes (the claim, each event's, each failure's mark) calls
`run.fence(conn)` after taking its inbox rows, so a processor whose stream lease was taken over
writes nothing more and ends `fenced` (its claimed events go to a later run when the claim's
lease expires). The inbox row is always locked before the lease row: no lock-order deadlock.

Counts in the sync log: fetched = events claimed, created / updated = device rows,
unchanged = events that changed no device row, failed = events dead-lettered.

The attributes of the devices events write add to the integration's shape of `devices`
(sync/shape_drift.py): a new key or type is a shape change; a batch of events never removes one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import FencedError, category_of
from sync_pipelines.json_limits import MAX_BODY_ENV, MAX_BODY_SETTING, body_limit, size_problem
from sync_pipelines.observability import metrics
from sync_pipelines.observability.activity import WEBHOOK_PROCESSING
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.providers.aws_iot import thing_to_device
from sync_pipelines.providers.azure_iot import twin_to_device
from sync_pipelines.providers.contract import DeviceRecord
from sync_pipelines.store.database import dump_json
from sync_pipelines.store.dead_letters import FailedRecord
from sync_pipelines.store.device_changes import set_change_source
from sync_pipelines.store.event_order import (
    ConnectionKey,
    DeviceRef,
    Outcome,
    RegistryKey,
    apply_connection,
    apply_registry_deletion,
    apply_registry_write,
)
from sync_pipelines.store.telemetry import TelemetryRow, insert_telemetry
from sync_pipelines.store.webhook_events import (
    WebhookEvent,
    claim_events,
    event_counts,
    mark_failed,
    mark_processed,
    processing_delay,
    touch_device,
)
from sync_pipelines.sync.failed_records import dead_letter, resolve_synced
from sync_pipelines.sync.integration_config import integration_settings
from sync_pipelines.sync.records import device_row
from sync_pipelines.sync.results import SyncResult
from sync_pipelines.sync.session import IntegrationSession
from sync_pipelines.sync.shape_drift import ShapeWatch, judge
from sync_pipelines.sync.sync_run import SyncRun

STREAM = "webhook_events"
#: the stream whose shape the devices an event writes add to (sync/inventory.py's STREAM)
DEVICES_STREAM = "devices"
#: Azure's sequenceNumber: a 256-bit number as 64 hex digits ("compare as strings", per the docs)
AZURE_SEQUENCE_DIGITS = 64
DEFAULT_LIMIT = 200
#: a claim older than this is presumed abandoned (its run died) and may be claimed again
DEFAULT_LEASE_S = 900.0

_log = get_logger("sync.webhook_processing")


class UnapplicableEvent(ValueError):
    """The event cannot be applied: it does not say enough, or its stored payload cannot be read."""


@dataclass(slots=True)
class _Effect:
    created: int = 0
    updated: int = 0
    telemetry: int = 0
    deleted: int = 0
    stale: bool = False  # older than what the device row holds: nothing written
    ignored: str | None = None  # the event type, when nothing applies to it
    lost: bool = False  # another run holds the claim now: nothing done here
    #: the device record written (its attributes' shape is observed: sync/shape_drift.py)
    written: DeviceRecord | None = None


def process_webhook_events(
    session: IntegrationSession,
    *,
    limit: int = DEFAULT_LIMIT,
    lease_s: float = DEFAULT_LEASE_S,
    change_source: str = "webhook",
) -> SyncResult:
    """Apply up to `limit` pending inbox events of the session's integration. `change_source`
    names the writer in the devices' history (`replay` when a replay re-runs the events)."""
    integ = session.integration
    telemetry, lost, stale = 0, 0, 0
    ignored: Counter[str] = Counter()  # event types nothing applies to
    with SyncRun(
        session, STREAM, WEBHOOK_PROCESSING, log=_log, event="webhook_processing", limit=limit
    ) as run:
        # the receiver's limit for this integration: what it would refuse is not applied here
        max_bytes = body_limit(getattr(integration_settings(integ), MAX_BODY_SETTING, None))
        with session.store.transaction() as conn:
            events = claim_events(
                conn,
                integ.organization_id,
                integ.integration_id,
                limit=limit,
                run_id=session.run.run_id,
                now=utc_now(),
                lease_s=lease_s,
            )
            run.fence(conn)  # a processor whose lease was taken over claims nothing
        run.counts.fetched, run.counts.pages = len(events), int(bool(events))
        # a few devices' attributes: additions to the shape only, never removals
        shapes = ShapeWatch(DEVICES_STREAM, complete=False)
        for event in events:
            effect = _process(run, event, max_bytes, change_source)
            _count_processed(integ.provider, event, effect)
            if effect is None:
                run.counts.failed += 1
            elif effect.lost:
                lost += 1
            else:
                run.counts.created += effect.created
                run.counts.updated += effect.updated
                run.counts.deleted += effect.deleted
                metrics.devices_deleted(integ.provider, "event", effect.deleted)
                run.counts.unchanged += int(
                    not (effect.created or effect.updated or effect.deleted)
                )
                telemetry += effect.telemetry
                stale += int(effect.stale)
                if effect.ignored:
                    ignored[effect.ignored] += 1
                if effect.written is not None:
                    shapes.devices((effect.written,))
        judge(session, run, shapes)
        session.recorder.flush()
        with session.store.connect() as conn:
            delay = processing_delay(
                conn, integ.organization_id, integ.integration_id, since=run.started_at
            )
            backlog = event_counts(conn, integ.organization_id, integ.integration_id)
        run.annotate(
            telemetry_stored=telemetry,
            ignored_types=dict(ignored),
            claims_lost=lost,
            stale_events=stale,
            pending_after=backlog["pending"],
            delay_p50_s=delay.p50_s,
            delay_p95_s=delay.p95_s,
            delay_max_s=delay.max_s,
        )
    return run.result


def _process(
    run: SyncRun, event: WebhookEvent, max_bytes: int, change_source: str
) -> _Effect | None:
    """Apply one event: its effect, or None when it failed (and was dead-lettered)."""
    session = run.session
    integ, run_id = session.integration, session.run.run_id
    try:
        # stored before the receiver's limits, or by another writer: refused as the receiver would
        if event.unreadable:
            raise UnapplicableEvent(event.unreadable)
        oversized = size_problem(event.payload, max_bytes)
        if oversized:
            raise UnapplicableEvent(
                f"payload is {oversized} (setting {MAX_BODY_SETTING}, else ${MAX_BODY_ENV}); "
                "the receiver refuses such a document"
            )
        with session.store.transaction() as conn:
            # the mark comes first: it takes the row (Postgres) and proves the claim is still ours
            if not mark_processed(
                conn, integ.organization_id, event.id, run_id=run_id, now=utc_now()
            ):
                return _Effect(lost=True)
            run.fence(conn)  # a processor whose lease was taken over writes nothing
            set_change_source(conn, change_source)  # the devices' history (sql/027)
            effect = _apply(conn, session, event)
            resolve_synced(session, conn, STREAM, [event.event_id])  # keys: dedupe keys
        return effect
    except FencedError:
        raise  # the run ends `fenced`; the event stays claimed for a later run
    except DBAPIError as exc:
        if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
            raise  # the store is unreachable: not this event's fault
        failure: Exception = exc
    except Exception as exc:  # noqa: BLE001 - every other failure is this event's
        failure = exc
    _fail(run, event, failure)
    return None


def _count_processed(provider: str, event: WebhookEvent, effect: _Effect | None) -> None:
    if effect is not None and effect.lost:
        return  # another run holds the claim: that run counts it
    status = "failed" if effect is None else "ignored" if effect.ignored else "applied"
    delay_s = (utc_now() - event.received_at).total_seconds() if event.received_at else None
    metrics.webhook_processed(provider, status, delay_s)


def _fail(run: SyncRun, event: WebhookEvent, exc: Exception) -> None:
    session = run.session
    integ, run_id = session.integration, session.run.run_id
    error_type = category_of(exc)
    message = f"event {event.event_id} ({event.event_type}"
    message += f", device {event.external_id}): " if event.external_id else "): "
    message += f"{type(exc).__name__}: {exc}"[:1000]
    # the letter first: if we die before marking the event, the lease re-runs it and the letter
    # is updated in place (one letter per event id)
    dead_letter(
        session,
        [
            FailedRecord(
                stream=STREAM,
                dedupe_key=event.event_id,
                error_type=error_type,
                error_message=message,
                payload={
                    "event_type": event.event_type,
                    "payload": event.payload,
                    "headers": event.headers,
                },
                external_id=event.external_id,
                source_id=event.id,
                request_id=event.delivery_id,
            )
        ],
    )
    with session.store.transaction() as conn:
        mark_failed(
            conn,
            integ.organization_id,
            event.id,
            run_id=run_id,
            error_type=error_type,
            error_message=message,
            now=utc_now(),
        )
        run.fence(conn)  # after the inbox row, like every transaction here
    row = session.recorder.new_row(
        WEBHOOK_PROCESSING,
        status="failed",
        request_id=event.event_id,
        error_type=error_type,
        error_message=message,
        metadata={
            "webhook_event": event.id,
            "event_type": event.event_type,
            "external_id": event.external_id,
        },
    )
    row.completed_at = row.created_at
    session.recorder.record(row)
    _log.warning(
        "webhook_event_failed",
        request_id=event.event_id,
        event_type=event.event_type,
        external_id=event.external_id,
        error={"type": error_type, "message": message},
    )


# -- applying one event ---------------------------------------------------------------------------


def _apply(conn: Connection, session: IntegrationSession, event: WebhookEvent) -> _Effect:
    apply = _APPLIERS.get(event.provider)
    if apply is None:
        raise UnapplicableEvent(f"provider {event.provider} has no webhook events")
    return apply(_Writer(conn, session, event))


class _Writer:
    """Writes one event's effects with its provenance."""

    def __init__(self, conn: Connection, session: IntegrationSession, event: WebhookEvent) -> None:
        self.conn, self.session, self.event = conn, session, event
        self.integ = session.integration
        self.effect = _Effect()

    def device_id(self) -> str:
        if not self.event.external_id:
            raise UnapplicableEvent("the event names no device")
        return self.event.external_id

    def touch(self, *, seen_at: datetime | None = None) -> _Effect:
        outcome = touch_device(
            self.conn,
            organization_id=self.integ.organization_id,
            integration_id=self.integ.integration_id,
            external_id=self.device_id(),
            run_id=self.session.run.run_id,
            request_id=self.event.event_id,
            now=utc_now(),
            seen_at=seen_at,
        )
        if outcome == "created":
            self.effect.created += 1
        else:
            self.effect.updated += 1
        return self.effect

    def reading(self, topic: str, payload: Any, device_time: datetime | None) -> _Effect:
        if payload is None:
            raise UnapplicableEvent("the reading is empty (null)")
        self.effect.telemetry += insert_telemetry(
            self.conn,
            [
                TelemetryRow(
                    organization_id=self.integ.organization_id,
                    integration_id=self.integ.integration_id,
                    external_id=self.device_id(),
                    message_key=f"webhook:{self.event.event_id}",
                    sequence=None,
                    topic=topic,
                    payload=dump_json(payload),
                    device_time=device_time,
                    received_at=self.event.received_at,
                    run_id=self.session.run.run_id,
                    request_id=self.event.event_id,
                )
            ],
        )
        return self.touch(seen_at=device_time or self.event.received_at)

    def ref(self) -> DeviceRef:
        return DeviceRef(
            self.integ.organization_id,
            self.integ.integration_id,
            self.device_id(),
            self.session.run.run_id,
            self.event.event_id,
            utc_now(),
        )

    def count(self, outcome: Outcome) -> _Effect:
        if outcome == "created":
            self.effect.created += 1
        elif outcome == "updated":
            self.effect.updated += 1
        else:
            self.effect.stale = True
        return self.effect

    def write_device(self, record: DeviceRecord, key: RegistryKey) -> _Effect:
        """The provider created or changed the device: store it, if newer than the row."""
        integ = self.integ
        row = device_row(
            record,
            organization_id=integ.organization_id,
            integration_id=integ.integration_id,
            run_id=self.session.run.run_id,
            request_id=self.event.event_id,
            now=utc_now(),
        )
        effect = self.count(apply_registry_write(self.conn, self.ref(), row, key))
        if not effect.stale:
            effect.written = record
        return effect

    def delete_device(self, key: RegistryKey) -> _Effect:
        """The provider deleted the device: soft-delete it now, if newer than the row (one never
        stored is remembered as a deleted tombstone, so an older creation cannot bring it in)."""
        outcome = apply_registry_deletion(self.conn, self.ref(), key)
        if outcome == "updated":
            self.effect.deleted += 1
        elif outcome == "unchanged":
            self.effect.stale = True
        return self.effect

    def connection(self, status: str, key: ConnectionKey, seen_at: datetime | None) -> _Effect:
        return self.count(apply_connection(self.conn, self.ref(), status, key, seen_at=seen_at))

    def ignore(self) -> _Effect:
        self.effect.ignored = self.event.event_type
        return self.effect

    def received_at(self) -> datetime:
        return self.event.received_at or utc_now()


def _apply_azure(w: _Writer) -> _Effect:
    event = w.event.payload
    kind = w.event.event_type.removeprefix("Microsoft.Devices.")
    data = event.get("data") if isinstance(event, dict) else None
    data = data if isinstance(data, dict) else {}
    when = _iso_time(event.get("eventTime")) if isinstance(event, dict) else None
    twin = data.get("twin")
    if kind in ("DeviceCreated", "DeviceDeleted"):
        version = twin.get("version") if isinstance(twin, dict) else None
        key = RegistryKey(
            at=when or w.received_at(),
            version=version if isinstance(version, int) and not isinstance(version, bool) else None,
        )
        if kind == "DeviceDeleted":
            return w.delete_device(key)
        if not isinstance(twin, dict):
            raise UnapplicableEvent("DeviceCreated event has no data.twin object")
        return w.write_device(twin_to_device({**twin, "deviceId": w.device_id()}), key)
    if kind in ("DeviceConnected", "DeviceDisconnected"):
        info = data.get("deviceConnectionStateEventInfo")
        sequence = info.get("sequenceNumber") if isinstance(info, dict) else None
        key = ConnectionKey(_azure_sequence(sequence), when)
        if kind == "DeviceConnected":
            return w.connection("connected", key, seen_at=when)
        return w.connection("disconnected", key, seen_at=None)
    if kind == "DeviceTelemetry":
        return w.reading("azure/telemetry", data.get("body"), when)
    return w.ignore()


def _azure_sequence(value: Any) -> str | None:
    """sequenceNumber as fixed-width upper-case hex: compared bytewise it orders like the number."""
    if value is None:
        return None
    digits = value.strip().upper() if isinstance(value, str) else ""
    if not digits or len(digits) > AZURE_SEQUENCE_DIGITS or digits.strip("0123456789ABCDEF"):
        raise UnapplicableEvent(
            f"sequenceNumber {value!r:.80} is not a hexadecimal number of at most "
            f"{AZURE_SEQUENCE_DIGITS} digits"
        )
    return digits.rjust(AZURE_SEQUENCE_DIGITS, "0")


def _apply_golioth(w: _Writer) -> _Effect:
    payload, device_time = w.event.payload, None
    if (
        isinstance(payload, dict) and "device_id" in payload and "data" in payload
    ):  # inject-metadata
        payload, device_time = payload["data"], _proto_time(w.event.payload.get("timestamp"))
    return w.reading(w.event.event_type, payload, device_time)


#: AWS registry events: `$aws/events/thing/<name>/created|updated|deleted`
AWS_THING_EVENT = "THING_EVENT"


def _apply_aws(w: _Writer) -> _Effect:
    payload = w.event.payload
    if w.event.event_type == "DestinationConfirmation":
        return w.ignore()  # recorded for an operator to confirm; nothing to apply
    when = _epoch_ms_time(payload.get("timestamp")) if isinstance(payload, dict) else None
    if w.event.event_type == AWS_THING_EVENT and isinstance(payload, dict):
        return _apply_aws_thing_event(w, payload, when)
    if (
        w.event.event_type in ("connected", "disconnected")
        and isinstance(payload, dict)
        and "clientId" in payload
    ):
        connected = w.event.event_type == "connected"
        version = _aws_version(payload)
        # one versionNumber per connection of a client: its disconnection comes after it
        sequence = None if version is None else f"{version:020d}{0 if connected else 1}"
        return w.connection(
            w.event.event_type, ConnectionKey(sequence, when), seen_at=when if connected else None
        )
    topic = payload.get("topic") if isinstance(payload, dict) else None
    return w.reading(topic if isinstance(topic, str) and topic else "aws/rule", payload, when)


def _apply_aws_thing_event(w: _Writer, payload: dict[str, Any], when: datetime | None) -> _Effect:
    operation = payload.get("operation")
    thing_id = payload.get("thingId")
    key = RegistryKey(
        at=when or w.received_at(),
        version=_aws_version(payload),
        generation=thing_id if isinstance(thing_id, str) and thing_id else None,
    )
    if operation == "DELETED":
        return w.delete_device(key)
    if operation not in ("CREATED", "UPDATED"):
        raise UnapplicableEvent(
            f"registry event operation {operation!r:.40} is not CREATED, UPDATED or DELETED"
        )
    thing = {
        "thingName": w.device_id(),
        "attributes": payload.get("attributes") or {},
        "thingTypeName": payload.get("thingTypeName"),
        "version": key.version,
    }
    tags_attribute = getattr(integration_settings(w.integ), "tags_attribute", "tags")
    try:
        record = thing_to_device(thing, tags_attribute)
    except (TypeError, ValueError) as exc:
        raise UnapplicableEvent(str(exc)) from exc
    return w.write_device(record, key)


def _aws_version(payload: dict[str, Any]) -> int | None:
    version = payload.get("versionNumber")
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise UnapplicableEvent(f"versionNumber {version!r:.40} is not a non-negative integer")
    return version


_APPLIERS = {"azure_iot": _apply_azure, "golioth": _apply_golioth, "aws_iot": _apply_aws}


# -- times as each sender writes them ---------------------------------------------------------------


def _iso_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise UnapplicableEvent(f"eventTime {value!r:.40} is not an ISO 8601 time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _proto_time(value: Any) -> datetime | None:
    """inject-metadata's `{"seconds": …, "nanos": …}` (int64 seconds may arrive as a string)."""
    if not isinstance(value, dict):
        return None
    try:
        seconds = int(value.get("seconds", 0))
        nanos = int(value.get("nanos", 0))
        return datetime.fromtimestamp(seconds + nanos / 1e9, UTC)
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise UnapplicableEvent(f"timestamp {value!r:.60} is not a protobuf Timestamp") from exc


def _epoch_ms_time(value: Any) -> datetime | None:
    """AWS rule `timestamp()` and presence events: Unix milliseconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise UnapplicableEvent(f"timestamp {value!r} is not Unix milliseconds") from exc
