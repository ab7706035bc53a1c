"""`sync-pipelines migrate`: create the store or bring it to the packaged schema."""

from __future__ import annotations

import click

from sync_pipelines.cli.context import database_url_option, store_handle


@click.command()
@database_url_option
def migrate(database_url: str | None) -> None:
    """Apply the pending migrations shipped with the package (idempotent)."""
    from sqlalchemy.exc import ProgrammingError

    from sync_pipelines.store.database import Store, StoreConfigError
    from sync_pipelines.store.migrations import MigrationError
    from sync_pipelines.store.migrations import migrate as apply

    handle = store_handle(database_url)
    try:
        store = Store(handle.database_url)
        click.get_current_context().call_on_close(store.dispose)
        applied = apply(store)
    except (StoreConfigError, MigrationError) as exc:
        raise click.ClickException(str(exc)) from exc
    except ProgrammingError as exc:
        if getattr(exc.orig, "sqlstate", None) != "42501":  # insufficient_privilege
            raise
        raise click.ClickException(
            f"{store.location}: this role may not create the schema "
            f"({str(exc.orig).splitlines()[0]}): run `sync-pipelines migrate` as the tables' "
            "owner (docs/deployment.md, Tenancy and row-level security); the service role "
            "only uses it"
        ) from None
    click.echo(
        f"{store.location}: " + (f"applied {', '.join(applied)}" if applied else "up to date")
    )
