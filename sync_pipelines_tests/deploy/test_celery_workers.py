"""Celery scale-out for real: the production instance (deploy/dagster.yaml on Postgres), the
real RabbitMQ, two Celery workers started as the deploy README says, and the sync runs of four
Golioth integrations (one per partition, as `sync_organization` launches them) executed at once
with `SYNC_EXECUTOR=celery`. The activity log shows which worker (host, pid) ran each step: both
workers did some.

The run gets a queue of its own, so stale messages on the broker from other runs cannot reach
these workers, nor theirs this run. RabbitMQ is required: unreachable, the test fails, never
skips.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import kombu
import pytest
import sqlalchemy as sa

from sync_pipelines.defs.executors import BROKER_URL_ENV, EXECUTOR_ENV, QUEUE_ENV
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.database import Store

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER_SCRIPT = REPO_ROOT / "deploy" / "celery-worker"
BROKER_URL = os.environ.get("SYNC_TEST_RABBITMQ_URL", "pyamqp://guest:guest@127.0.0.1:5672//")
INTEGRATIONS = 4
DEVICES = 20
WORKER_READY_TIMEOUT_S = 60
RUN_TIMEOUT_S = 180
SYNC_JOB = "sync_golioth_integration"


@dataclass
class Worker:
    name: str
    process: subprocess.Popen
    log: Path

    @property
    def node_name(self) -> str:
        return f"{self.name}@{socket.gethostname()}"


@pytest.fixture
def celery_queue() -> Iterator[str]:
    """A queue no other run uses; deleted afterwards (Celery declares it durable)."""
    try:
        with kombu.Connection(BROKER_URL, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        pytest.fail(
            f"RabbitMQ is required for the Celery test and is not reachable at {BROKER_URL}: {exc}. "
            "Start it with: rabbitmq-server -detached (or `make services`)",
            pytrace=False,
        )
    name = f"sync_test_{uuid.uuid4().hex[:12]}"
    yield name
    with kombu.Connection(BROKER_URL, connect_timeout=5) as conn:
        conn.default_channel.queue_delete(name)


@pytest.fixture
def sync_store(postgres_url: str) -> Iterator[Store]:
    store = Store(postgres_url)
    yield store
    store.dispose()


def _celery_env(dagster_home: Path, store: Store, queue: str) -> dict[str, str]:
    """What the run and the workers share: instance, store, broker, queue (and, from this
    process's environment, the DAGSTER_PG_* connection and the integrations' API key) — the
    variables deploy/README.md lists."""
    return {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "SYNC_HOME": str(dagster_home),
        "SYNC_DATABASE_URL": store.url,
        EXECUTOR_ENV: "celery",
        BROKER_URL_ENV: BROKER_URL,
        QUEUE_ENV: queue,
        # the worker script runs this venv's `celery`
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def _start_worker(name: str, env: dict[str, str], log_dir: Path) -> Worker:
    # deploy/celery-worker, as an operator starts it, with the solo pool: the step then runs in
    # the worker's own process (the script execs Celery), so the pid an activity row records
    # is this process's pid.
    log = log_dir / f"{name}.log"
    command = [str(WORKER_SCRIPT), name, "--pool=solo", "--without-gossip", "--without-mingle"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return Worker(name, process, log)


def _stop(workers: list[Worker]) -> None:
    """Warm shutdown (SIGTERM) of all at once, then a kill for any that hangs."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.terminate()
    for worker in workers:
        try:
            worker.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait(timeout=5)


@contextmanager
def running_workers(names: list[str], env: dict[str, str], log_dir: Path) -> Iterator[list[Worker]]:
    """Workers consuming the queue `env` names, ready before this yields; stopped however the
    test ends."""
    workers: list[Worker] = []
    try:
        for name in names:
            workers.append(_start_worker(name, env, log_dir))
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
        for worker in workers:
            # "<node> ready." is Celery's line once the worker consumes from its queue
            while b" ready." not in worker.log.read_bytes():
                if worker.process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"Celery worker {worker.name} did not start:\n{worker.log.read_text()[-3000:]}"
                    )
                time.sleep(0.2)
        yield workers
    finally:
        _stop(workers)


