"""`sync-pipelines activity`: activity-log rows of a run, a request or an integration."""

from __future__ import annotations

import json

import click

from sync_pipelines.cli.context import open_store


@click.command()
@click.option("--organization", "organization_id", required=True)
@click.option("--run-id", default=None)
@click.option("--request-id", default=None)
@click.option("--integration", "integration_id", default=None)
@click.option("--limit", type=int, default=200, show_default=True)
def activity(
    organization_id: str,
    run_id: str | None,
    request_id: str | None,
    integration_id: str | None,
    limit: int,
) -> None:
    """Print activity-log rows (JSON lines) for a run, a request or an integration."""
    from sync_pipelines.store.activity import activity_rows

    with open_store(writes=False).connect() as conn:
        for row in activity_rows(
            conn,
            organization_id,
            run_id=run_id,
            request_id=request_id,
            integration_id=integration_id,
            limit=limit,
        ):
            click.echo(json.dumps(row, default=str))
