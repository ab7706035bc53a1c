"""Fixtures for the retention tests: the Postgres store on its own (partitions, row-level
security), a Dagster test instance, and a login role that is a member of sync_tenant."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import dagster as dg
import psycopg
import pytest

from sync_pipelines.store.database import Store
from sync_pipelines_tests.conftest import _truncate_all


@pytest.fixture
def pg_store(postgres_url) -> Iterator[Store]:
    """The session's migrated Postgres store, emptied (its partitions stay, empty)."""
    store = Store(postgres_url)
    _truncate_all(store)
    yield store
    store.dispose()


@pytest.fixture(scope="module")
def module_instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def instance(module_instance) -> dg.DagsterInstance:
    module_instance.wipe()
    return module_instance


@pytest.fixture
def tenant_url(postgres_url) -> Iterator[str]:
    """A login role in sync_tenant, created for this test and dropped after."""
    role = f"tenant_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN IN ROLE sync_tenant")
    try:
        yield postgres_url.replace("postgres@", f"{role}@", 1)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP ROLE IF EXISTS {role}")
