"""`sync-pipelines console`: the read-only operator console on its own listener."""

from __future__ import annotations

import click

from sync_pipelines.cli.context import database_url_option


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8091, show_default=True)
@database_url_option
def console(host: str, port: int, database_url: str | None) -> None:
    """Serve the operator console at http://HOST:PORT/console/ (credentials:
    SYNC_CONSOLE_TOKEN, or SYNC_CONSOLE_USER and SYNC_CONSOLE_PASSWORD)."""
    from sync_pipelines.console.auth import ConsoleConfigError
    from sync_pipelines.console.server import run_console  # starlette/uvicorn only here

    try:
        run_console(host, port, database_url=database_url)
    except ConsoleConfigError as exc:  # names the variable, never its value
        raise click.ClickException(str(exc)) from None
