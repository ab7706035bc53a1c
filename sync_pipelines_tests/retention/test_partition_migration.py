"""sql/011 on a Postgres store that already has activity rows: every row is kept, each in its
month's partition, with the indexes of 001 and row-level security on the parent and children."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from sync_pipelines.clock import utc_now
from sync_pipelines.store.activity_partitions import (
    DEFAULT_PARTITION,
    list_activity_partitions,
    month_of,
)
from sync_pipelines.store.database import Store
from sync_pipelines.store.migrations import SQL_DIR_ENV, migrate, sql_dir
from sync_pipelines_tests.conftest import POSTGRES_ADMIN_URL
from sync_pipelines_tests.retention.seeding import Seeded

PARTITIONING = "011_activity_partitions.postgres.sql"


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """An empty database of its own: this test migrates it in two steps."""
    name = f"sync_retention_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_partitioning_an_activity_log_with_rows_keeps_every_row(
    fresh_postgres_url, tmp_path, monkeypatch
):
    migrations = sorted(sql_dir().glob("*.sql"))
    for path in migrations:  # the schema as it was before 011
        if path.name < PARTITIONING:
            shutil.copy(path, tmp_path / path.name)
    monkeypatch.setenv(SQL_DIR_ENV, str(tmp_path))
    store = Store(fresh_postgres_url)
    try:
        assert PARTITIONING not in migrate(store)
        now = utc_now()
        with store.transaction() as conn:
            s = Seeded(conn)
            ages = (0, 1, 35, 70, 400, 3 * 365)
            for org in ("org-a", "org-b"):
                for days in ages:
                    s.activity(now - timedelta(days=days), kept=True, organization_id=org)
        before = _rows(store)

        for path in migrations:  # 011 and whatever came after it
            if path.name >= PARTITIONING:
                shutil.copy(path, tmp_path / path.name)
        assert PARTITIONING in migrate(store)

        assert _rows(store) == before
        assert len(before) == 2 * len(ages)
        with store.connect() as conn:
            homes = dict(
                conn.execute(
                    sa.text("SELECT id, tableoid::regclass::text FROM integration_activity_log")
                ).all()
            )
            partitions = list_activity_partitions(conn)
            kind = conn.execute(
                sa.text(
                    "SELECT relkind FROM pg_class WHERE oid = 'integration_activity_log'::regclass"
                )
            ).scalar_one()
            indexes = set(
                conn.execute(
                    sa.text(
                        "SELECT indexrelid::regclass::text FROM pg_index "
                        "WHERE indrelid = 'integration_activity_log'::regclass"
                    )
                ).scalars()
            )
            unprotected = (
                conn.execute(
                    sa.text(
                        "SELECT relname FROM pg_class WHERE relname = ANY(:t) AND NOT relrowsecurity"
                    ),
                    {"t": ["integration_activity_log", *(p.name for p in partitions)]},
                )
                .scalars()
                .all()
            )
        assert kind == "p"
        assert DEFAULT_PARTITION not in homes.values()  # every existing row's month was created
        for row_id, created_at in before.items():
            assert homes[row_id] == f"integration_activity_log_p{created_at:%Y%m}"
        months = {p.lower.date() for p in partitions if p.lower}
        current = month_of(now)
        for ahead in range(3):  # the current month and two ahead
            year, month = divmod(current.month - 1 + ahead, 12)
            assert current.replace(year=current.year + year, month=month + 1) in months
        assert {
            "activity_org_integration_created_idx",
            "activity_request_id_idx",
            "activity_run_id_idx",
            "activity_parent_id_idx",
        } <= indexes
        assert unprotected == []
    finally:
        store.dispose()


def _rows(store: Store) -> dict[str, object]:
    with store.connect() as conn:
        return dict(
            conn.execute(
                sa.text("SELECT id, created_at AT TIME ZONE 'UTC' FROM integration_activity_log")
            ).all()
        )


def test_the_partitioning_file_is_postgres_only():
    assert (Path(sql_dir()) / PARTITIONING).exists()
    from sync_pipelines.store.migrations import migrations_for

    assert PARTITIONING in {m.version for m in migrations_for("postgresql")}
    assert PARTITIONING not in {m.version for m in migrations_for("sqlite")}
