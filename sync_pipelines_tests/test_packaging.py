"""The product installs from its wheel: the wheel holds the product only (no tests, emulators,
peers or demo), carries its migrations, and an install outside the checkout migrates a new
SQLite file and a new Postgres database to every table."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from sync_pipelines_tests.conftest import POSTGRES_ADMIN_URL

REPO = Path(__file__).resolve().parents[1]
PACKAGED_SQL = sorted(p.name for p in (REPO / "sync_pipelines" / "store" / "sql").glob("*.sql"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of the tracked sources, so no stale `build/` of the checkout leaks in."""
    source = tmp_path_factory.mktemp("source")
    tracked = subprocess.run(
        ["git", "ls-files", "pyproject.toml", "README.md", "sync_pipelines"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in tracked:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("sync_pipelines-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed into a directory of its own (its dependencies are this venv's)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target)]
        + [str(wheel)],
        check=True,
        capture_output=True,
    )
    return target


def _cli(installed: Path, cwd: Path, database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNC_", "DAGSTER_", "PYTHON"))}
    env |= {"PYTHONPATH": str(installed), "SYNC_DATABASE_URL": database_url}
    code = (
        "import sys, sync_pipelines; "
        f"assert sync_pipelines.__file__.startswith({str(installed)!r}), sync_pipelines.__file__; "
        "from sync_pipelines.cli import main; sys.argv[0] = 'sync-pipelines'; main()"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_the_wheel_holds_the_product_and_its_migrations_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"sync_pipelines", wheel.name.split("-py3")[0] + ".dist-info"}
    for unwanted in ("emulators", "launchers", "demo", "alert_sink", "sync_pipelines_tests"):
        assert not [n for n in names if unwanted in n], unwanted
    shipped = sorted(
        n.rsplit("/", 1)[1] for n in names if n.startswith("sync_pipelines/store/sql/")
    )
    assert shipped == PACKAGED_SQL and len(shipped) >= 18


def test_an_installed_wheel_migrates_a_new_sqlite_file_outside_the_checkout(installed, tmp_path):
    url = f"sqlite:///{tmp_path}/new_store.db"
    first = _cli(installed, tmp_path, url, "migrate")
    assert first.returncode == 0, first.stderr
    assert "applied 001_core.sql" in first.stdout
    again = _cli(installed, tmp_path, url, "migrate")
    assert again.returncode == 0 and "up to date" in again.stdout, again.stderr
    engine = sa.create_engine(url)
    tables = set(sa.inspect(engine).get_table_names())
    engine.dispose()
    assert {"devices", "integrations", "integration_activity_log", "schema_migrations"} <= tables
    assert "alert_incidents" in tables and "provider_call_hours" in tables  # the last files too


def test_an_installed_wheel_migrates_a_new_postgres_database(installed, tmp_path):
    name = f"wheel_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        result = _cli(installed, tmp_path, url, "migrate")
        assert result.returncode == 0, result.stderr
        with psycopg.connect(url) as conn:
            versions = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            partitioned = conn.execute(
                "SELECT count(*) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid"
                " WHERE c.relname = 'integration_activity_log'"
            ).fetchone()[0]
        assert versions == {v for v in PACKAGED_SQL if ".sqlite." not in v}
        assert partitioned == 1  # the Postgres-only files ran too
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_product_cli_names_the_peers_extra_where_it_is_not_installed(installed, tmp_path):
    # The installed wheel alone: the editable peers distribution of this venv is hidden by
    # running with an isolated site (-S would drop the dependencies too), so look it up directly.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNC_", "PYTHON"))}
    env["PYTHONPATH"] = str(installed)
    code = (
        "import sys; from sync_pipelines import cli; "
        "cli.PEER_COMMAND_GROUP = 'sync_pipelines.no_such_group'; "
        "sys.argv[0] = 'sync-pipelines'; cli.main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "demo", "--devices", "5"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert (
        "sync_pipelines[peers]" in result.stderr and "comes with the local peers" in result.stderr
    )
