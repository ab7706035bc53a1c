"""Loss the broker knows of is visible at drain time, against a real Mosquitto, on SQLite and
PostgreSQL: messages dropped on queue overflow (the broker's `$SYS` counter) and a persistent
session lost in a restart make the drain `partial`, with the count or "session lost" in its
sync log, a failed activity row and a `telemetry_loss` incident; a drain without loss resolves
the incident."""

from __future__ import annotations

from sync_pipelines.alerts.rules import CRITICAL, TELEMETRY_LOSS, WARNING
from sync_pipelines.observability.activity import TELEMETRY_GAP, TELEMETRY_IMPORT
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.alerts import list_incidents
from sync_pipelines.store.database import load_json
from sync_pipelines.store.sync_state import sync_log_rows
from sync_pipelines.store.telemetry import count_telemetry, gap_rows
from sync_pipelines.sync.telemetry import sync_telemetry

from ..mqtt_support import (
    broker_dropped,
    new_broker,
    register_mqtt,
    simulator,
    unique_prefix,
    wait_until_broker_reports_dropped,
)


def _sync(open_session, store, integ):
    with open_session(store, integ.integration_id) as session:
        return sync_telemetry(session, window_s=10.0)


def _rows(store, integ, activity_type):
    with store.connect() as conn:
        return activity_rows(
            conn,
            integ.organization_id,
            integration_id=integ.integration_id,
            activity_type=activity_type,
        )


def _incidents(store, integ):
    with store.connect() as conn:
        return [
            i
            for i in list_incidents(conn, integ.organization_id)
            if i.integration_id == integ.integration_id and i.rule == TELEMETRY_LOSS
        ]


def test_a_queue_overflow_ends_the_drain_partial_naming_the_dropped_count_and_alerts(
    store, monkeypatch, open_session
):
    """The issue's case: queue capped at 100, 1,000 messages while the consumer is away. The
    broker keeps the oldest 100 and drops 900; no `seq` gap can show yet (the newest are gone),
    but the broker's counter says 900."""
    broker = new_broker(max_queued_messages=100, max_inflight_messages=20, sys_interval=1)
    try:
        prefix = unique_prefix()
        integ = register_mqtt(store, broker, monkeypatch, prefix)
        created = _sync(open_session, store, integ)  # the persistent session and the watermark
        with simulator(broker, prefix) as sim:
            assert sim.publish_telemetry(["x1"], 1000) == 1000  # every one PUBACKed
        wait_until_broker_reports_dropped(broker, 900)

        drained = _sync(open_session, store, integ)
        quiet = _sync(open_session, store, integ)  # nothing new dropped: resolves the alert
        with simulator(broker, prefix) as sim:
            sim.publish_telemetry(["x1"], 1, start_seq=1000)
        later = _sync(open_session, store, integ)  # the device moved on: now the gap shows too
        dropped_in_total = broker_dropped(broker)
    finally:
        broker.cleanup()

    print(
        f"overflow: drained {drained.status} fetched={drained.counts.fetched} "
        f"created={drained.counts.created} gaps={drained.counts.gaps}; broker dropped "
        f"{dropped_in_total}"
    )
    assert created.status == "success"
    assert (drained.status, drained.counts.created, drained.counts.gaps) == ("partial", 100, 0)
    assert dropped_in_total == 900
    with store.connect() as conn:
        logs = sync_log_rows(conn, integ.organization_id, integ.integration_id)
        stored = count_telemetry(conn, integ.organization_id, integ.integration_id)
        gaps = gap_rows(conn, integ.organization_id, integ.integration_id)
    log = next(row for row in logs if row["id"] == drained.sync_id)
    assert (log["status"], log["created"], log["error_type"]) == ("partial", 100, "broker_dropped")
    assert log["error_message"].startswith(
        "broker reported 900 messages dropped while this drain's session was away; "
        "the counter is broker-wide"
    )
    assert load_json(log["cursor_after"])["broker_dropped"] == 900

    lost = [r for r in _rows(store, integ, TELEMETRY_GAP) if r["error_type"] == "broker_dropped"]
    assert len(lost) == 1 and lost[0]["status"] == "failed"
    assert load_json(lost[0]["metadata"])["dropped"] == 900
    operation = next(
        r for r in _rows(store, integ, TELEMETRY_IMPORT) if r["run_id"] == log["run_id"]
    )
    assert operation["status"] == "partial"
    assert load_json(operation["metadata"])["broker_dropped"] == 900

    (incident,) = _incidents(store, integ)
    assert (incident.severity, incident.details["dropped"]) == (WARNING, 900)
    assert incident.details["sync_id"] == drained.sync_id
    assert "900 messages dropped" in incident.summary
    assert incident.status == "resolved"  # by the quiet drain
    assert quiet.status == "success" and quiet.counts.fetched == 0

    # the gap the drops left shows once the device publishes again, and is recorded then
    assert (later.status, later.counts.gaps, stored) == ("partial", 1, 101)
    assert [(g["first_missing"], g["last_missing"], g["missing_count"]) for g in gaps] == [
        (100, 999, 900)
    ]


def test_a_session_lost_in_a_broker_restart_without_persistence_ends_partial_session_lost(
    store, monkeypatch, open_session
):
    broker = new_broker(persistence=False, sys_interval=1)
    try:
        prefix = unique_prefix()
        integ = register_mqtt(store, broker, monkeypatch, prefix)
        first = _sync(open_session, store, integ)  # a new session: expected, no loss
        broker.restart()  # no persistence: the session and its subscription are gone
        with simulator(broker, prefix) as sim:
            sim.publish_telemetry(["s1", "s2"], 10)  # nobody subscribed: never queued
        lost = _sync(open_session, store, integ)
        resumed = _sync(open_session, store, integ)
    finally:
        broker.cleanup()

    print(f"session: first {first.status}, after restart {lost.status}, then {resumed.status}")
    assert first.status == "success"
    assert (lost.status, lost.counts.fetched) == ("partial", 0)
    assert resumed.status == "success"
    with store.connect() as conn:
        logs = {
            r["id"]: r for r in sync_log_rows(conn, integ.organization_id, integ.integration_id)
        }
    log = logs[lost.sync_id]
    assert (log["status"], log["error_type"]) == ("partial", "session_lost")
    assert log["error_message"].startswith("session lost: the broker had no session for client id")
    rows = [r for r in _rows(store, integ, TELEMETRY_GAP) if r["error_type"] == "session_lost"]
    assert len(rows) == 1 and rows[0]["status"] == "failed"
    (incident,) = _incidents(store, integ)
    assert (incident.severity, incident.details["session_lost"]) == (CRITICAL, True)
    assert incident.status == "resolved"  # the resumed session had everything
