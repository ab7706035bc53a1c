"""The trace view's data: the causal chain `sync-pipelines trace` prints (tracing/chain.py), the
organization an id belongs to when an unscoped operator did not say, and the Dagster run links."""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import Connection

DAGSTER_UI_URL_ENV = "SYNC_DAGSTER_UI_URL"
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


def organizations_of(conn: Connection, ident: str) -> list[str]:
    """The organizations holding `ident` (an unscoped operator pasted an id without one)."""
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


def dagster_run_url(run_id: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The run's page in the Dagster UI ($SYNC_DAGSTER_UI_URL, e.g. http://localhost:3000)."""
    base = (os.environ if environ is None else environ).get(DAGSTER_UI_URL_ENV, "").rstrip("/")
    if not base or not run_id:
        return None
    return f"{base}/runs/{quote(run_id, safe='')}"
