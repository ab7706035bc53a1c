"""The operator console on a listener of its own (`sync-pipelines console`, default port 8091),
never on the internet-facing webhook receiver: the receiver serves only `/webhooks`, `/health`
and `/metrics`, and the console can stay on an internal address behind its own access rules.

The console's pages keep their `/console/` paths; `/` redirects there."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import RedirectResponse
from starlette.routing import Mount, Route

from sync_pipelines.console.app import create_console_app
from sync_pipelines.console.auth import (
    PASSWORD_ENV,
    TENANT_TOKENS_ENV,
    TENANT_WRITE_TOKENS_ENV,
    TOKEN_ENV,
    WRITE_TOKEN_ENV,
    ConsoleAuth,
)
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.store.database import Store
from sync_pipelines.webhooks.observed_requests import ObservedRequests

DEFAULT_PORT = 8091

_log = get_logger("console.server")


def create_console_server(store: Store, *, environ: Mapping[str, str] | None = None) -> Starlette:
    """The console as a whole ASGI app: its pages under `/console`, `/` pointing there."""
    console = create_console_app(store, environ=environ)
    app = Starlette(
        routes=[
            Route("/", lambda _request: RedirectResponse("/console/"), methods=["GET"]),
            Mount("/console", app=console),
        ],
        middleware=[Middleware(ObservedRequests)],  # spans and Sentry reports, when configured
    )
    app.state.console = console.state.console  # `.close()` releases what its actions opened
    return app


def run_console(
    host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, database_url: str | None = None
) -> None:
    """Serve the console in the foreground with uvicorn."""
    import uvicorn

    from sync_pipelines.observability.logging import configure_logging

    configure_logging()
    store = Store(database_url)
    app = create_console_server(store)  # ConsoleConfigError: a credential is unusable
    _log.info("console_starting", host=host, port=port, store=repr(store))
    if not ConsoleAuth.from_env().enabled:
        _log.warning(
            "console_without_credentials",
            note=f"every request answers 503 until {TOKEN_ENV}, {PASSWORD_ENV}, "
            f"{TENANT_TOKENS_ENV}, {WRITE_TOKEN_ENV} or {TENANT_WRITE_TOKENS_ENV} is set and the "
            "console restarted",
        )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
    )
