"""One devices sync in this process, as `sync-pipelines sync ID --stream devices` runs it, with
the observability switches the benchmark needs and the time of each per-run phase.

The product has a switch for structured logs (`SYNC_LOG_LEVEL`) but none yet for the activity
log. With `SYNC_ACTIVITY_LOG=off` this script keeps the activity recorder (its counts and
latencies feed the run's figures) but hands it a sink that discards rows — what the proposed
product switch would do in `integration_session`. If the product already honours the variable
(the session's recorder no longer writes to the store), that is used and nothing is replaced.
Prints one JSON line: the sync's figures, `activity_log` (on | off-product | off-bench) and
`phases_s` (imports, store, migrations check, session, sync, flush).

    SYNC_DATABASE_URL=... BENCH_GOLIOTH_KEY=... python bench/sync_child.py INTEGRATION_ID
"""

from __future__ import annotations

import time

_started, _started_monotonic = time.perf_counter(), time.monotonic()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from sync_pipelines.observability.activity import ActivityRow, ActivitySink  # noqa: E402
from sync_pipelines.observability.logging import configure_logging  # noqa: E402
from sync_pipelines.store.database import Store  # noqa: E402
from sync_pipelines.store.migrations import ensure_migrated  # noqa: E402
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


def main(integration_id: str) -> None:
    phases = {"imports": time.perf_counter() - _started}
    mark = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = now - mark
        mark = now

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
    print(
        json.dumps(
            {
                "run_id": run.run_id,
                "stream": result.stream,
                "status": result.status,
                **result.metadata(),
                "activity_log": activity,
                "phases_s": {k: round(v, 4) for k, v in phases.items()},
                # CLOCK_MONOTONIC, so the parent can tell start-up and teardown apart
                "started_monotonic": _started_monotonic,
                "ended_monotonic": time.monotonic(),
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
