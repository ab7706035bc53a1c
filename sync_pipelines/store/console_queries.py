"""The operator console's reads: its read-only session, pages of the activity log and what a
search term or a pasted id leads to.

Pages are newest first, one keyset page at a time (never OFFSET: a deep page costs what the
first does), filtered and searched. A search term is resolved first into the request ids and run
ids it stands for (a webhook event: its delivery and processing rows; a device: the calls and
events that wrote or named it), then the page is `request_id IN (...) OR run_id IN (...)` over
their indexes (sql/001, sql/015). Reads are scoped by the organization the operator may see;
`organizations_of` and an unscoped operator's pages read across tenants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ProgrammingError

from sync_pipelines.observability.activity import DIRECTIONS, STATUSES

#: the row-level-security role an operator scoped to one organization reads as (sql/007)
TENANT_ROLE = "sync_tenant"
#: the read-only role an operator of every organization reads as (sql/026)
OPERATOR_ROLE = "sync_operator"
#: the role the console's actions (dead-letter replay, quarantine) write as (sql/026): the
#: service's own, under row security in the letter's organization
WRITE_ROLE = "sync_app"
#: ids a search term may expand to (a device written by many calls: its newest ones)
SEARCH_ID_LIMIT = 200
_MAX_ORGANIZATIONS = 20

#: where an id can be found, per kind (the indexed columns build_chain's detection reads)
_LOCATIONS = (
    ("webhook_events", "event_id"),
    ("webhook_events", "id"),
    ("integration_activity_log", "request_id"),
    ("integration_activity_log", "run_id"),
    ("integration_sync_log", "run_id"),
    ("devices", "external_id"),
)


class TenantRoleUnavailable(RuntimeError):
    """The store's role cannot become `sync_tenant` (scoped operators) or `sync_operator`
    (operators of every organization): those operators cannot be served."""


# -- the session ---------------------------------------------------------------------------------


def begin_console_read(conn: Connection, *, statement_timeout_ms: int) -> None:
    """Postgres: make the open transaction read-only, no statement longer than the timeout."""
    conn.execute(sa.text("SET TRANSACTION READ ONLY"))
    conn.execute(sa.text(f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}"))


def become_tenant(conn: Connection, organization_id: str) -> None:
    """Postgres: for the rest of the transaction read as `sync_tenant` of one organization, so
    even a query that forgot its organization filter returns that organization's rows only."""
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


def become_operator(conn: Connection) -> None:
    """Postgres: for the rest of the (read-only) transaction read as `sync_operator`, whose
    policy shows every organization's rows and lets it write none: the console's view across
    tenants, which the sync service's own role cannot take."""
    try:
        conn.execute(sa.text(f"SET LOCAL ROLE {OPERATOR_ROLE}"))
    except ProgrammingError as exc:
        raise TenantRoleUnavailable(
            f"the store's database role cannot SET ROLE {OPERATOR_ROLE} (the console's read-only "
            f"view of every organization); run `GRANT {OPERATOR_ROLE} TO <console role>`, or "
            "give this operator one organization"
        ) from exc


def can_take_write_role(conn: Connection) -> bool:
    """Postgres: whether this login may `SET ROLE` to WRITE_ROLE — tried inside the open
    transaction, which the caller then rolls back (it has written nothing)."""
    try:
        conn.execute(sa.text(f"SET LOCAL ROLE {WRITE_ROLE}"))
    except ProgrammingError:
        return False
    return True


# -- the activity log ----------------------------------------------------------------------------


class ActivitySelection(Protocol):
    """Which activity rows a page reads (the console's filter); None: any. `q` is a request id,
    run id, device id or webhook event id (see `resolve_search`)."""

    organization: str | None
    integration: str | None
    provider: str | None
    status: str | None
    direction: str | None
    activity_type: str | None
    q: str | None


@dataclass(frozen=True, slots=True)
class SearchIds:
    request_ids: tuple[str, ...]
    run_ids: tuple[str, ...]


def resolve_search(conn: Connection, term: str, organization_id: str | None) -> SearchIds:
    """The request and run ids `term` stands for: itself as either, plus what a webhook event
    id or a device id leads to (deliveries, processing rows, the calls that wrote the device)."""
    org = "organization_id = :o AND " if organization_id else ""
    params = {"x": term, "o": organization_id, "n": SEARCH_ID_LIMIT}
    requests, runs = {term}, {term}

    def collect(sql: str) -> None:
        for row in conn.execute(sa.text(sql + " LIMIT :n"), params):
            requests.update(v for v in row if v)

    # a webhook event (by provider event id or inbox row id): its delivery, and the run that
    # processed it (a failed event's processing row carries the event id as request id)
    for delivery, event, run in conn.execute(
        sa.text(
            f"SELECT delivery_id, event_id, run_id FROM webhook_events "
            f"WHERE {org}(event_id = :x OR id = :x) LIMIT :n"
        ),
        params,
    ):
        requests.update(v for v in (delivery, event) if v)
        if run:
            runs.add(run)
    # a device: its own calls (state reads, pushes: every attempt, failed ones too), the calls
    # that last wrote its rows, the events that named it, its dead letters
    collect(
        f"SELECT request_id FROM integration_activity_log WHERE {org}external_id = :x "
        "AND request_id IS NOT NULL ORDER BY created_at DESC"
    )
    collect(f"SELECT last_request_id FROM devices WHERE {org}external_id = :x")
    collect(f"SELECT last_request_id FROM device_states WHERE {org}external_id = :x")
    collect(
        f"SELECT delivery_id, event_id FROM webhook_events WHERE {org}external_id = :x "
        "ORDER BY received_at DESC"
    )
    collect(f"SELECT request_id FROM dead_letters WHERE {org}external_id = :x")
    return SearchIds(tuple(sorted(requests)), tuple(sorted(runs)))


