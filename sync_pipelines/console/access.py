"""The console reads through one door: a read-only transaction that, for an operator scoped to
one organization on Postgres, runs as the row-level-security role `sync_tenant` with
`sync.organization_id` set (sql/007) — so even a query that forgot its organization filter
returns that organization's rows only. On SQLite the queries' own filters are the only wall.

The store's login role must be a member of `sync_tenant` for this
(`GRANT sync_tenant TO <store role>`; a superuser already is).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection

from sync_pipelines.console.auth import Operator
from sync_pipelines.store.console_queries import become_tenant, begin_console_read
from sync_pipelines.store.database import Store

#: a console query never holds the store longer than this (ms)
STATEMENT_TIMEOUT_MS = 15_000


@contextmanager
def reading(store: Store, operator: Operator) -> Iterator[Connection]:
    with store.transaction() as conn:
        if store.is_postgres:
            begin_console_read(conn, statement_timeout_ms=STATEMENT_TIMEOUT_MS)
            if operator.organization_id is not None:
                become_tenant(conn, operator.organization_id)
        yield conn
