"""The console's pages of the activity log: newest first, one keyset page at a time, filtered
and searched, always inside the organization the operator may see; decoded and redacted for
showing. The queries are store/console_queries.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.console.filters import ActivityFilter, Cursor
from sync_pipelines.observability.redaction import redact, redact_text
from sync_pipelines.store.console_queries import activity_rows_page
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


@dataclass(frozen=True, slots=True)
class ActivityPage:
    rows: list[dict[str, Any]]
    #: where the next page starts; None on the last page
    next_cursor: Cursor | None


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
    start, end = flt.window(now)
    rows = [
        _row(r)
        for r in activity_rows_page(
            conn,
            flt,
            start=start,
            end=end,
            columns=columns,
            after=None if after is None else (after.created_at, after.id),
            limit=limit + 1,
        )
    ]
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
