"""One devices sync in this process, as `sync-pipelines sync ID --stream devices` runs it, with
the observability switches the benchmark needs and the time of each per-run phase.

The product's switches: structured logs by `SYNC_LOG_LEVEL`, the activity log by
`SYNC_ACTIVITY_LOG=off` (`integration_session` then hands the recorder a sink that discards
rows; its counts and latencies still feed the run's figures), reported as `off-product`. A
checkout older than that switch gets the same discarding sink from this script (`off-bench`),
so before/after comparisons still measure the same thing.
Prints one JSON line: the sync's figures, `activity_log` (on | off-product | off-bench) and
`phases_s` (imports, store, migrations check, session, sync, flush).

With `--warm-runs N`, also the per-run cost where the code is imported already (a Dagster run
worker, the in-process executor): N more 1-device syncs in this process through the Dagster
resource (`SyncStoreResource.get_store`), after one warm-up, as `warm_runs_s` (medians of
get_store, session open, the sync, session close), plus what a step process's first run pays
once its modules are loaded: a new engine, the uncached migrations check, the first connection.

    SYNC_DATABASE_URL=... BENCH_GOLIOTH_KEY=... python bench/sync_child.py INTEGRATION_ID [--warm-runs N]
"""

from __future__ import annotations

import time

_started, _started_monotonic = time.perf_counter(), time.monotonic()

import atexit  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from sync_pipelines.cli import freeze_gc_at_exit  # noqa: E402
from sync_pipelines.observability.activity import ActivityRow, ActivitySink  # noqa: E402
from sync_pipelines.observability.logging import configure_logging  # noqa: E402
from sync_pipelines.store.database import Store  # noqa: E402
from sync_pipelines.store.migrations import ensure_migrated, migrate  # noqa: E402
from sync_pipelines.sync.activity_sink import StoreActivitySink  # noqa: E402
from sync_pipelines.sync.inventory import sync_devices  # noqa: E402
from sync_pipelines.sync.session import RunContext, integration_session  # noqa: E402

#: the variable the benchmark proposes for the product (see the module docstring)
ACTIVITY_LOG_ENV = "SYNC_ACTIVITY_LOG"


class DiscardSink(ActivitySink):
    """Rows go nowhere; the recorder still counts calls and latencies."""

    def insert(self, rows: Sequence[ActivityRow]) -> None:
        pass

    def complete(self, row: ActivityRow) -> None:
        pass


def warm_runs(integration_id: str, runs: int) -> dict[str, float]:
    """Medians over `runs` in-process syncs after one warm-up (see the module docstring)."""
    from sync_pipelines.defs.resources import SyncStoreResource  # imports dagster: not timed

    resource = SyncStoreResource()
    timings: dict[str, list[float]] = defaultdict(list)
    for n in range(runs + 1):
        run = RunContext(run_id=f"warm-{uuid.uuid4()}", step_key="warm_sync", job_name="bench")
        t0 = time.perf_counter()
        store = resource.get_store()
        t1 = time.perf_counter()
        with integration_session(store, integration_id, run) as session:
            t2 = time.perf_counter()
            result = sync_devices(session)
            t3 = time.perf_counter()
        t4 = time.perf_counter()
        if result.status != "success":
            raise RuntimeError(f"warm run {n}: status {result.status}")
        # what a new step process adds once its modules are loaded (not cached there yet)
        t5 = time.perf_counter()
        fresh = Store(store.url)
        t6 = time.perf_counter()
        migrate(fresh)
        t7 = time.perf_counter()
        with fresh.connect():
            t8 = time.perf_counter()
        fresh.dispose()
        if n == 0:
            continue  # warm-up: first HTTP client, prepared statements, metric files
        for name, seconds in (
            ("get_store", t1 - t0),
            ("session_open", t2 - t1),
            ("sync_devices", t3 - t2),
            ("session_close", t4 - t3),
            ("per_run_total", t4 - t0),
            ("fresh_engine", t6 - t5),
            ("migrations_check_uncached", t7 - t6),
            ("first_connection", t8 - t7),
        ):
            timings[name].append(seconds)
    return {name: round(statistics.median(values), 5) for name, values in timings.items()}


def main(integration_id: str, warm: int = 0) -> None:
    phases = {"imports": time.perf_counter() - _started}
    mark = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = now - mark
        mark = now

    atexit.register(freeze_gc_at_exit)  # as the CLI does
    configure_logging()
    store = Store()
    phase("store_engine")
    ensure_migrated(store)  # integration_session's own call is then a no-op (cached per process)
    phase("migrations_check")
    activity_off = os.environ.get(ACTIVITY_LOG_ENV, "on").lower() in ("off", "0", "false", "no")
    run = RunContext(run_id=f"cli-{uuid.uuid4()}", step_key="cli_sync_devices", job_name="cli")
    with integration_session(store, integration_id, run) as session:
        phase("session_open")
        activity = "on"
        if activity_off:
            if isinstance(session.recorder.sink, StoreActivitySink):
                session.recorder.sink = DiscardSink()
                activity = "off-bench"
            else:
                activity = "off-product"
        result = sync_devices(session)
        phase("sync_devices")
    phase("session_close")
    store.dispose()
    phase("dispose")
    phases["total_in_process"] = time.perf_counter() - _started
    warm_figures = {"warm_runs_s": warm_runs(integration_id, warm)} if warm else {}
    print(
        json.dumps(
            {
                "run_id": run.run_id,
                "stream": result.stream,
                "status": result.status,
                **result.metadata(),
                "activity_log": activity,
                "phases_s": {k: round(v, 4) for k, v in phases.items()},
                **warm_figures,
                # CLOCK_MONOTONIC, so the parent can tell start-up and teardown apart
                "started_monotonic": _started_monotonic,
                "ended_monotonic": time.monotonic(),
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) == 2:
        main(sys.argv[1])
    elif len(sys.argv) == 4 and sys.argv[2] == "--warm-runs" and sys.argv[3].isdigit():
        main(sys.argv[1], int(sys.argv[3]))
    else:
        raise SystemExit(__doc__)
