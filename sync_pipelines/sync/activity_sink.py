"""Connects the activity recorder to the store: each flush is one short transaction, or part of
the caller's transaction (`insert_within`) when rows should commit with the data they describe."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Connection

from sync_pipelines.observability.activity import ActivityRow, ActivitySink
from sync_pipelines.store.activity import (
    activity_values,
    complete_activity_row,
    insert_activity_rows,
)
from sync_pipelines.store.database import Store


class StoreActivitySink(ActivitySink):
    def __init__(self, store: Store) -> None:
        self.store = store

    def insert(self, rows: Sequence[ActivityRow]) -> None:
        with self.store.transaction() as conn:
            insert_activity_rows(conn, [activity_values(r) for r in rows])

    def insert_within(self, conn: Connection, rows: Sequence[ActivityRow]) -> None:
        # `conn` must be a transaction of this sink's store (the caller's batch transaction)
        insert_activity_rows(conn, [activity_values(r) for r in rows])

    def complete(self, row: ActivityRow) -> None:
        with self.store.transaction() as conn:
            complete_activity_row(conn, activity_values(row))
