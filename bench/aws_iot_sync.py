"""AWS IoT sync throughput (inventory + shadows) against moto behind the fault proxy.

The peer (moto + proxy) runs in its own process; the syncs run here, on a fresh store per
repeat. Figures: ListThings pages, GetThingShadow reads, and devices/s for the two syncs
together. A baseline reads the same shadows with a plain boto3 client straight from moto (no
proxy, no activity rows), to show how much of the time is moto's own: moto serves ~100–190
shadow reads/s (PROVIDERS.md §2.5) and closes every connection, so it, not the sync, sets the pace.

    .venv/bin/python bench/aws_iot_sync.py --things 1000 --backend sqlite
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from bench_support import free_port, fresh_store_url

from sync_pipelines.observability.logging import configure_logging
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.migrations import migrate
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.sync.session import RunContext, integration_session


def fresh_store(backend: str) -> tuple[Store, Callable[[], None]]:
    """A migrated, empty store and how to get rid of it."""
    url, drop_database = fresh_store_url(backend)
    store = Store(url)
    migrate(store)

    def drop() -> None:
        store.dispose()
        drop_database()

    return store, drop


def start_peer(things: int) -> tuple[subprocess.Popen, dict]:
    code = f"from sync_pipelines_peers.launchers.aws_iot import run_aws_peer; run_aws_peer(port={free_port()}, devices={things})"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError("the AWS IoT peer did not start")
    wiring = json.loads(line)
    url = wiring["settings"]["endpoint_url"]
    for _ in range(200):  # the wiring is printed just before the proxy binds its port
        try:
            httpx.get(f"{url}/_emulator/faults", timeout=1).raise_for_status()
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    return proc, wiring


def run_syncs(store: Store, wiring: dict, concurrency: int) -> tuple[float, float, int, int]:
    """(inventory seconds, state seconds, devices, states) for one full sync of both streams."""
    for name, value in wiring["environment"].items():
        os.environ[name] = value
    register_integration(
        store,
        Integration(
            integration_id="aws-bench",
            organization_id="bench",
            provider="aws_iot",
            name="AWS IoT bench",
            settings={**wiring["settings"], "page_size": 250, "state_concurrency": concurrency},
            secret_refs={
                "access_key_id": "AWS_IOT_ACCESS_KEY_ID",
                "secret_access_key": "AWS_IOT_SECRET_ACCESS_KEY",
            },
        ),
    )
    with integration_session(
        store, "aws-bench", RunContext(run_id=f"bench-{uuid.uuid4()}", job_name="bench")
    ) as s:
        started = time.perf_counter()
        devices = sync_devices(s)
        listed = time.perf_counter()
        states = sync_device_states(s)
        done = time.perf_counter()
    assert devices.status == states.status == "success", (devices, states)
    return listed - started, done - listed, devices.counts.created, states.counts.created


def plain_shadow_reads(url: str, wiring: dict, things: int, concurrency: int) -> float:
    """Shadow reads/s from `url` with a plain boto3 client (no activity rows, no store)."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "iot-data",
        region_name=wiring["settings"]["region"],
        endpoint_url=url,
        aws_access_key_id=wiring["environment"]["AWS_IOT_ACCESS_KEY_ID"],
        aws_secret_access_key="x",
        config=Config(max_pool_connections=concurrency, retries={"total_max_attempts": 1}),
    )
    names = [f"thing-{i:05d}" for i in range(things)]
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda n: client.get_thing_shadow(thingName=n)["payload"].read(), names))
    return things / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--things", type=int, default=1000)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    configure_logging("json", "WARNING", force=True)

    peer, wiring = start_peer(args.things)
    try:
        direct = plain_shadow_reads(wiring["moto_url"], wiring, args.things, args.concurrency)
        proxied = plain_shadow_reads(
            wiring["settings"]["endpoint_url"], wiring, args.things, args.concurrency
        )
        runs = []
        for _ in range(args.repeat):
            store, drop = fresh_store(args.backend)
            try:
                runs.append(run_syncs(store, wiring, args.concurrency))
            finally:
                drop()
    finally:
        peer.terminate()
        peer.wait()

    inventory_s = statistics.median(r[0] for r in runs)
    states_s = statistics.median(r[1] for r in runs)
    total = inventory_s + states_s
    print(
        f"\nAWS IoT sync against moto via the proxy: {args.things} things, {args.backend}, "
        f"state_concurrency {args.concurrency}, median of {args.repeat}"
    )
    print(
        f"  inventory (ListThings, 250/page): {inventory_s:6.2f} s  {args.things / inventory_s:8.0f} things/s"
    )
    print(
        f"  states (GetThingShadow):          {states_s:6.2f} s  {args.things / states_s:8.0f} shadows/s"
    )
    print(
        f"  both:                             {total:6.2f} s  {args.things / total:8.0f} devices/s"
    )
    print(
        f"  baseline, plain boto3 shadow reads: {direct:.0f}/s straight from moto, {proxied:.0f}/s via the proxy"
    )


if __name__ == "__main__":
    main()
