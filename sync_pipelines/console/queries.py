"""The console's reads of the activity log: newest first, one keyset page at a time (never
OFFSET: a deep page costs what the first does), filtered and searched, always inside the
organization the operator may see.

A search term is resolved first into the request ids and run ids it stands for (a webhook event:
its delivery and processing rows; a device: the calls and events that wrote or named it), then
the page is `request_id IN (...) OR run_id IN (...)` over their indexes (sql/001, sql/015).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.console.filters import DIRECTIONS, STATUSES, ActivityFilter, Cursor
from sync_pipelines.observability.redaction import redact, redact_text
from sync_pipelines.store.database import load_json, parse_timestamp

#: the columns the page and the CSV show; the JSON export adds headers, metadata and the stack
LIST_COLUMNS = (
    "id",
    "created_at",
    "organization_id",
    "integration_id",
    "direction",
    "activity_type",
    "status",
    "response_time_ms",
    "status_code",
    "attempt",
    "error_type",
    "error_message",
    "method",
    "endpoint",
    "request_id",
    "run_id",
    "step_key",
    "completed_at",
)
EXPORT_COLUMNS = (*LIST_COLUMNS, "parent_id", "error_stack", "request_headers", "metadata")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
#: the free-text columns a secret could ride in (the rest are ids, enumerations and numbers);
#: rows were redacted when written, this is the second pass before they are shown
_TEXT_COLUMNS = ("endpoint", "error_message", "error_stack")
_DOCUMENT_COLUMNS = ("request_headers", "metadata")
#: ids a search term may expand to (a device written by many calls: its newest ones)
SEARCH_ID_LIMIT = 200


@dataclass(frozen=True, slots=True)
class ActivityPage:
    rows: list[dict[str, Any]]
    #: where the next page starts; None on the last page
    next_cursor: Cursor | None


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
    # a device: the calls that last wrote its rows, the events that named it, its dead letters
    collect(f"SELECT last_request_id FROM devices WHERE {org}external_id = :x")
    collect(f"SELECT last_request_id FROM device_states WHERE {org}external_id = :x")
    collect(
        f"SELECT delivery_id, event_id FROM webhook_events WHERE {org}external_id = :x "
        "ORDER BY received_at DESC"
    )
    collect(f"SELECT request_id FROM dead_letters WHERE {org}external_id = :x")
    return SearchIds(tuple(sorted(requests)), tuple(sorted(runs)))


def activity_page(
    conn: Connection,
    flt: ActivityFilter,
    *,
    now: datetime,
    after: Cursor | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
    columns: tuple[str, ...] = LIST_COLUMNS,
) -> ActivityPage:
    """One page of rows matching `flt`, newest first, starting after `after`; redacted."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"page size must be 1..{MAX_PAGE_SIZE}, got {limit}")
    where, params, lists = _conditions(conn, flt, now)
    if after is not None:
        # the form every engine turns into an index range on created_at (a row comparison is
        # not one on every plan): rows strictly after the cursor in (created_at, id) DESC order
        where.append("created_at <= :c_at AND (created_at < :c_at OR id < :c_id)")
        params.update(c_at=after.created_at, c_id=after.id)
    sql = (
        f"SELECT {', '.join(columns)} FROM integration_activity_log "
        f"WHERE {' AND '.join(where) or '1 = 1'} ORDER BY created_at DESC, id DESC LIMIT :limit"
    )
    statement = sa.text(sql)
    if lists:
        statement = statement.bindparams(*(sa.bindparam(k, expanding=True) for k in lists))
    params["limit"] = limit + 1
    rows = [_row(r) for r in conn.execute(statement, params).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = Cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None
    return ActivityPage(rows=[_redacted(r) for r in rows], next_cursor=cursor)


def iter_activity(
    conn: Connection, flt: ActivityFilter, *, now: datetime, max_rows: int, columns: tuple[str, ...]
) -> Iterator[dict[str, Any]]:
    """Every matching row up to `max_rows`, newest first, page by page (the export)."""
    after, sent = None, 0
    while sent < max_rows:
        page = activity_page(
            conn,
            flt,
            now=now,
            after=after,
            limit=min(MAX_PAGE_SIZE, max_rows - sent),
            columns=columns,
        )
        yield from page.rows
        sent += len(page.rows)
        if page.next_cursor is None:
            return
        after = page.next_cursor


def _conditions(
    conn: Connection, flt: ActivityFilter, now: datetime
) -> tuple[list[str], dict[str, Any], list[str]]:
    where: list[str] = []
    params: dict[str, Any] = {}
    lists: list[str] = []
    org = flt.organization
    if org is None and flt.integration:
        # an integration id names its organization: that lets the (organization, integration,
        # created_at) index serve the page
        org = conn.execute(
            sa.text("SELECT organization_id FROM integrations WHERE integration_id = :i LIMIT 1"),
            {"i": flt.integration},
        ).scalar()
        if org is None:
            where.append("1 = 0")
    if org is not None:
        where.append("organization_id = :o")
        params["o"] = org
    for column, value in (
        ("integration_id", flt.integration),
        ("activity_type", flt.activity_type),
    ):
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    # one of a few fixed words (filters.py validated them): written as literals so the planner
    # can prove a partial index's predicate (sql/015: activity_unsuccessful_idx) in every plan
    if flt.status is not None:
        where.append(f"status = '{_known(flt.status, STATUSES)}'")
    if flt.direction is not None:
        where.append(f"direction = '{_known(flt.direction, DIRECTIONS)}'")
    if flt.provider is not None:
        scope = "organization_id = :o AND " if org is not None else ""
        ids = list(
            conn.execute(
                sa.text(f"SELECT integration_id FROM integrations WHERE {scope}provider = :p"),
                {"o": org, "p": flt.provider},
            ).scalars()
        )
        where.append("integration_id IN :provider_integrations")
        params["provider_integrations"] = ids or [""]
        lists.append("provider_integrations")
    start, end = flt.window(now)
    if start is not None:
        where.append("created_at >= :start")
        params["start"] = start
    if end is not None:
        where.append("created_at < :end")
        params["end"] = end
    if flt.q is not None:
        ids = resolve_search(conn, flt.q, org)
        where.append("(request_id IN :q_requests OR run_id IN :q_runs)")
        params.update(q_requests=list(ids.request_ids), q_runs=list(ids.run_ids))
        lists += ["q_requests", "q_runs"]
    return where, params, lists


def _known(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{value!r} is not one of {allowed}")
    return value


def _redacted(row: dict[str, Any]) -> dict[str, Any]:
    for column in _TEXT_COLUMNS:
        if row.get(column):
            row[column] = redact_text(row[column])
    for column in _DOCUMENT_COLUMNS:
        if row.get(column) is not None:
            row[column] = redact(row[column])
    return row


def _row(row: Any) -> dict[str, Any]:
    out = dict(row)
    for column in ("created_at", "completed_at"):
        if column in out:
            out[column] = parse_timestamp(out[column])
    for column in _DOCUMENT_COLUMNS:
        if isinstance(out.get(column), str):
            out[column] = load_json(out[column])
    return out
