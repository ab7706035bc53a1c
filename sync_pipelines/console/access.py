"""The console reads through one door: a read-only transaction that, on Postgres, runs as a
row-level-security role — `sync_tenant` with `sync.organization_id` set for an operator scoped
to one organization (sql/007), so even a query that forgot its organization filter returns that
organization's rows only; `sync_operator` for an operator of every organization (sql/026: reads
every tenant, writes nothing). On SQLite the queries' own filters are the only wall.

The console's login role must be a member of both (`GRANT sync_tenant, sync_operator TO
<console role>`; a superuser already is). The sync service's role (`sync_app`) is granted
`sync_tenant` only: it cannot read across tenants this way.

An operator with a write credential's actions (replay, quarantine) write through `writing`: the
store acting as the service's role `sync_app` in the letter's organization, every transaction —
a replay runs the replay job's code, which needs what the service needs (its sequences, the
activity-log partitions, the cross-tenant lookups), and row security holds it to that
organization. The console's login must then be a member of `sync_app` too (`GRANT sync_app TO
<console role>`); without it an action is refused with that instruction and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection

from sync_pipelines.console.auth import Operator
from sync_pipelines.store.console_queries import (
    WRITE_ROLE,
    become_operator,
    become_tenant,
    begin_console_read,
    can_take_write_role,
)
from sync_pipelines.store.database import Store

#: a console query never holds the store longer than this (ms)
STATEMENT_TIMEOUT_MS = 15_000


class WriteRoleUnavailable(RuntimeError):
    """The console's database login cannot act as `sync_app`: no action can be written."""


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


def writing(store: Store) -> Store:
    """The console's store for actions: on Postgres a handle whose every transaction runs as
    `sync_app` (`Store.acting_as`; the caller scopes it to the letter's organization, and row
    security holds it there). Raises WriteRoleUnavailable when the login cannot take the role
    (checked by taking it, in a transaction that writes nothing)."""
    if not store.is_postgres:
        return store
    with store.connect() as conn:
        allowed = can_take_write_role(conn)
        conn.rollback()
    if not allowed:
        raise WriteRoleUnavailable(
            f"the console's database login cannot SET ROLE {WRITE_ROLE}, which the console's "
            f"dead-letter actions write as (under row security, in the letter's organization): "
            f"run `GRANT {WRITE_ROLE} TO <console login role>` (docs/deployment.md); nothing was "
            "changed"
        )
    return store.acting_as(WRITE_ROLE)
