"""Migrations: applied once, in order, on both engines, even by concurrent starters."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from sync_pipelines.store.database import Store
from sync_pipelines.store.migrations import (
    migrate,
    migrations_for,
    pending_migrations,
    split_sqlite_statements,
)

CORE_TABLES = {
    "organizations",
    "integrations",
    "devices",
    "device_states",
    "integration_activity_log",
    "integration_sync_log",
    "integration_sync_state",
}


def test_migrating_a_migrated_store_applies_nothing(store):
    assert migrate(store) == []
    assert pending_migrations(store) == []


def test_every_core_table_exists_and_carries_organization_id(store):
    inspector = sa.inspect(store.engine)
    assert set(inspector.get_table_names()) >= CORE_TABLES
    for table in CORE_TABLES:
        assert "organization_id" in {c["name"] for c in inspector.get_columns(table)}, table


def test_a_fresh_sqlite_store_gets_every_migration_once(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/fresh.db")
    assert migrate(store) == [m.version for m in migrations_for("sqlite")]
    with store.connect() as conn:
        versions = conn.execute(sa.text("SELECT version FROM schema_migrations")).scalars().all()
    assert sorted(versions) == [m.version for m in migrations_for("sqlite")]


def test_concurrent_migrators_apply_each_file_once(tmp_path):
    url = f"sqlite:///{tmp_path}/race.db"
    applied: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            applied.append(migrate(Store(url)))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(v for batch in applied for v in batch) == [
        m.version for m in migrations_for("sqlite")
    ]


def test_engine_specific_files_are_chosen_by_dialect(tmp_path):
    (tmp_path / "001_common.sql").write_text("SELECT 1;")
    (tmp_path / "002_only.postgres.sql").write_text("SELECT 2;")
    (tmp_path / "003_only.sqlite.sql").write_text("SELECT 3;")
    (tmp_path / "notes.sql").write_text("-- not a migration")
    assert [m.version for m in migrations_for("postgresql", tmp_path)] == [
        "001_common.sql",
        "002_only.postgres.sql",
    ]
    assert [m.version for m in migrations_for("sqlite", tmp_path)] == [
        "001_common.sql",
        "003_only.sqlite.sql",
    ]


def test_sqlite_scripts_split_into_whole_statements_ignoring_comments():
    script = "-- heading\nCREATE TABLE a (x TEXT); -- trailing\n\nCREATE TABLE b (y TEXT DEFAULT ';');\n-- end\n"
    assert split_sqlite_statements(script) == [
        "-- heading\nCREATE TABLE a (x TEXT); -- trailing",
        "CREATE TABLE b (y TEXT DEFAULT ';');",
    ]


def test_a_transaction_after_migrating_sqlite_still_rolls_back(tmp_path):
    import sqlalchemy as sa

    from sync_pipelines.store.database import Store
    from sync_pipelines.store.migrations import migrate

    store = Store(f"sqlite:///{tmp_path}/rollback.db", pool_size=1)
    migrate(store)
    try:
        with store.transaction() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO organizations (organization_id, name, created_at) "
                    "VALUES ('org-x', 'x', '2026-01-01T00:00:00.000000Z')"
                )
            )
            raise RuntimeError("abort")
    except RuntimeError:
        pass
    with store.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM organizations")).scalar_one() == 0
    store.dispose()


def _copy_packaged(to) -> None:
    from sync_pipelines.store.migrations import sql_dir

    for entry in sql_dir().iterdir():
        if entry.name.endswith(".sql"):
            (to / entry.name).write_bytes(entry.read_bytes())


def test_the_migrations_ship_inside_the_package():
    from sync_pipelines.store.migrations import sql_dir

    assert "sync_pipelines/store/sql" in str(sql_dir()).replace("\\", "/")
    assert len(migrations_for("sqlite")) >= 14


def test_finding_no_migrations_is_an_error_not_up_to_date(tmp_path, monkeypatch):
    from sync_pipelines.store.migrations import SQL_DIR_ENV, MigrationError

    monkeypatch.setenv(SQL_DIR_ENV, str(tmp_path))
    store = Store(f"sqlite:///{tmp_path}/empty.db")
    with pytest.raises(MigrationError, match="no migrations found"):
        migrate(store)


def test_each_applied_migration_records_its_checksum(store):
    import hashlib

    with store.connect() as conn:
        recorded = dict(
            conn.execute(sa.text("SELECT version, checksum FROM schema_migrations")).all()
        )
    for m in migrations_for(store.dialect):
        assert recorded[m.version] == hashlib.sha256(m.path.read_bytes()).hexdigest()


def test_a_migration_changed_after_it_was_applied_is_refused_by_name(tmp_path, monkeypatch):
    from sync_pipelines.store.migrations import SQL_DIR_ENV, MigrationError

    sql = tmp_path / "sql"
    sql.mkdir()
    _copy_packaged(sql)
    monkeypatch.setenv(SQL_DIR_ENV, str(sql))
    store = Store(f"sqlite:///{tmp_path}/changed.db")
    migrate(store)
    edited = sql / "004_dead_letters.sql"
    edited.write_text(edited.read_text() + "\n-- an innocent-looking edit\n")
    with pytest.raises(
        MigrationError, match="004_dead_letters.sql was changed after it was applied"
    ):
        migrate(store)


def test_a_ledger_from_before_checksums_gains_them_without_reapplying(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/old.db")
    migrate(store)
    with store.transaction() as conn:  # the ledger as earlier releases wrote it
        conn.exec_driver_sql(
            "CREATE TABLE old_ledger AS SELECT version, applied_at FROM schema_migrations"
        )
        conn.exec_driver_sql("DROP TABLE schema_migrations")
        conn.exec_driver_sql("ALTER TABLE old_ledger RENAME TO schema_migrations")
    assert migrate(store) == []
    with store.connect() as conn:
        missing = conn.execute(
            sa.text("SELECT count(*) FROM schema_migrations WHERE checksum IS NULL")
        ).scalar_one()
    assert missing == 0
