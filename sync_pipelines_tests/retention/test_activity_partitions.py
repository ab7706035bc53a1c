"""The activity log's monthly partitions on Postgres: rows land in their month's child table (or
the default partition), the purge drops expired months whole and prunes the boundary month and
the default partition, partitions are created ahead, and a tenant is held to its organization
through the parent and through any child table. On SQLite every partition call is a no-op."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import psycopg
import sqlalchemy as sa

from sync_pipelines.clock import utc_now
from sync_pipelines.observability.activity import ActivityRecorder, ActivityScope
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.activity_partitions import (
    DEFAULT_PARTITION,
    ensure_activity_partitions,
    list_activity_partitions,
    month_of,
)
from sync_pipelines.store.retention import RetentionPolicy, purge_expired
from sync_pipelines.sync.activity_sink import StoreActivitySink
from sync_pipelines_tests.retention.seeding import Seeded, remaining

NOW = utc_now()


def _partition_of(moment: datetime) -> str:
    return f"integration_activity_log_p{moment.astimezone(UTC):%Y%m}"


def _months_after(moment: datetime, months: int) -> datetime:
    first = month_of(moment)
    year, month = divmod(first.month - 1 + months, 12)
    return datetime(first.year + year, month + 1, 1, tzinfo=UTC)


def _children(store) -> set[str]:
    with store.connect() as conn:
        return set(
            conn.execute(
                sa.text(
                    "SELECT inhrelid::regclass::text FROM pg_inherits "
                    "WHERE inhparent = 'integration_activity_log'::regclass"
                )
            ).scalars()
        )


def _homes(store) -> dict[str, str]:
    with store.connect() as conn:
        return dict(
            conn.execute(
                sa.text("SELECT id, tableoid::regclass::text FROM integration_activity_log")
            ).all()
        )


def test_rows_land_in_their_months_partition_and_unknown_months_in_the_default(pg_store):
    with pg_store.transaction() as conn:
        ensure_activity_partitions(conn, now=NOW - timedelta(days=100), months_ahead=3)
        s = Seeded(conn)
        months = [NOW - timedelta(days=d) for d in (100, 70, 40)]
        in_months = [s.activity(at, kept=True) for at in months]
        far_past = s.activity(NOW - timedelta(days=3 * 365), kept=True)

    homes = _homes(pg_store)
    assert [homes[i] for i in in_months] == [_partition_of(at) for at in months]
    assert homes[far_past] == DEFAULT_PARTITION


def test_creating_a_month_moves_its_rows_out_of_the_default_partition(pg_store):
    later = NOW + timedelta(days=12 * 365)  # a month no test creates (test_retention_job: 2031-32)
    with pg_store.transaction() as conn:
        waiting = Seeded(conn).activity(later, kept=True)
    assert _homes(pg_store)[waiting] == DEFAULT_PARTITION

    with pg_store.transaction() as conn:
        created = ensure_activity_partitions(conn, now=later, months_ahead=0)

    assert created == [_partition_of(later)]
    assert _homes(pg_store)[waiting] == _partition_of(later)
    with pg_store.transaction() as conn:  # a second time: nothing to do
        assert ensure_activity_partitions(conn, now=later, months_ahead=0) == []


def test_the_purge_drops_expired_months_prunes_the_rest_and_creates_months_ahead(pg_store):
    with pg_store.transaction() as conn:
        ensure_activity_partitions(conn, now=NOW - timedelta(days=200), months_ahead=5)
        s = Seeded(conn)
        for days in (200, 170, 150, 120, 95):
            s.activity(NOW - timedelta(days=days), kept=False)
        s.activity(NOW - timedelta(days=4 * 365), kept=False)  # the default partition
        s.activity(NOW - timedelta(days=60), kept=True)
        s.activity(NOW - timedelta(days=1), kept=True)
        s.activity(NOW + timedelta(days=4 * 365), kept=True)  # the default partition, future
    cutoff = NOW - timedelta(days=90)
    before = _children(pg_store)
    with pg_store.connect() as conn:
        expired = {p.name for p in list_activity_partitions(conn) if p.upper and p.upper <= cutoff}
    assert {_partition_of(NOW - timedelta(days=d)) for d in (200, 170, 150)} <= expired

    report = purge_expired(pg_store, RetentionPolicy(days=90), now=NOW)

    after = _children(pg_store)
    assert before - after == expired
    assert set(report.partitions_dropped) == expired
    ahead = {_partition_of(_months_after(NOW, m)) for m in (0, 1, 2)}
    assert ahead <= after
    assert set(report.partitions_created) == ahead - before
    assert DEFAULT_PARTITION in after
    with pg_store.connect() as conn:
        assert remaining(conn, "integration_activity_log") == s.kept("integration_activity_log")
    assert report.deleted["integration_activity_log"] == 6


def test_a_partition_whose_drop_cannot_get_its_lock_is_emptied_instead(pg_store, postgres_url):
    old = NOW - timedelta(days=200)
    with pg_store.transaction() as conn:
        ensure_activity_partitions(conn, now=old, months_ahead=0)
        s = Seeded(conn)
        s.activity(old, kept=False)
        s.activity(old + timedelta(minutes=1), kept=False)
    busy = _partition_of(old)
    reader = psycopg.connect(postgres_url)  # a long reader holding the month open
    try:
        reader.execute(f"SELECT count(*) FROM {busy}").fetchone()
        report = purge_expired(pg_store, RetentionPolicy(days=90, lock_timeout_s=0.2), now=NOW)
    finally:
        reader.rollback()
        reader.close()

    assert busy not in report.partitions_dropped
    assert busy in _children(pg_store)
    assert report.deleted["integration_activity_log"] == 2
    with pg_store.connect() as conn:
        assert remaining(conn, "integration_activity_log") == set()
    # the next purge drops it
    assert busy in purge_expired(pg_store, RetentionPolicy(days=90), now=NOW).partitions_dropped


def test_every_partition_has_the_tenant_policy(pg_store):
    with pg_store.transaction() as conn:
        ensure_activity_partitions(conn, now=NOW + timedelta(days=6 * 365), months_ahead=1)
    with pg_store.connect() as conn:
        unprotected = (
            conn.execute(
                sa.text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'integration_activity_log'::regclass AND (NOT c.relrowsecurity "
                    "OR NOT EXISTS (SELECT 1 FROM pg_policies p WHERE p.tablename = c.relname "
                    "AND p.policyname = 'tenant_isolation'))"
                )
            )
            .scalars()
            .all()
        )
    assert unprotected == []


def test_a_tenant_sees_only_its_organization_through_the_parent_and_every_child(
    pg_store, tenant_url
):
    at = NOW - timedelta(days=10)
    with pg_store.transaction() as conn:
        ensure_activity_partitions(conn, now=at, months_ahead=0)
        for org in ("org-a", "org-b"):
            s = Seeded(conn, org)
            s.activity(at, kept=True)
            s.activity(NOW - timedelta(days=3 * 365), kept=True)  # default partition
    month, children = _partition_of(at), _children(pg_store)
    assert {month, DEFAULT_PARTITION} <= children

    with psycopg.connect(tenant_url, autocommit=True) as tenant:
        for table in ("integration_activity_log", month, DEFAULT_PARTITION):
            # before saying who it is: nothing
            assert tenant.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table
        tenant.execute("SET sync.organization_id = 'org-a'")
        assert tenant.execute(
            "SELECT DISTINCT organization_id FROM integration_activity_log"
        ).fetchall() == [("org-a",)]
        for child in sorted(children):
            orgs = {r[0] for r in tenant.execute(f"SELECT organization_id FROM {child}")}
            assert orgs <= {"org-a"}, f"{child} shows another organization's rows"
        assert tenant.execute(f"SELECT count(*) FROM {month}").fetchone()[0] == 1
        assert tenant.execute(f"SELECT count(*) FROM {DEFAULT_PARTITION}").fetchone()[0] == 1
        deleted = tenant.execute(f"DELETE FROM {month} WHERE organization_id = 'org-b'")
        assert deleted.rowcount == 0


def test_partition_calls_are_no_ops_on_sqlite(sqlite_store):
    with sqlite_store.transaction() as conn:
        assert ensure_activity_partitions(conn, now=NOW, months_ahead=2) == []
        assert list_activity_partitions(conn) == []
        Seeded(conn).activity(NOW - timedelta(days=120), kept=False)
    report = purge_expired(sqlite_store, RetentionPolicy(), now=NOW)
    assert (report.partitions_created, report.partitions_dropped) == ((), ())
    assert report.deleted["integration_activity_log"] == 1


def test_the_recorder_writes_and_completes_rows_through_the_partitioned_log(pg_store):
    """COPY (batched rows) and UPDATE ... WHERE organization_id AND id (an operation's outcome)
    work unchanged with the (id, created_at) key."""
    recorder = ActivityRecorder(
        StoreActivitySink(pg_store), ActivityScope(organization_id="org-a", run_id="run-p")
    )
    with recorder.operation("import") as op:
        row = recorder.new_row("http_request", status="success")
        recorder.record(row)
        op.annotate(fetched=3)
    with pg_store.connect() as conn:
        rows = {r["id"]: r for r in activity_rows(conn, "org-a", run_id="run-p")}
        key = conn.execute(
            sa.text(
                "SELECT array_agg(a.attname::text ORDER BY array_position(i.indkey, a.attnum)) "
                "FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) "
                "WHERE i.indrelid = 'integration_activity_log'::regclass AND i.indisprimary"
            )
        ).scalar_one()
    assert key == ["id", "created_at"]
    assert rows[op.id]["status"] == "success"
    assert rows[op.id]["metadata"]["fetched"] == 3
    assert rows[op.id]["metadata"]["worker"]["pid"] == os.getpid()
    assert rows[row.id]["parent_id"] == op.id
    assert _homes(pg_store)[op.id] == _partition_of(rows[op.id]["created_at"])
