"""Exports for a support ticket: the current activity filter, or a trace, as a JSON bundle or as
CSV. The trace bundle is tracing/bundle.py's (the same document `sync-pipelines export` writes);
every row is redacted before it leaves."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sync_pipelines.console.filters import ActivityFilter
from sync_pipelines.console.queries import LIST_COLUMNS
from sync_pipelines.observability.redaction import redact
from sync_pipelines.tracing.bundle import SCHEMA_VERSION, jsonable
from sync_pipelines.tracing.chain import TraceChain

#: rows one activity export holds at most (the bundle says when it was cut)
MAX_EXPORT_ROWS = 10_000


def activity_bundle(
    flt: ActivityFilter, rows: list[dict[str, Any]], *, generated_at: datetime, operator: str
) -> dict[str, Any]:
    return redact(
        jsonable(
            {
                "schema_version": SCHEMA_VERSION,
                "kind": "activity_filter",
                "generated_at": generated_at,
                "exported_by": operator,
                "filter": flt.to_params(),
                "row_count": len(rows),
                "truncated": len(rows) >= MAX_EXPORT_ROWS,
                "activity_rows": rows,
            }
        )
    )


def rows_csv(rows: Iterable[Mapping[str, Any]], columns: tuple[str, ...] = LIST_COLUMNS) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        clean = redact(jsonable(dict(row)))
        writer.writerow(["" if clean.get(c) is None else _cell(clean.get(c)) for c in columns])
    return out.getvalue()


def trace_csv(chain: TraceChain) -> str:
    """Every activity row on the chain, oldest first."""
    return rows_csv(chain.activity_rows)


def _cell(value: Any) -> str:
    text = str(value)
    # a cell a spreadsheet would run as a formula is quoted as text
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _number(text) else text


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
