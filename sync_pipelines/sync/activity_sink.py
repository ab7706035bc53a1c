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
from sync_pipelines.store.database import Store, use_organization


class StoreActivitySink(ActivitySink):
    """Rows are written in their own organization's scope (row security, sql/026), whatever
    the store handle the sink was given: a recorder's rows all carry its scope's organization."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def insert(self, rows: Sequence[ActivityRow]) -> None:
        if not rows:
            return
        with self.store.scoped(rows[0].organization_id).transaction() as conn:
            self._insert(conn, rows)

    def insert_within(self, conn: Connection, rows: Sequence[ActivityRow]) -> None:
        # `conn` must be a transaction of this sink's store (the caller's batch transaction),
        # already in the rows' organization
        insert_activity_rows(conn, [activity_values(r) for r in rows])

    def complete(self, row: ActivityRow) -> None:
        with self.store.scoped(row.organization_id).transaction() as conn:
            complete_activity_row(conn, activity_values(row))

    @staticmethod
    def _insert(conn: Connection, rows: Sequence[ActivityRow]) -> None:
        by_organization: dict[str, list[ActivityRow]] = {}
        for row in rows:
            by_organization.setdefault(row.organization_id, []).append(row)
        for organization_id, own in by_organization.items():
            if len(by_organization) > 1:
                use_organization(conn, organization_id)
            insert_activity_rows(conn, [activity_values(r) for r in own])
