"""Per-provider sync throughput, including state reads, against each provider's local peer.

Each peer runs in its own process (`sync-pipelines peer PROVIDER --devices N`), the sync in
this one, into a fresh store per provider. For each provider it prints the inventory sync, the
state sync, and devices/s over both — the figure "devices/s including state reads". The peers
set the ceiling (moto server in particular serves ~100–200 requests/s), so the ratios compare
providers on this machine, not the clouds.

    .venv/bin/python bench/provider_throughput.py --devices 10000 --backend postgres
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
import uuid

from bench_support import fresh_store_url

BIN = os.path.dirname(sys.executable)


def start_peer(
    provider: str, devices: int
) -> tuple[subprocess.Popen, dict[str, str], dict[str, str], dict[str, str]]:
    """Start the peer process; returns it with (settings, secret_refs, env) parsed from its output."""
    proc = subprocess.Popen(
        [
            f"{BIN}/sync-pipelines",
            "--log-format",
            "json",
            "peer",
            provider,
            "--devices",
            str(devices),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    settings, refs, env = {}, {}, {}
    for line in proc.stdout:
        words = shlex.split(line)
        if words[:1] == ["export"]:
            name, _, value = words[1].partition("=")
            env[name] = value
        if "integrations" in words and "add" in words:
            for flag, value in zip(words, words[1:], strict=False):
                key, _, val = value.partition("=")
                if flag == "--setting":
                    settings[key] = val
                elif flag == "--secret-env":
                    refs[key] = val
        if "Ctrl-C" in line:
            return proc, settings, refs, env
    raise RuntimeError(f"the {provider} peer exited before it was ready")


def bench_provider(provider: str, devices: int, backend: str) -> dict[str, float]:
    from sync_pipelines.store.database import Store
    from sync_pipelines.store.integrations import Integration
    from sync_pipelines.store.migrations import migrate
    from sync_pipelines.sync.device_states import sync_device_states
    from sync_pipelines.sync.integration_config import register_integration
    from sync_pipelines.sync.inventory import sync_devices
    from sync_pipelines.sync.session import RunContext, integration_session

    seed_started = time.perf_counter()
    proc, settings, refs, env = start_peer(provider, devices)
    seed_s = time.perf_counter() - seed_started
    url, drop = fresh_store_url(backend)
    try:
        os.environ.update(env)
        store = Store(url)
        migrate(store)
        iid = f"bench-{provider.replace('_', '-')}"
        register_integration(
            store,
            Integration(
                integration_id=iid,
                organization_id="bench",
                provider=provider,
                name=iid,
                settings=settings,
                secret_refs=refs,
            ),
        )
        run = RunContext(run_id=f"bench-{uuid.uuid4()}", step_key="bench", job_name="bench")
        with integration_session(store, iid, run) as session:
            started = time.perf_counter()
            inventory = sync_devices(session)
            inventory_s = time.perf_counter() - started
            started = time.perf_counter()
            states = sync_device_states(session)
            states_s = time.perf_counter() - started
        store.dispose()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        drop()
    stored = inventory.counts.created + inventory.counts.updated + inventory.counts.unchanged
    return {
        "devices": stored,
        "seed_s": seed_s,
        "inventory_s": inventory_s,
        "states_s": states_s,
        "state_failed": states.counts.failed,
        "devices_per_s": stored / (inventory_s + states_s) if stored else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--providers", nargs="*", default=None)
    args = parser.parse_args()
    from sync_pipelines_peers.launchers.registry import PEERS

    from sync_pipelines.observability.logging import configure_logging

    configure_logging("json", "WARNING", force=True)
    results = {
        p: bench_provider(p, args.devices, args.backend) for p in (args.providers or sorted(PEERS))
    }
    fastest = max(r["devices_per_s"] for r in results.values()) or 1.0
    print(f"\n{args.devices} devices per provider, {args.backend} store, peer in its own process\n")
    print(
        f"{'provider':<10} {'stored':>7} {'seed s':>7} {'inventory s':>11} {'states s':>9} "
        f"{'devices/s (incl. states)':>25} {'vs fastest':>10}"
    )
    for provider, r in results.items():
        print(
            f"{provider:<10} {r['devices']:>7} {r['seed_s']:>7.1f} {r['inventory_s']:>11.2f} {r['states_s']:>9.2f} "
            f"{r['devices_per_s']:>25.0f} {r['devices_per_s'] / fastest:>9.2f}x"
        )


if __name__ == "__main__":
    main()
