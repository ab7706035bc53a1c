"""Dagster resources: the store, chosen per deployment by `SYNC_DATABASE_URL`."""


import dagster as dg

from sync_pipelines.store.database import Store
from sync_pipelines.store.migrations import ensure_migrated

_stores: dict[str | None, Store] = {}


class SyncStoreResource(dg.ConfigurableResource):
    """The relational store. Unset URL: `$SYNC_DATABASE_URL`, else SQLite under `$SYNC_HOME`."""

    database_url: str | None = None

    def get_store(self) -> Store:
        store = _stores.get(self.database_url)
        if store is None:
            store = _stores[self.database_url] = Store(self.database_url)
        ensure_migrated(store)
        return store
