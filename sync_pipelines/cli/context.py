"""The CLI's one way to the store: opened once per command, migrated for commands that write,
and, for commands that only read, refused with a message naming the store when it does not
exist or lacks migrations (a read never creates a store)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from sync_pipelines.store.database import Store


@dataclass
class StoreHandle:
    """Root-context object: the store a command was pointed at, opened on first use."""

    database_url: str | None = None
    _store: Store | None = field(default=None, repr=False)
    _migrated: bool = False

    def open(self, *, writes: bool) -> Store:
        from sync_pipelines.store.database import Store, StoreConfigError
        from sync_pipelines.store.migrations import (
            MigrationError,
            ensure_migrated,
            unapplied_migrations,
        )

        try:
            if self._store is None:
                self._store = Store(self.database_url, must_exist=not writes)
                click.get_current_context().find_root().call_on_close(self._store.dispose)
            store = self._store
            if writes and not self._migrated:
                ensure_migrated(store)
                self._migrated = True
            elif not writes and not self._migrated:
                missing = unapplied_migrations(store)
                if missing:
                    raise click.ClickException(
                        f"the store at {store.location} lacks {len(missing)} migration(s) "
                        f"({missing[0]}{', …' if len(missing) > 1 else ''}): run "
                        f"`sync-pipelines migrate` first"
                    )
                self._migrated = True
        except (StoreConfigError, MigrationError) as exc:
            raise click.ClickException(str(exc)) from exc
        return store


def store_handle(database_url: str | None = None) -> StoreHandle:
    """The command's store handle, created on the root context; a `--database-url` given to a
    command overrides the environment's."""
    handle = click.get_current_context().find_root().ensure_object(StoreHandle)
    if database_url and handle._store is None:
        handle.database_url = database_url
    return handle


def open_store(
    *, writes: bool, database_url: str | None = None, organization_id: str | None = None
) -> Store:
    """The command's store; with `organization_id`, scoped to it (`Store.scoped`: on Postgres
    every transaction works in that organization, which row-level security then holds it to)."""
    store = store_handle(database_url).open(writes=writes)
    return store.scoped(organization_id) if organization_id else store


@contextmanager
def store_session(*, writes: bool, organization_id: str | None = None) -> Iterator[Store]:
    """`with store_session(writes=...) as store:` — the command's store (disposed of when the
    command's context closes), scoped to `organization_id` when given."""
    yield open_store(writes=writes, organization_id=organization_id)


#: `--database-url`, one spelling: every command takes it before its name (`sync-pipelines
#: --database-url URL report …`, the root group's option); migrate, health, console and
#: receiver also after it
database_url_option = click.option(
    "--database-url",
    envvar="SYNC_DATABASE_URL",
    default=None,
    help="The store (default: $SYNC_DATABASE_URL, else SQLite under $SYNC_HOME, else "
    "$DAGSTER_HOME, else ./.dagster_home).",
)


def cli_actor() -> str:
    """Who a CLI command acts as, for the rows that record an operator's change:
    `SYNC_OPERATOR` when set (a name, e.g. an e-mail address), else the login user, as `cli:NAME`."""
    import getpass
    import os

    name = os.environ.get("SYNC_OPERATOR", "").strip()
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry for the uid (a container)
            name = f"uid {os.getuid()}"
    return f"cli:{name}"
