"""`sync-pipelines console`: the operator console on its own listener."""

from __future__ import annotations

import click

from sync_pipelines.cli.context import database_url_option


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8091, show_default=True)
@database_url_option
def console(host: str, port: int, database_url: str | None) -> None:
    """Serve the operator console at http://HOST:PORT/console/ (credentials:
    SYNC_CONSOLE_TOKEN, SYNC_CONSOLE_USER and SYNC_CONSOLE_PASSWORD, SYNC_CONSOLE_TENANT_TOKENS;
    to replay and quarantine dead letters: SYNC_CONSOLE_WRITE_TOKEN,
    SYNC_CONSOLE_TENANT_WRITE_TOKENS)."""
    from sync_pipelines.console.auth import ConsoleConfigError
    from sync_pipelines.console.server import run_console  # starlette/uvicorn only here

    try:
        run_console(host, port, database_url=database_url)
    except ConsoleConfigError as exc:  # names the variable, never its value
        raise click.ClickException(str(exc)) from None
