"""Golioth state sync, one read per device vs states from the device list (`state_source`),
side by side: states/s and this process's CPU per state, medians of alternating repetitions.

One emulator, one Postgres store, two integrations over the same devices (their inventories
synced once); before every timed state sync the integration's state rows are deleted, so each
is a full first load.

    .venv/bin/python bench/state_sources.py --devices 10000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from bench_support import fresh_store_url
from golioth_bench import SYNC_ENV, load_average, register_golioth, start_emulator, stop

SOURCES = ("device", "list")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    emulator, url = start_emulator(args.devices)
    store_url, drop = fresh_store_url("postgres", prefix="sync_bench_states")
    try:
        integrations = {
            source: register_golioth(store_url, url, settings={"state_source": source})
            for source in SOURCES
        }
        os.environ.update({**SYNC_ENV, "SYNC_DATABASE_URL": store_url})
        import sqlalchemy as sa

        from sync_pipelines.observability.logging import configure_logging
        from sync_pipelines.store.database import Store
        from sync_pipelines.sync.device_states import sync_device_states
        from sync_pipelines.sync.inventory import sync_devices
        from sync_pipelines.sync.session import RunContext, integration_session

        configure_logging()
        store = Store()
        for integration_id in integrations.values():
            with integration_session(store, integration_id, RunContext(run_id="inv")) as session:
                sync_devices(session)
        results: dict[str, list[tuple[float, float]]] = {s: [] for s in SOURCES}
        for rep in range(args.repeat):
            for source in SOURCES if rep % 2 == 0 else SOURCES[::-1]:
                integration_id = integrations[source]
                with store.transaction() as conn:
                    conn.execute(
                        sa.text("DELETE FROM device_states WHERE integration_id = :i"),
                        {"i": integration_id},
                    )
                before, started = os.times(), time.perf_counter()
                with integration_session(
                    store, integration_id, RunContext(run_id=f"states-{source}-{rep}")
                ) as session:
                    result = sync_device_states(session)
                wall, after = time.perf_counter() - started, os.times()
                assert result.counts.created == args.devices, result.counts
                cpu = (after.user - before.user) + (after.system - before.system)
                results[source].append((args.devices / wall, cpu / args.devices * 1e6))
        store.dispose()
    finally:
        stop(emulator)
        drop()
    print(f"Golioth state sync, {args.devices} devices, medians of {args.repeat} alternating reps")
    print(f"{'state_source':14s} {'states/s':>10s} {'our CPU us/state':>18s}")
    medians = {}
    for source, runs in results.items():
        medians[source] = (
            statistics.median(r[0] for r in runs),
            statistics.median(r[1] for r in runs),
        )
        print(f"{source:14s} {medians[source][0]:10.0f} {medians[source][1]:18.0f}")
    rate = medians["list"][0] / medians["device"][0]
    cpu = medians["list"][1] / medians["device"][1]
    print(f"list/device: states/s {rate:.1f}x, CPU per state {cpu:.2f}x")
    print(load_average())


if __name__ == "__main__":
    main()