def _execute_syncs(
    env: dict[str, str], integration_ids: list[str], tag: str
) -> list[subprocess.CompletedProcess]:
    """`dagster job execute` of each integration's provider sync job, all at once, as run
    workers would: the executor is the one the environment chooses when
    sync_pipelines.definitions loads."""
    processes = [
        subprocess.Popen(
            [
                sys.executable, "-m", "dagster", "job", "execute",
                "-m", "sync_pipelines.definitions", "-a", "defs", "-j", SYNC_JOB,
                "--tags", json.dumps({"dagster/partition": iid, "sync_pipelines/test_run": tag}),
            ],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for iid in integration_ids
    ]  # fmt: skip
    finished = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
        finished.append(
            subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        )
    return finished


def _devices_per_integration(store: Store, organization_id: str) -> dict[str, int]:
    with store.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT d.integration_id, COUNT(*) FROM devices d JOIN device_states s"
                " ON s.organization_id = d.organization_id AND s.integration_id = d.integration_id"
                " AND s.external_id = d.external_id"
                " WHERE d.organization_id = :o GROUP BY d.integration_id"
            ),
            {"o": organization_id},
        ).all()
    return dict(rows)


def test_an_organizations_syncs_are_spread_over_two_celery_workers(
    deploy_instance: dg.DagsterInstance,
    dagster_home: Path,
    sync_store: Store,
    celery_queue: str,
    golioth_factory,
    register_golioth,
    tmp_path: Path,
):
    golioth = golioth_factory(device_count=DEVICES)
    organization_id = f"org-celery-{uuid.uuid4().hex[:8]}"
    integration_ids = [f"{organization_id}-golioth-{n}" for n in range(INTEGRATIONS)]
    for integration_id in integration_ids:
        register_golioth(
            sync_store,
            golioth,
            organization_id=organization_id,
            integration_id=integration_id,
            per_page=10,
        )
    deploy_instance.add_dynamic_partitions("golioth_integrations", integration_ids)
    # the pool's row made once, before the runs: two runs starting together on a fresh instance
    # both insert it (Dagster's initialize_concurrency_limit_to_default) and one fails on the
    # unique key (seen once in a full run)
    deploy_instance.event_log_storage.initialize_concurrency_limit_to_default("golioth")
    env = _celery_env(dagster_home, sync_store, celery_queue)
    tag = uuid.uuid4().hex

    with running_workers(["w1", "w2"], env, tmp_path) as workers:
        finished = _execute_syncs(env, integration_ids, tag)
        logs = "\n".join(f"--- {w.name}\n{w.log.read_text()[-2000:]}" for w in workers)
    for done in finished:
        assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n{logs}"

    runs = deploy_instance.get_runs(filters=dg.RunsFilter(tags={"sync_pipelines/test_run": tag}))
    assert {run.tags["dagster/partition"] for run in runs} == set(integration_ids)
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
    # the broker URL (with its password) was read from the environment, never stored with a run
    assert all(BROKER_URL not in json.dumps(run.run_config) for run in runs)
    assert _devices_per_integration(sync_store, organization_id) == dict.fromkeys(
        integration_ids, DEVICES
    )

    with sync_store.connect() as conn:
        operations = [
            r
            for run in runs
            for r in activity_rows(conn, organization_id, run_id=run.run_id)
            if "worker" in (r["metadata"] or {})
        ]
    synced_by = {
        (r["integration_id"], r["activity_type"]): r["metadata"]["worker"] for r in operations
    }
    # every integration's import and state import is there, each done by one of our workers ...
    assert set(synced_by) == {(i, t) for i in integration_ids for t in ("import", "state_import")}
    assert {w["host"] for w in synced_by.values()} == {socket.gethostname()}
    pids = {w["pid"] for w in synced_by.values()}
    # ... and both of them did some
    assert pids == {w.process.pid for w in workers}

    # Dagster's event log agrees: each step says which Celery worker (node name) ran it
    celery_nodes = {
        str(entry.dagster_event.engine_event_data.metadata["Celery worker"].value)
        for run in runs
        for entry in deploy_instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
        if "Celery worker" in entry.dagster_event.engine_event_data.metadata
    }
    assert celery_nodes == {w.node_name for w in workers}
