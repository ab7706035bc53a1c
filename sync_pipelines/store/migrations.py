"""Applies the numbered SQL files shipped in `sync_pipelines/store/sql/` once each, in order, on
SQLite or Postgres.

`NNN_name.sql` runs on both engines; `NNN_name.postgres.sql` / `NNN_name.sqlite.sql` only on
that engine. Each file is applied in its own transaction together with its row in
`schema_migrations` (version, time, sha256 of the file), under a lock, so concurrent starters
cannot apply a file twice. The files are package data read with `importlib.resources`, so a
wheel install migrates like a checkout; a file changed after it was applied is refused by name.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import sqlalchemy as sa

from sync_pipelines.store.database import Store, format_timestamp, utc_now

#: Another directory of migrations (tests replaying history); the packaged ones otherwise.
SQL_DIR_ENV = "SYNC_SQL_DIR"
_FILE_PATTERN = re.compile(r"^(\d{3,})_[a-z0-9_]+(?:\.(postgres|sqlite))?\.sql$")
_ADVISORY_LOCK_KEY = 0x5ECDB  # any constant shared by every migrating process

_CREATE_LEDGER = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL, checksum TEXT)"
)


class MigrationError(RuntimeError):
    """The migrations cannot be applied as they are: none found, or an applied one changed."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str  # the file name: unique and ordered
    path: Traversable

    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def sql_dir() -> Traversable:
    configured = os.environ.get(SQL_DIR_ENV)
    if configured:
        return Path(configured)
    return resources.files("sync_pipelines.store") / "sql"


def migrations_for(dialect: str, directory: Traversable | None = None) -> list[Migration]:
    directory = directory or sql_dir()
    found = []
    entries = sorted(directory.iterdir(), key=lambda p: p.name) if directory.is_dir() else []
    for path in entries:
        match = _FILE_PATTERN.match(path.name)
        if not match:
            continue
        engine_only = match.group(2)
        if engine_only is None or engine_only == (
            "postgres" if dialect == "postgresql" else dialect
        ):
            found.append(Migration(version=path.name, path=path))
    if not found:
        # an install without its migrations would otherwise report "up to date" and fail on
        # the first query
        raise MigrationError(
            f"no migrations found in {directory}: the package is incomplete (reinstall "
            f"sync_pipelines) or {SQL_DIR_ENV} points at the wrong directory"
        )
    return found


def pending_migrations(store: Store) -> list[Migration]:
    """The migrations not yet applied; refuses a store where an applied file has changed."""
    with store.transaction() as conn:
        if store.is_postgres:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK_KEY})
        conn.exec_driver_sql(_CREATE_LEDGER)
        _add_checksum_column(conn, store)
        rows = conn.execute(sa.text("SELECT version, checksum FROM schema_migrations"))
        applied = {version: checksum for version, checksum in rows}
        known = migrations_for(store.dialect)
        for m in known:
            if m.version not in applied:
                continue
            if applied[m.version] is None:  # applied before checksums were kept: trust it once
                conn.execute(
                    sa.text("UPDATE schema_migrations SET checksum = :c WHERE version = :v"),
                    {"c": m.checksum, "v": m.version},
                )
            elif applied[m.version] != m.checksum:
                raise MigrationError(
                    f"migration {m.version} was changed after it was applied to "
                    f"{store.location} (applied sha256 {applied[m.version][:12]}, file now "
                    f"{m.checksum[:12]}): restore the file as it was and put the change in a "
                    f"new numbered migration"
                )
    return [m for m in known if m.version not in applied]


def unapplied_migrations(store: Store) -> list[str]:
    """Read-only: the versions a store lacks (all of them where it has no ledger yet)."""
    known = [m.version for m in migrations_for(store.dialect)]
    if not sa.inspect(store.engine).has_table("schema_migrations"):
        return known
    with store.connect() as conn:
        applied = applied_versions(conn)
    return [v for v in known if v not in applied]


def applied_versions(conn: sa.Connection) -> set[str]:
    """The versions the ledger lists; raises (no such table) on a store never migrated."""
    return set(conn.execute(sa.text("SELECT version FROM schema_migrations")).scalars())


