"""A running Dagster deployment for the end-to-end tests: `dagster-webserver` and
`dagster-daemon run` as real subprocesses over the repo's workspace.yaml, on a private
Postgres-backed DAGSTER_HOME (a copy of deploy/dagster.yaml with the daemon's loops tightened),
a small seeded Golioth emulator and integrations registered in a Postgres sync store."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import yaml
from sync_pipelines_peers.emulators.golioth import GoliothEmulator, GoliothEmulatorConfig
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.migrations import migrate
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines_tests.conftest import POSTGRES_ADMIN_URL

REPO = Path(__file__).resolve().parents[2]
DEPLOY_YAML = REPO / "deploy" / "dagster.yaml"
LOCATION = "sync_pipelines"
REPOSITORY = "__repository__"  # the name Dagster gives a module's single Definitions object

ORGANIZATION = "org-e2e"
#: synced by hand through GraphQL, later given bad credentials to fail for real
SYNCED = "golioth-e2e"
#: never synced by hand: due at once, so the poll schedule's first tick starts its run
POLLED = "golioth-e2e-polled"
KEY_ENV = "E2E_GOLIOTH_API_KEY"
WRONG_KEY_ENV = "E2E_GOLIOTH_WRONG_KEY"
DEVICE_COUNT = 12

_READY_TIMEOUT_S = 180.0


@dataclass
class DagsterStack:
    home: Path
    port: int
    store_url: str
    golioth: GoliothEmulator
    golioth_url: str
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """A raw GraphQL call, for what DagsterGraphQLClient has no method for."""
        response = httpx.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def log_path(self, name: str) -> Path:
        return self.home / f"{name}.log"

    def log_tails(self, lines: int = 60) -> str:
        parts = []
        for name in self.processes:
            text = self.log_path(name).read_text(errors="replace").splitlines()
            parts.append(f"----- last {lines} lines of {name} ({self.log_path(name)}) -----")
            parts.extend(text[-lines:])
        return "\n".join(parts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def instance_yaml() -> dict[str, Any]:
    """deploy/dagster.yaml as is, with the daemon's loops tightened so a test waits seconds, not
    minutes: the queue is read every second and sensors/schedules tick in threads (a slow sensor
    must not hold back the failure sensor)."""
    config = yaml.safe_load(DEPLOY_YAML.read_text())
    config["run_coordinator"]["config"]["dequeue_interval_seconds"] = 1
    config["sensors"] = {"use_threads": True, "num_workers": 4}
    config["schedules"] = {"use_threads": True, "num_workers": 2}
    return config


@contextlib.contextmanager
def _database(prefix: str) -> Iterator[str]:
    """A fresh database on the shared server (its name), dropped on exit."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _register(store: Store, golioth: EmulatorServer, config: GoliothEmulatorConfig) -> None:
    for integration_id in (SYNCED, POLLED):
        register_integration(
            store,
            Integration(
                integration_id=integration_id,
                organization_id=ORGANIZATION,
                provider="golioth",
                name=f"Golioth {integration_id}",
                settings={"base_url": golioth.url, "project_id": config.project_id},
                secret_refs={"api_key": KEY_ENV},
            ),
        )


def dagster_env(home: Path, dagster_db: str, store_url: str, api_key: str) -> dict[str, str]:
    admin = urlsplit(POSTGRES_ADMIN_URL)
    return {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_USER": admin.username or "postgres",
        "DAGSTER_PG_PASSWORD": admin.password or "",
        "DAGSTER_PG_HOST": admin.hostname or "127.0.0.1",
        "DAGSTER_PG_PORT": str(admin.port or 5432),
        "DAGSTER_PG_DB": dagster_db,
        "SYNC_DATABASE_URL": store_url,
        "SYNC_HOME": str(home),
        "SYNC_LOG_FORMAT": "json",
        "SYNC_EXECUTOR": "default",  # steps in local subprocesses: no Celery workers here
        KEY_ENV: api_key,
        WRONG_KEY_ENV: "e2e-not-the-key",
    }


def _start(stack: DagsterStack, name: str, *args: str) -> None:
    log = stack.log_path(name).open("wb")
    stack.processes[name] = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / name), *args, "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        env={**os.environ, **stack.env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: its code servers and runs stop with it
    )
    log.close()


def _wait_until_loaded(stack: DagsterStack) -> None:
    """Until the webserver answers GraphQL with the code location loaded."""
    query = (
        "{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus "
        "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
    )
    deadline = time.monotonic() + _READY_TIMEOUT_S
    last: object = None
    while time.monotonic() < deadline:
        for name, process in stack.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}\n{stack.log_tails()}")
        try:
            entries = stack.graphql(query)["workspaceOrError"]["locationEntries"]
        except (httpx.HTTPError, AssertionError, KeyError) as exc:
            last = exc
        else:
            last = entries
            loaded = [e for e in entries if e["name"] == LOCATION and e["loadStatus"] == "LOADED"]
            if loaded:
                error = loaded[0]["locationOrLoadError"]
                if error["__typename"] == "PythonError":
                    raise RuntimeError(f"code location failed to load: {error['message']}")
                return
        time.sleep(0.5)
    raise TimeoutError(
        f"webserver not ready after {_READY_TIMEOUT_S:.0f} s (last: {last})\n{stack.log_tails()}"
    )


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to the process groups they lead (webserver/daemon, their code servers, runs),
    all at once; SIGKILL to a group that has not exited in time."""
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group (a run still going)
        process.wait(timeout=10)


@contextlib.contextmanager
def running_stack() -> Iterator[DagsterStack]:
    """Start everything; stop and drop everything on exit, whatever happened."""
    home = Path(tempfile.mkdtemp(prefix="sync-e2e-"))
    golioth_config = GoliothEmulatorConfig(
        api_key=f"gk-{uuid.uuid4().hex}", device_count=DEVICE_COUNT
    )
    golioth = GoliothEmulator(golioth_config)
    golioth_server = EmulatorServer(golioth.app).start()
    try:
        with _database("e2e_dagster") as dagster_db, _database("e2e_sync") as sync_db:
            store_url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{sync_db}"
            store = Store(store_url)
            try:
                migrate(store)
                _register(store, golioth_server, golioth_config)
            finally:
                store.dispose()
            (home / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml(), sort_keys=False))
            stack = DagsterStack(
                home=home,
                port=free_port(),
                store_url=store_url,
                golioth=golioth,
                golioth_url=golioth_server.url,
                env=dagster_env(home, dagster_db, store_url, golioth_config.api_key),
            )
            try:
                _start(stack, "dagster-webserver", "-h", "127.0.0.1", "-p", str(stack.port))
                _start(stack, "dagster-daemon", "run")
                _wait_until_loaded(stack)
                yield stack
            finally:
                _stop(list(stack.processes.values()))
    finally:
        golioth_server.stop()
        shutil.rmtree(home, ignore_errors=True)