def activity_rows_page(
    conn: Connection,
    selection: ActivitySelection,
    *,
    start: datetime | None,
    end: datetime | None,
    columns: Sequence[str],
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Up to `limit` rows of the selection created in [start, end), newest first by (created_at,
    id), strictly after the row `after` = (created_at, id) in that order; as stored (timestamps
    and JSON undecoded)."""
    where, params, lists = _conditions(conn, selection, start, end)
    if after is not None:
        # the form every engine turns into an index range on created_at (a row comparison is
        # not one on every plan): rows strictly after the cursor in (created_at, id) DESC order
        where.append("created_at <= :c_at AND (created_at < :c_at OR id < :c_id)")
        params.update(c_at=after[0], c_id=after[1])
    sql = (
        f"SELECT {', '.join(columns)} FROM integration_activity_log "
        f"WHERE {' AND '.join(where) or '1 = 1'} ORDER BY created_at DESC, id DESC LIMIT :limit"
    )
    statement = sa.text(sql)
    if lists:
        statement = statement.bindparams(*(sa.bindparam(k, expanding=True) for k in lists))
    params["limit"] = limit
    return [dict(r) for r in conn.execute(statement, params).mappings()]


def _conditions(
    conn: Connection, selection: ActivitySelection, start: datetime | None, end: datetime | None
) -> tuple[list[str], dict[str, Any], list[str]]:
    where: list[str] = []
    params: dict[str, Any] = {}
    lists: list[str] = []
    org = selection.organization
    if org is None and selection.integration:
        # an integration id names its organization: that lets the (organization, integration,
        # created_at) index serve the page
        org = conn.execute(
            sa.text("SELECT organization_id FROM integrations WHERE integration_id = :i LIMIT 1"),
            {"i": selection.integration},
        ).scalar()
        if org is None:
            where.append("1 = 0")
    if org is not None:
        where.append("organization_id = :o")
        params["o"] = org
    for column, value in (
        ("integration_id", selection.integration),
        ("activity_type", selection.activity_type),
    ):
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    # one of a few fixed words (checked here): written as literals so the planner can prove a
    # partial index's predicate (sql/015: activity_unsuccessful_idx) in every plan
    if selection.status is not None:
        where.append(f"status = '{_known(selection.status, STATUSES)}'")
    if selection.direction is not None:
        where.append(f"direction = '{_known(selection.direction, DIRECTIONS)}'")
    if selection.provider is not None:
        scope = "organization_id = :o AND " if org is not None else ""
        ids = list(
            conn.execute(
                sa.text(f"SELECT integration_id FROM integrations WHERE {scope}provider = :p"),
                {"o": org, "p": selection.provider},
            ).scalars()
        )
        where.append("integration_id IN :provider_integrations")
        params["provider_integrations"] = ids or [""]
        lists.append("provider_integrations")
    if start is not None:
        where.append("created_at >= :start")
        params["start"] = start
    if end is not None:
        where.append("created_at < :end")
        params["end"] = end
    if selection.q is not None:
        ids = resolve_search(conn, selection.q, org)
        where.append("(request_id IN :q_requests OR run_id IN :q_runs)")
        params.update(q_requests=list(ids.request_ids), q_runs=list(ids.run_ids))
        lists += ["q_requests", "q_runs"]
    return where, params, lists


def _known(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{value!r} is not one of {allowed}")
    return value


# -- ids -----------------------------------------------------------------------------------------


def organizations_of(conn: Connection, ident: str) -> list[str]:
    """System-level scan across tenants: the organizations holding `ident` (an unscoped
    operator pasted an id without one)."""
    found: set[str] = set()
    for table, column in _LOCATIONS:
        found.update(
            conn.execute(
                sa.text(
                    f"SELECT DISTINCT organization_id FROM {table} WHERE {column} = :x LIMIT :n"
                ),
                {"x": ident, "n": _MAX_ORGANIZATIONS},
            ).scalars()
        )
    return sorted(found)[:_MAX_ORGANIZATIONS]
