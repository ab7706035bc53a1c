"""Dagster resources: the store, chosen per deployment by `SYNC_DATABASE_URL`."""

import dagster as dg

from sync_pipelines.store.database import Store, resolve_database_url
from sync_pipelines.store.migrations import ensure_migrated

_stores: dict[str, Store] = {}


class SyncStoreResource(dg.ConfigurableResource):
    """The relational store. Unset URL: `$SYNC_DATABASE_URL`, else SQLite under `$SYNC_HOME`."""

    database_url: str | None = None

    def get_store(self) -> Store:
        url = resolve_database_url(self.database_url)  # so a changed $SYNC_DATABASE_URL is honoured
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = Store(url)
        ensure_migrated(store)
        return store
