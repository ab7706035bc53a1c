"""The purge, table by table, on SQLite and Postgres: rows past the cutoff go, newer rows and
protected rows (open work, webhook events younger than 7 days, each stream's latest sync) stay,
and the counts reported are the rows that went."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sync_pipelines.clock import utc_now
from sync_pipelines.observability.activity import ActivityRecorder
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.retention import (
    RETENTION,
    RULES,
    RetentionPolicy,
    purge_expired,
    retention_scope,
)
from sync_pipelines.sync.activity_sink import StoreActivitySink
from sync_pipelines_tests.retention.seeding import KEYS, Seeded, remaining

NOW = utc_now()
OLD = NOW - timedelta(days=120)
NEW = NOW - timedelta(days=1)


def _seed_every_table(store) -> Seeded:
    with store.transaction() as conn:
        s = Seeded(conn)
        s.activity(OLD, kept=False)
        s.activity(NEW, kept=True)

        # int-a/devices: two old rows before a newer good one go
        s.sync_log(OLD - timedelta(days=10), "success", kept=False)
        s.sync_log(OLD, "running", kept=False)  # a run that died 120 days ago
        s.sync_log(NEW, "success", kept=True)
        # int-b: its only row is old, and it is the newest the stream has
        s.sync_log(OLD, "failed", kept=True, integration_id="int-b")
        # int-c: the newest good row is old and stays; an old failure before it goes
        s.sync_log(OLD - timedelta(days=5), "failed", kept=False, integration_id="int-c")
        s.sync_log(OLD, "partial", kept=True, integration_id="int-c")
        s.sync_log(NEW, "failed", kept=True, integration_id="int-c")

        s.webhook_event(OLD, "processed", kept=False)
        s.webhook_event(OLD, "pending", kept=True)
        s.webhook_event(OLD, "processing", kept=True)
        s.webhook_event(NEW, "processed", kept=True)
        open_failure = s.webhook_event(OLD, "failed", kept=True)
        settled_failure = s.webhook_event(OLD, "failed", kept=False)

        s.dead_letter(OLD, "resolved", kept=False)
        s.dead_letter(OLD, "quarantined", kept=False)
        s.dead_letter(OLD, "pending", kept=True)
        s.dead_letter(OLD, "retrying", kept=True)
        s.dead_letter(NEW, "resolved", kept=True)
        s.dead_letter(OLD, "pending", kept=True, stream="webhook_events", dedupe_key=open_failure)
        s.dead_letter(
            OLD, "resolved", kept=False, stream="webhook_events", dedupe_key=settled_failure
        )

        resolved = s.incident(OLD, "resolved", kept=False)
        still_open = s.incident(OLD, "open", kept=True)
        s.incident(NEW, "resolved", kept=True)
        s.notification(OLD, resolved, kept=False)
        s.notification(OLD, still_open, kept=True)
        s.notification(OLD, None, kept=False)
        s.notification(NEW, resolved, kept=True)

        s.check_result(OLD, kept=False)
        s.check_result(NEW, kept=True)
        s.event_failure(OLD, kept=False)
        s.event_failure(NEW, kept=True)
        s.telemetry(OLD, kept=False)
        s.telemetry(NEW, kept=True)
        s.gap(OLD, kept=False)
        s.gap(NEW, kept=True)
        s.call_hour(OLD, kept=False)
        s.call_hour(NEW, kept=True)
        s.device_change(OLD, kept=False)
        s.device_change(NOW - timedelta(days=91), kept=False)
        s.device_change(NOW - timedelta(days=89), kept=True)
        s.device_change(NEW, kept=True)
    return s


def test_every_table_retention_covers_is_seeded_and_asserted():
    assert {rule.table for rule in RULES} == set(KEYS)


def test_old_rows_go_and_new_and_protected_rows_stay_in_every_table(store):
    seeded = _seed_every_table(store)

    report = purge_expired(store, RetentionPolicy(days=90), now=NOW)

    with store.connect() as conn:
        for table in KEYS:
            assert remaining(conn, table) == seeded.kept(table), table
    assert report.deleted == {table: len(seeded.gone(table)) for table in KEYS}
    assert report.total_deleted == sum(len(seeded.gone(t)) for t in KEYS)
    assert not report.dry_run


def test_a_dry_run_counts_the_same_rows_and_changes_nothing(store):
    seeded = _seed_every_table(store)

    report = purge_expired(store, RetentionPolicy(days=90), now=NOW, dry_run=True)

    assert report.dry_run
    assert report.partitions_created == ()
    assert report.deleted == {table: len(seeded.gone(table)) for table in KEYS}
    with store.connect() as conn:
        for table in KEYS:
            assert remaining(conn, table) == set(seeded.expected[table]), table


def test_a_processed_webhook_event_stays_7_days_even_with_a_1_day_setting(store):
    with store.transaction() as conn:
        s = Seeded(conn)
        s.webhook_event(NOW - timedelta(days=5), "processed", kept=True)
        s.webhook_event(NOW - timedelta(days=8), "processed", kept=False)
        s.activity(NOW - timedelta(days=2), kept=False)
        s.activity(NOW - timedelta(hours=12), kept=True)

    report = purge_expired(store, RetentionPolicy(days=1), now=NOW)

    with store.connect() as conn:
        assert remaining(conn, "webhook_events") == s.kept("webhook_events")
        assert remaining(conn, "integration_activity_log") == s.kept("integration_activity_log")
    assert report.deleted["webhook_events"] == 1
    assert report.deleted["integration_activity_log"] == 1


def test_telemetry_follows_its_own_setting(store):
    with store.transaction() as conn:
        s = Seeded(conn)
        s.telemetry(NOW - timedelta(days=20), kept=False)
        s.telemetry(NOW - timedelta(days=5), kept=True)
        s.gap(NOW - timedelta(days=20), kept=False)
        s.activity(NOW - timedelta(days=20), kept=True)  # logs: 90 days

    report = purge_expired(store, RetentionPolicy(days=90, telemetry_days=10), now=NOW)

    with store.connect() as conn:
        assert remaining(conn, "device_telemetry") == s.kept("device_telemetry")
        assert remaining(conn, "telemetry_gaps") == set()
        assert remaining(conn, "integration_activity_log") == s.kept("integration_activity_log")
    assert report.deleted["device_telemetry"] == 1


def test_telemetry_days_0_keeps_telemetry_forever(store):
    with store.transaction() as conn:
        s = Seeded(conn)
        s.telemetry(NOW - timedelta(days=3000), kept=True)
        s.gap(NOW - timedelta(days=3000), kept=True)

    report = purge_expired(store, RetentionPolicy(telemetry_days=0), now=NOW)

    with store.connect() as conn:
        assert remaining(conn, "device_telemetry") == s.kept("device_telemetry")
        assert remaining(conn, "telemetry_gaps") == s.kept("telemetry_gaps")
    by_table = {t.table: t for t in report.tables}
    assert by_table["device_telemetry"].cutoff is None
    assert by_table["device_telemetry"].deleted == 0


@pytest.mark.parametrize("chunk_size", [1, 2, 3])
def test_small_chunks_delete_exactly_the_expired_rows(store, chunk_size):
    with store.transaction() as conn:
        s = Seeded(conn)
        for i in range(7):
            s.activity(OLD - timedelta(minutes=i), kept=False)
            s.telemetry(OLD - timedelta(minutes=i), kept=False)  # a three-column key
        for i in range(3):
            s.activity(NEW - timedelta(minutes=i), kept=True)
            s.telemetry(NEW - timedelta(minutes=i), kept=True)

    report = purge_expired(store, RetentionPolicy(chunk_size=chunk_size), now=NOW)

    with store.connect() as conn:
        assert remaining(conn, "integration_activity_log") == s.kept("integration_activity_log")
        assert remaining(conn, "device_telemetry") == s.kept("device_telemetry")
    assert report.deleted["integration_activity_log"] == 7
    assert report.deleted["device_telemetry"] == 7


def test_a_purge_is_one_retention_activity_row_of_the_system_organization(store):
    with store.transaction() as conn:
        s = Seeded(conn)
        s.activity(OLD, kept=False)
        s.check_result(OLD, kept=False)
    recorder = ActivityRecorder(
        StoreActivitySink(store),
        retention_scope(run_id="run-retention", step_key="purge", job_name="test"),
    )

    purge_expired(store, RetentionPolicy(), now=NOW, recorder=recorder)

    with store.connect() as conn:
        rows = activity_rows(conn, "_system", activity_type=RETENTION)
    assert len(rows) == 1
    row = rows[0]
    assert (row["status"], row["run_id"], row["integration_id"]) == (
        "success",
        "run-retention",
        None,
    )
    assert row["metadata"]["deleted"]["integration_activity_log"] == 1
    assert row["metadata"]["deleted"]["integration_check_results"] == 1
    assert row["metadata"]["total_deleted"] == 2
    assert row["metadata"]["retention_days"] == 90


def test_a_dry_run_records_no_activity(store):
    with store.transaction() as conn:
        Seeded(conn).activity(OLD, kept=True)
    recorder = ActivityRecorder(
        StoreActivitySink(store),
        retention_scope(run_id="run-dry", step_key="purge", job_name="test"),
    )

    report = purge_expired(store, RetentionPolicy(), now=NOW, dry_run=True, recorder=recorder)

    assert report.deleted["integration_activity_log"] == 1
    with store.connect() as conn:
        assert activity_rows(conn, "_system") == []
        assert len(remaining(conn, "integration_activity_log")) == 1
