"""A Dagster instance built from the production deploy/dagster.yaml, on a fresh database of the
real PostgreSQL (the DAGSTER_PG_* variables point at it), dropped afterwards."""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import psycopg
import pytest

from sync_pipelines_tests.conftest import POSTGRES_ADMIN_URL

DEPLOY_YAML = Path(__file__).resolve().parents[2] / "deploy" / "dagster.yaml"


@pytest.fixture
def dagster_pg_db(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh database named in DAGSTER_PG_DB (with user/host/port/password set the same way)."""
    name = f"dagster_deploy_test_{os.getpid()}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    admin_url = urlsplit(POSTGRES_ADMIN_URL)
    monkeypatch.setenv("DAGSTER_PG_USER", admin_url.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", admin_url.password or "")
    monkeypatch.setenv("DAGSTER_PG_HOST", admin_url.hostname or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(admin_url.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_DB", name)
    yield name
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def dagster_home(tmp_path: Path) -> Path:
    """A DAGSTER_HOME holding exactly the production yaml."""
    shutil.copy(DEPLOY_YAML, tmp_path / "dagster.yaml")
    return tmp_path


@pytest.fixture
def deploy_instance(dagster_home: Path, dagster_pg_db: str) -> Iterator[dg.DagsterInstance]:
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        yield instance
    finally:
        instance.dispose()