def _add_checksum_column(conn: sa.Connection, store: Store) -> None:
    """Ledgers written before checksums were kept gain the column (in the ledger's own lock)."""
    columns = {c["name"] for c in sa.inspect(conn).get_columns("schema_migrations")}
    if "checksum" in columns:
        return
    try:
        conn.exec_driver_sql("ALTER TABLE schema_migrations ADD COLUMN checksum TEXT")
    except sa.exc.OperationalError as exc:  # SQLite: another starter added it first
        if store.is_postgres or "duplicate column" not in str(exc):
            raise


def migrate(store: Store) -> list[str]:
    """Apply every pending migration; returns the versions applied (empty when up to date)."""
    if not pending_migrations(store):
        return []
    if store.is_postgres:
        return _migrate_postgres(store)
    return _migrate_sqlite(store)


_already_migrated: set[str] = set()


def ensure_migrated(store: Store) -> None:
    """Cheap per-run guard: checks the ledger once per process and URL."""
    if store.url in _already_migrated:
        return
    if store.is_postgres and not _owns_the_schema(store):
        # The service role (sql/026) owns nothing and cannot migrate: it checks, read-only.
        missing = unapplied_migrations(store)
        if missing:
            raise MigrationError(
                f"{store.location} lacks {len(missing)} migration(s) (first: {missing[0]}) and "
                "this role cannot apply them: run `sync-pipelines migrate` as the tables' owner "
                "(docs/deployment.md, Tenancy and row-level security)"
            )
    else:
        migrate(store)
    _already_migrated.add(store.url)


def _owns_the_schema(store: Store) -> bool:
    """Whether this login may create tables here (the owner, or a superuser): the service role
    may not, by design."""
    with store.connect() as conn:
        return bool(
            conn.execute(
                sa.text("SELECT has_schema_privilege(current_user, current_schema(), 'CREATE')")
            ).scalar()
        )


def _migrate_postgres(store: Store) -> list[str]:
    applied: list[str] = []
    for migration in migrations_for(store.dialect):
        with store.transaction() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK_KEY})
            done = conn.execute(
                sa.text("SELECT 1 FROM schema_migrations WHERE version = :v"),
                {"v": migration.version},
            ).first()
            if done:
                continue
            # Straight to the driver without parameters: psycopg sends the whole file in one
            # simple-protocol round trip, and `%` (format('%I', ...) in PL/pgSQL) stays literal.
            conn.connection.driver_connection.execute(migration.sql())
            _record(conn, migration)
            applied.append(migration.version)
    return applied


def _migrate_sqlite(store: Store) -> list[str]:
    applied: list[str] = []
    raw = store.engine.raw_connection()
    db: sqlite3.Connection = raw.driver_connection  # type: ignore[assignment]
    previous_isolation = db.isolation_level
    try:
        db.isolation_level = None  # we issue BEGIN/COMMIT ourselves
        for migration in migrations_for(store.dialect):
            db.execute("BEGIN IMMEDIATE")  # the write lock serialises concurrent migrators
            try:
                done = db.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
                ).fetchone()
                if not done:
                    for statement in split_sqlite_statements(migration.sql()):
                        db.execute(statement)
                    db.execute(
                        "INSERT INTO schema_migrations (version, applied_at, checksum) "
                        "VALUES (?, ?, ?)",
                        (migration.version, format_timestamp(utc_now()), migration.checksum),
                    )
                    applied.append(migration.version)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
    finally:
        # The connection goes back to the pool: left in autocommit, every later
        # store.transaction() on it would commit statement by statement and never roll back.
        db.isolation_level = previous_isolation
        raw.close()
    return applied


def split_sqlite_statements(script: str) -> list[str]:
    """Split a script into complete statements, using SQLite's own notion of completeness."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip().strip(";").strip() and not _only_comments(buffer):
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not _only_comments(buffer):
        raise ValueError(f"incomplete SQL statement at end of script: {buffer.strip()[:80]!r}")
    return statements


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in text.splitlines())


def _record(conn: sa.Connection, migration: Migration) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO schema_migrations (version, applied_at, checksum) VALUES (:v, :t, :c)"
        ),
        {"v": migration.version, "t": utc_now(), "c": migration.checksum},
    )
