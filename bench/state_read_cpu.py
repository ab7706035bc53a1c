"""CPU per state read, one device at a time: the provider's `get_states` (the recording client,
retries, pacing, activity rows flushed) against a bare httpx GET and a bare urllib3 GET of the
same path, in one process, side by side. Where the per-call CPU goes is `bench/profile_sync.py
--stream device_states`.

    .venv/bin/python bench/state_read_cpu.py --devices 2000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import httpx
import urllib3
from bench_support import fresh_store_url
from golioth_bench import (
    KEY,
    PROJECT,
    SYNC_ENV,
    load_average,
    register_golioth,
    start_emulator,
    stop,
)


def _cpu_per_call(fn, n: int) -> float:
    before = time.process_time()
    fn()
    return (time.process_time() - before) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--state-concurrency", type=int, default=8)
    args = parser.parse_args()
    emulator, url = start_emulator(args.devices)
    store_url, drop = fresh_store_url("postgres", prefix="sync_bench_state_cpu")
    try:
        integration_id = register_golioth(
            store_url,
            url,
            settings={"state_source": "device", "state_concurrency": str(args.state_concurrency)},
        )
        os.environ.update({**SYNC_ENV, "SYNC_DATABASE_URL": store_url})
        from sync_pipelines.observability.logging import configure_logging
        from sync_pipelines.store.database import Store
        from sync_pipelines.store.devices import device_ids_after
        from sync_pipelines.sync.inventory import sync_devices
        from sync_pipelines.sync.session import RunContext, integration_session

        configure_logging()
        store = Store()
        with integration_session(store, integration_id, RunContext(run_id="inv")) as session:
            sync_devices(session)
            integ = session.integration
            with store.connect() as conn:
                ids = device_ids_after(
                    conn, integ.organization_id, integ.integration_id, "", args.devices
                )
        paths = [f"/v1/projects/{PROJECT}/devices/{i}/data" for i in ids]
        n = len(ids)
        bare = httpx.Client(base_url=url, headers={"x-api-key": KEY})
        pool = urllib3.HTTPConnectionPool("127.0.0.1", int(url.rsplit(":", 1)[1]), maxsize=8)
        results: dict[str, list[float]] = {"ours": [], "httpx": [], "urllib3": []}

        def ours() -> None:
            with (
                integration_session(store, integration_id, RunContext(run_id="cpu")) as s,
                s.open_provider() as provider,
            ):
                for start in range(0, n, 200):
                    states, failures = provider.get_states(ids[start : start + 200])
                    assert len(states) == len(ids[start : start + 200]), failures
                    s.recorder.flush()

        def bare_httpx() -> None:
            for path in paths:
                bare.get(path).json()

        def bare_urllib3() -> None:
            for path in paths:
                pool.request("GET", path, headers={"x-api-key": KEY}).json()

        for _ in range(args.repeat):
            results["ours"].append(_cpu_per_call(ours, n))
            results["httpx"].append(_cpu_per_call(bare_httpx, n))
            results["urllib3"].append(_cpu_per_call(bare_urllib3, n))
        store.dispose()
    finally:
        stop(emulator)
        drop()
    print(
        f"CPU per state read, {n} devices, state_concurrency {args.state_concurrency}, "
        f"medians of {args.repeat}"
    )
    base = statistics.median(results["httpx"])
    for name, runs in results.items():
        m = statistics.median(runs)
        print(f"{name:10s} {m:8.0f} us  {m / base:5.2f}x bare httpx")
    print(load_average())


if __name__ == "__main__":
    main()
