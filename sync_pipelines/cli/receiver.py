"""`sync-pipelines receiver`: the webhook receiver (its own store handling: it must start and
answer while the store is down)."""

from __future__ import annotations

import click

from sync_pipelines.cli.context import database_url_option


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8090, show_default=True)
@database_url_option
def receiver(host: str, port: int, database_url: str | None) -> None:
    """Serve the webhook receiver: POST /webhooks/{provider}/{integration_id}, GET /health,
    GET /metrics ($SYNC_RECEIVER_WORKERS processes, default one per core)."""
    from sync_pipelines.webhooks.app import run_receiver  # starlette/uvicorn only for this command

    try:
        run_receiver(host, port, database_url=database_url)
    except ValueError as exc:  # a receiver setting (SYNC_RECEIVER_*) that cannot be used
        raise click.ClickException(str(exc)) from None
