"""Connects the activity recorder to the store: each flush is one short transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from sync_pipelines.observability.activity import ActivityRow, ActivitySink
from sync_pipelines.store.activity import complete_activity_row, insert_activity_rows
from sync_pipelines.store.database import Store, dump_json


def _params(row: ActivityRow) -> dict[str, Any]:
    params = asdict(row)
    params["request_headers"] = dump_json(row.request_headers)
    params["metadata"] = dump_json(row.metadata)
    return params


class StoreActivitySink(ActivitySink):
    def __init__(self, store: Store) -> None:
        self.store = store

    def insert(self, rows: Sequence[ActivityRow]) -> None:
        with self.store.transaction() as conn:
            insert_activity_rows(conn, [_params(r) for r in rows])

    def complete(self, row: ActivityRow) -> None:
        with self.store.transaction() as conn:
            complete_activity_row(conn, _params(row))
