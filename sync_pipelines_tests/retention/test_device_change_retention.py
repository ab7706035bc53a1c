"""The devices' history is kept 90 days by the retention job: on Postgres whole expired months
of `device_changes` are dropped and the boundary month (and the default partition) trimmed to
the cutoff; on SQLite the rows are deleted."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from sync_pipelines.clock import utc_now
from sync_pipelines.store.activity_partitions import month_of
from sync_pipelines.store.device_changes import ensure_device_change_partitions
from sync_pipelines.store.retention import RetentionPolicy, purge_expired
from sync_pipelines_tests.retention.seeding import Seeded, remaining

NOW = utc_now()


def test_changes_older_than_90_days_go_whole_months_dropped_on_postgres(store):
    long_ago = NOW - timedelta(days=200)
    with store.transaction() as conn:
        created = ensure_device_change_partitions(conn, now=long_ago, months_ahead=0)
        s = Seeded(conn)
        s.device_change(long_ago, kept=False)
        s.device_change(NOW - timedelta(days=95), kept=False)
        s.device_change(NOW - timedelta(days=85), kept=True)
        s.device_change(NOW - timedelta(minutes=1), kept=True)

    report = purge_expired(store, RetentionPolicy(days=90), now=NOW)

    with store.connect() as conn:
        assert remaining(conn, "device_changes") == s.kept("device_changes")
    assert report.deleted["device_changes"] == 2
    if store.is_postgres:
        month = f"device_changes_p{month_of(long_ago):%Y%m}"
        assert created == [month]
        assert month in report.partitions_dropped
        with store.connect() as conn:
            assert conn.execute(sa.text("SELECT to_regclass(:m)"), {"m": month}).scalar() is None
    else:
        assert report.partitions_dropped == ()
