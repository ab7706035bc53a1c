"""The console reads through one door: a read-only transaction that, on Postgres, runs as a
row-level-security role — `sync_tenant` with `sync.organization_id` set for an operator scoped
to one organization (sql/007), so even a query that forgot its organization filter returns that
organization's rows only; `sync_operator` for an operator of every organization (sql/026: reads
every tenant, writes nothing). On SQLite the queries' own filters are the only wall.

The console's login role must be a member of both (`GRANT sync_tenant, sync_operator TO
<console role>`; a superuser already is). The sync service's role (`sync_app`) is granted
`sync_tenant` only: it cannot read across tenants this way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection

from sync_pipelines.console.auth import Operator
from sync_pipelines.store.console_queries import (
    become_operator,
    become_tenant,
    begin_console_read,
)
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
            else:
                become_operator(conn)
        yield conn
