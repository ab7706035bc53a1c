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

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ProgrammingError

from sync_pipelines.console.auth import Operator
from sync_pipelines.store.database import Store

TENANT_ROLE = "sync_tenant"
#: a console query never holds the store longer than this (ms)
STATEMENT_TIMEOUT_MS = 15_000


class TenantRoleUnavailable(RuntimeError):
    """The store's role cannot become `sync_tenant`: scoped operators cannot be served."""


@contextmanager
def reading(store: Store, operator: Operator) -> Iterator[Connection]:
    with store.transaction() as conn:
        if store.is_postgres:
            conn.execute(sa.text("SET TRANSACTION READ ONLY"))
            conn.execute(sa.text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
            if operator.organization_id is not None:
                _become_tenant(conn, operator.organization_id)
        yield conn


def _become_tenant(conn: Connection, organization_id: str) -> None:
    try:
        conn.execute(sa.text(f"SET LOCAL ROLE {TENANT_ROLE}"))
    except ProgrammingError as exc:
        raise TenantRoleUnavailable(
            f"the store's database role cannot SET ROLE {TENANT_ROLE} (row-level security for "
            f"operators scoped to one organization); run `GRANT {TENANT_ROLE} TO <store role>`"
        ) from exc
    conn.execute(
        sa.text("SELECT set_config('sync.organization_id', :o, true)"), {"o": organization_id}
    )
