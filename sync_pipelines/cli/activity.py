"""`sync-pipelines activity`: activity-log rows of a run, a request or an integration, as a table
(`--json`: one JSON object a line, every column, for scripts)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import click

from sync_pipelines.cli.context import open_store

_HEADERS = ("TIME", "TYPE", "STATUS", "#", "CODE", "MS", "REQUEST", "DEVICE", "CALL", "ERROR")
_MAX_WIDTHS = {"CALL": 80, "ERROR": 80}


@click.command()
@click.option("--organization", "organization_id", required=True)
@click.option("--run-id", default=None)
@click.option("--request-id", default=None)
@click.option("--integration", "integration_id", default=None)
@click.option("--limit", type=int, default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON lines, every column.")
def activity(
    organization_id: str,
    run_id: str | None,
    request_id: str | None,
    integration_id: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Print activity-log rows (oldest first) for a run, a request or an integration."""
    from sync_pipelines.store.activity import activity_rows

    with open_store(writes=False, organization_id=organization_id).connect() as conn:
        rows = activity_rows(
            conn,
            organization_id,
            run_id=run_id,
            request_id=request_id,
            integration_id=integration_id,
            limit=limit,
        )
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, default=str))
        return
    click.echo("\n".join(activity_table(rows)))


def activity_table(rows: list[dict[str, Any]]) -> list[str]:
    from sync_pipelines.text_table import render_table

    if not rows:
        return ["(no activity rows)"]
    return render_table(
        _HEADERS,
        [
            (
                _time(row["created_at"]),
                row["activity_type"],
                row["status"],
                row["attempt"],
                row["status_code"],
                f"{row['response_time_ms']:.1f}" if row["response_time_ms"] is not None else None,
                row["request_id"],
                row.get("external_id"),
                " ".join(p for p in (row["method"], _path(row["endpoint"])) if p) or None,
                f"{row['error_type']}: {row['error_message'] or ''}" if row["error_type"] else None,
            )
            for row in rows
        ],
        max_widths=_MAX_WIDTHS,
        right_aligned=("#", "CODE", "MS"),
    )


def _path(endpoint: str | None) -> str | None:
    """A URL's path and query: the host is the integration's, and it would push the path (the
    part that tells calls apart) out of the column. `--json` keeps the whole URL."""
    if not endpoint:
        return endpoint
    parts = urlsplit(endpoint)
    if not parts.scheme:
        return endpoint
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _time(value: Any) -> str:
    return str(value)[:23].replace("T", " ")
