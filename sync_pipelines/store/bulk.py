"""Batch writes: idempotent keyed upserts that skip unchanged rows, and append-only inserts.

On Postgres rows go through COPY (into a staging table for upserts, then one
`INSERT … ON CONFLICT`); on SQLite through `executemany`. Both report how many rows were
created, updated and left unchanged, judged by a content hash column, and both leave an
unchanged row alone: it is neither locked nor rewritten, so a poll where nothing changed
writes (and logs) no row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.store.pg_copy import copy_rows, row_security_applies


@dataclass(frozen=True, slots=True)
class UpsertCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        return UpsertCounts(
            self.created + other.created,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
        )


@dataclass(frozen=True, slots=True)
class KeyedTable:
    """A table written by keyed upsert.

    `scope` columns (organization_id, integration_id) are equal for every row of a batch;
    `key` identifies a row within the scope; `immutable` columns are kept on update.
    """

    name: str
    columns: tuple[str, ...]
    scope: tuple[str, ...]
    key: str
    hash_column: str = "content_hash"
    immutable: tuple[str, ...] = ("created_at",)

    @property
    def conflict_columns(self) -> tuple[str, ...]:
        # the primary key: (integration_id, <key>)
        return ("integration_id", self.key)

    @property
    def update_columns(self) -> tuple[str, ...]:
        fixed = {*self.scope, self.key, *self.immutable}
        return tuple(c for c in self.columns if c not in fixed)


def upsert_rows(
    conn: Connection, table: KeyedTable, rows: Sequence[dict[str, Any]]
) -> UpsertCounts:
    """Insert new rows, update changed ones, leave identical ones untouched.

    Rows must be unique by key within the batch and share the same scope values.
    """
    if not rows:
        return UpsertCounts()
    if conn.dialect.name == "postgresql":
        return _upsert_postgres(conn, table, rows)
    return _upsert_sqlite(conn, table, rows)


def insert_rows(
    conn: Connection, table: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]
) -> None:
    """Append rows (no conflict handling): COPY on Postgres, executemany on SQLite."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        if row_security_applies(conn):
            # Postgres refuses COPY into a table whose row security holds the role (the service
            # role, sql/026): COPY into a temporary twin, then one INSERT … SELECT, which the
            # policy checks like any insert.
            staging = f"{table}_append"
            conn.exec_driver_sql(
                f"CREATE TEMP TABLE IF NOT EXISTS {staging} "
                f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            conn.exec_driver_sql(f"DELETE FROM {staging}")
            copy_rows(conn, staging, columns, rows, types_from=table)
            cols = ", ".join(columns)
            conn.exec_driver_sql(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {staging}")
            return
        copy_rows(conn, table, columns, rows)
        return
    placeholders = ", ".join(f":{c}" for c in columns)
    conn.execute(
        sa.text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"), list(rows)
    )


def _upsert_sqlite(
    conn: Connection, table: KeyedTable, rows: Sequence[dict[str, Any]]
) -> UpsertCounts:
    import json

    first = rows[0]
    scope_sql = " AND ".join(f"{c} = :{c}" for c in table.scope)
    existing = dict(
        conn.execute(
            sa.text(
                f"SELECT {table.key}, {table.hash_column} FROM {table.name} "
                f"WHERE {scope_sql} AND {table.key} IN (SELECT value FROM json_each(:keys))"
            ),
            {
                **{c: first[c] for c in table.scope},
                "keys": json.dumps([r[table.key] for r in rows]),
            },
        ).all()
    )
    new = [r for r in rows if r[table.key] not in existing]
    changed = [
        r
        for r in rows
        if r[table.key] in existing and existing[r[table.key]] != r[table.hash_column]
    ]
    to_write = new + changed
    if to_write:
        cols = ", ".join(table.columns)
        values = ", ".join(f":{c}" for c in table.columns)
        updates = ", ".join(f"{c} = excluded.{c}" for c in table.update_columns)
        conn.execute(
            sa.text(
                f"INSERT INTO {table.name} ({cols}) VALUES ({values}) "
                f"ON CONFLICT ({', '.join(table.conflict_columns)}) DO UPDATE SET {updates}"
            ),
            to_write,
        )
    return UpsertCounts(len(new), len(changed), len(rows) - len(to_write))


def _upsert_postgres(
    conn: Connection, table: KeyedTable, rows: Sequence[dict[str, Any]]
) -> UpsertCounts:
    staging = f"{table.name}_staging"
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE IF NOT EXISTS {staging} "
        f"(LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    # empty for a second upsert in this transaction (a commit empties it anyway). DELETE, not
    # TRUNCATE: truncating gives the table a new file, a catalog update logged on every batch;
    # a temporary table's DELETE logs nothing
    conn.exec_driver_sql(f"DELETE FROM {staging}")
    copy_rows(conn, staging, table.columns, rows, types_from=table.name)
    cols = ", ".join(table.columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in table.update_columns)
    key_match = " AND ".join(f"t.{c} = s.{c}" for c in table.conflict_columns)
    # Unchanged rows are dropped before the INSERT: `ON CONFLICT DO UPDATE … WHERE` alone still
    # locks each conflicting row, which dirties its page and logs it (a no-op re-sync of 100,000
    # devices wrote 86 MB of WAL, now 3 MB: bench/noop_resync.py). The stored hash is read by a
    # correlated subquery on purpose: one index probe per staged row whatever the planner
    # guesses of the staging table (it has no statistics; a NOT EXISTS anti-join may become a
    # scan of the whole table). ON CONFLICT stays for rows a concurrent writer inserted since.
    # xmax = 0 only for freshly inserted tuples: tells created from updated in one pass, and
    # counting on the server sends back one row instead of one per written device.
    created, updated = conn.exec_driver_sql(
        f"WITH merged AS (INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {staging} s "
        f"WHERE s.{table.hash_column} IS DISTINCT FROM (SELECT t.{table.hash_column} "
        f"FROM {table.name} t WHERE {key_match}) "
        f"ON CONFLICT ({', '.join(table.conflict_columns)}) DO UPDATE SET {updates} "
        f"WHERE {table.name}.{table.hash_column} IS DISTINCT FROM EXCLUDED.{table.hash_column} "
        f"RETURNING (xmax = 0) AS inserted) "
        f"SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM merged"
    ).one()
    return UpsertCounts(created, updated, len(rows) - created - updated)
