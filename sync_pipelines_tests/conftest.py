"""Shared fixtures: a real store on SQLite and on PostgreSQL, a real Golioth emulator on a
loopback socket, and a registered integration pointing at it.

PostgreSQL is required: a test that cannot reach it fails, it never skips (CI must prove both
backends). Point SYNC_TEST_POSTGRES_URL elsewhere if the server is not on 127.0.0.1:5432.
"""
# ruff: noqa: E402

from __future__ import annotations

import os
import tempfile

# Before anything imports prometheus_client (it picks its mode at import): this session's
# metric files go to a throwaway directory, not $SYNC_HOME. One per xdist worker (a worker
# inherits the controller's environment): /metrics merges every process writing to the
# directory, so a test counting a metric must not see the other worker's increments.
if os.environ.get("PYTEST_XDIST_WORKER"):
    worker = os.environ["PYTEST_XDIST_WORKER"]
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"sync-prom-{worker}-")
else:
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="sync-prom-"))
# Every peer of the suite listens on loopback, which the service refuses to call unless allowed
# (sync_pipelines/outbound.py); subprocesses inherit the allowance. Tests of the refusal unset it.
os.environ.setdefault("SYNC_OUTBOUND_ALLOW", "127.0.0.0/8,::1")

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import pytest
import sqlalchemy as sa
from sync_pipelines_peers.emulators.golioth import GoliothEmulator, GoliothEmulatorConfig
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.observability.logging import configure_logging
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.migrations import migrate
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines.sync.session import IntegrationSession, RunContext, integration_session

POSTGRES_ADMIN_URL = os.environ.get(
    "SYNC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
GOLIOTH_KEY_ENV = "TEST_GOLIOTH_API_KEY"

configure_logging("json", "DEBUG", force=True)


@pytest.fixture(scope="session")
def postgres_url(worker_id: str) -> Iterator[str]:
    """A fresh database for this test worker, dropped at the end."""
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is required for the store tests and is not reachable at {POSTGRES_ADMIN_URL}: {exc}. "
            "Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            pytrace=False,
        )
    name = f"sync_test_{worker_id}_{os.getpid()}"
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    store = Store(url)
    migrate(store)
    store.dispose()
    yield url
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _truncate_all(store: Store) -> None:
    """Empty every table of the worker's database (the migrations' ledger kept). DELETE, not
    TRUNCATE: a test leaves a few rows, and TRUNCATE's cost is per table (a new file for each
    table and index: 0.24 s for the 38 tables, 20x DELETE's), paid before every Postgres test.
    Foreign keys and triggers are off for this transaction only (`session_replication_role`:
    the tests' login is a superuser), so the order of the tables does not matter and emptying
    writes no device history."""
    with store.transaction() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        tables = (
            conn.execute(
                sa.text(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
                    "AND c.relname <> 'schema_migrations'"
                )
            )
            .scalars()
            .all()
        )
        for table in tables:
            conn.exec_driver_sql(f'DELETE FROM "{table}"')


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:
    """A migrated, empty store — once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        store = Store(f"sqlite:///{tmp_path}/store.db")
        migrate(store)
    else:
        store = Store(request.getfixturevalue("postgres_url"))
        _truncate_all(store)
    yield store
    store.dispose()


@pytest.fixture
def service_role_url(postgres_url) -> Iterator[str]:
    """This worker's emptied Postgres store, reached as the sync service logs in: a login role
    whose only grant is `sync_app` (sql/026; owns nothing, no BYPASSRLS)."""
    owner = Store(postgres_url)
    _truncate_all(owner)
    owner.dispose()
    role = f"service_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN IN ROLE sync_app")
    yield postgres_url.replace("postgres@", f"{role}@", 1)
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        # its sessions' temporary staging tables are its own: end them first
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
        )
        admin.execute(f"DROP OWNED BY {role}")
        admin.execute(f"DROP ROLE IF EXISTS {role}")


@pytest.fixture
def service_store(service_role_url) -> Iterator[Store]:
    store = Store(service_role_url)
    yield store
    store.dispose()


@pytest.fixture
def owner_store(service_role_url, postgres_url) -> Iterator[Store]:
    """The tables' owner (the migrating role) on the store `service_role_url` reaches: what a
    test reads or writes past row security."""
    store = Store(postgres_url)
    yield store
    store.dispose()


@pytest.fixture
def sqlite_store(tmp_path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path}/store.db")
    migrate(store)
    yield store
    store.dispose()


@dataclass
class RunningGolioth:
    emulator: GoliothEmulator
    server: EmulatorServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def api_key(self) -> str:
        return self.emulator.config.api_key


@pytest.fixture
def golioth_factory() -> Iterator[Callable[..., RunningGolioth]]:
    """Start Golioth emulators with any config; all are stopped after the test."""
    started: list[EmulatorServer] = []

    def start(**config) -> RunningGolioth:
        config.setdefault("api_key", f"gk-{uuid.uuid4().hex}")
        emulator = GoliothEmulator(GoliothEmulatorConfig(**config))
        server = EmulatorServer(emulator.app).start()
        started.append(server)
        return RunningGolioth(emulator, server)

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def golioth(golioth_factory) -> RunningGolioth:
    """A seeded emulator with 250 devices (three pages of 100)."""
    return golioth_factory(device_count=250)


@pytest.fixture
def register_golioth(monkeypatch) -> Callable[..., Integration]:
    """Register a Golioth integration pointing at an emulator; its key goes in the environment."""

    def register(
        store: Store,
        running: RunningGolioth,
        *,
        organization_id: str = "org-a",
        integration_id: str = "golioth-a",
        **settings,
    ) -> Integration:
        monkeypatch.setenv(GOLIOTH_KEY_ENV, running.api_key)
        integration = Integration(
            integration_id=integration_id,
            organization_id=organization_id,
            provider="golioth",
            name="Golioth test",
            settings={
                "base_url": running.url,
                "project_id": running.emulator.config.project_id,
                **settings,
            },
            secret_refs={"api_key": GOLIOTH_KEY_ENV},
        )
        register_integration(store, integration)
        return integration

    return register


@pytest.fixture
def open_session() -> Callable[..., object]:
    """`with open_session(store, integration_id) as session:` — a session as a run would have."""

    def open_(
        store: Store, integration_id: str, run_id: str | None = None, step_key: str = "test_step"
    ):
        return integration_session(
            store,
            integration_id,
            RunContext(
                run_id=run_id or f"run-{uuid.uuid4()}", step_key=step_key, job_name="test_job"
            ),
        )

    return open_


__all__ = ["IntegrationSession", "RunningGolioth"]
