"""Full sync (inventory + states) per provider: devices/s, our CPU per device, peak RSS.

Each provider's peer runs in its own process (the Golioth emulator, the Azure IoT Hub
emulator, moto behind the AWS fault proxy); each sync is `sync-pipelines sync ID --stream all`
in a child process of its own, on a fresh Postgres store, measured by `golioth_bench.run_child`
(the child's wall time, its own CPU — not the peer's — and its peak RSS). Modes, side by side in
one run: `default` (the provider's default `state_source`) and `device` (one state read per
device, `state_source: device`). AWS's `default` reads shadows from the fleet index
(`SearchIndex`) when the peer's index includes them (`--aws-index`, on by default).

Printed per provider, size and mode (medians of `--repeat`, alternating modes): devices/s over
the two streams' own durations, the child's wall time (incl. ~1 s of start-up), our CPU µs per
device (the whole child, start-up included), peak RSS, HTTP requests, and the default/device
ratios.

    .venv/bin/python bench/full_sync.py --providers golioth azure aws --sizes 10000 100000
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
from dataclasses import dataclass

import httpx
from bench_support import free_port, fresh_store_url
from golioth_bench import KEY, PROJECT, SYNC_ENV, load_average, run_child, stop
from golioth_bench import start_emulator as start_golioth

BIN = os.path.dirname(sys.executable)
AZURE_ENV = "BENCH_AZURE_IOT_CONNECTION_STRING"


@dataclass(frozen=True)
class Peer:
    """A running peer: how to register an integration against it, and how to stop it."""

    provider: str
    settings: dict[str, str]
    secrets: dict[str, str]  # secret name → env var
    env: dict[str, str]
    stop: Callable[[], None]


def golioth_peer(devices: int, aws_index: bool) -> Peer:
    proc, url = start_golioth(devices)
    return Peer(
        "golioth",
        {"base_url": url, "project_id": PROJECT},
        {"api_key": "BENCH_GOLIOTH_KEY"},
        {"BENCH_GOLIOTH_KEY": KEY},
        lambda: stop(proc),
    )


def azure_peer(devices: int, aws_index: bool) -> Peer:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sync_pipelines_peers.emulators.azure_iot"]
        + ["--port", str(port), "--devices", str(devices)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url, connection_string = f"http://127.0.0.1:{port}", None
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("connection string: "):
            connection_string = line.split(": ", 1)[1].strip()
            break
    _wait_for(f"{url}/_emulator/stats", proc)
    assert connection_string
    return Peer(
        "azure_iot",
        {"base_url": url},
        {"connection_string": AZURE_ENV},
        {AZURE_ENV: connection_string},
        lambda: stop(proc),
    )


def aws_peer(devices: int, aws_index: bool) -> Peer:
    index = ", index_shadows=True" if aws_index else ""
    code = (
        "from sync_pipelines_peers.launchers.aws_iot import run_aws_peer; "
        f"run_aws_peer(port={free_port()}, devices={devices}{index})"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError("the AWS IoT peer did not start")
    wiring = json.loads(line)
    _wait_for(f"{wiring['settings']['endpoint_url']}/_emulator/faults", proc)
    return Peer(
        "aws_iot",
        {**wiring["settings"], "page_size": "250"},
        {
            "access_key_id": "AWS_IOT_ACCESS_KEY_ID",
            "secret_access_key": "AWS_IOT_SECRET_ACCESS_KEY",
        },
        wiring["environment"],
        lambda: stop(proc),
    )


PEERS = {"golioth": golioth_peer, "azure": azure_peer, "aws": aws_peer}


def _wait_for(url: str, proc: subprocess.Popen) -> None:
    for _ in range(2400):
        try:
            httpx.get(url, timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise RuntimeError(f"the peer exited {proc.returncode}") from None
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the peer did not answer {url}")


def full_sync(peer: Peer, mode: str, devices: int) -> dict[str, float]:
    """One `sync --stream all` on a fresh store: its figures."""
    store_url, drop = fresh_store_url("postgres", prefix="sync_bench_full")
    env = {**os.environ, **SYNC_ENV, **peer.env, "SYNC_DATABASE_URL": store_url}
    env["SYNC_LOG_LEVEL"] = "WARNING"
    integration = f"bench-{uuid.uuid4().hex[:6]}"
    settings = {**peer.settings, **({"state_source": "device"} if mode == "device" else {})}
    try:
        subprocess.run(
            [f"{BIN}/sync-pipelines", "integrations", "add", "--organization", "bench"]
            + ["--id", integration, "--provider", peer.provider]
            + [a for k, v in settings.items() for a in ("--setting", f"{k}={v}")]
            + [a for k, v in peer.secrets.items() for a in ("--secret-env", f"{k}={v}")],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        run = run_child([f"{BIN}/sync-pipelines", "sync", integration, "--stream", "all"], env)
    finally:
        drop()
    streams = {}
    for line in run.stdout.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
            streams[result["stream"]] = result
    inventory, states = streams["devices"], streams["device_states"]
    stored = states["created"] + states["updated"] + states["unchanged"]
    if inventory["status"] != "success" or states["status"] != "success" or stored != devices:
        raise RuntimeError(f"{peer.provider} {mode}: not a clean full sync: {streams}")
    sync_s = inventory["duration_s"] + states["duration_s"]
    return {
        "devices_per_s": devices / sync_s,
        "wall_s": run.wall_s,
        "cpu_us": run.cpu_s / devices * 1e6,
        "rss_mib": run.peak_rss_mib,
        # one recorder per session: the last stream's count is both streams' calls
        "requests": states["http_requests"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--providers", nargs="+", choices=sorted(PEERS), default=sorted(PEERS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--modes", nargs="+", choices=["default", "device"], default=["default", "device"]
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--device-max", type=int, default=100_000, help="skip `device` mode above this size"
    )
    parser.add_argument("--no-aws-index", dest="aws_index", action="store_false")
    args = parser.parse_args()

    rows: list[tuple[str, int, str, dict[str, float]]] = []
    for provider in args.providers:
        for size in args.sizes:
            peer = PEERS[provider](size, args.aws_index)
            try:
                modes = [m for m in args.modes if m == "default" or size <= args.device_max]
                runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
                for rep in range(args.repeat):
                    for mode in modes if rep % 2 == 0 else modes[::-1]:
                        runs[mode].append(full_sync(peer, mode, size))
                        print(f"  {provider} {size} {mode}: {runs[mode][-1]}", file=sys.stderr)
                for mode in modes:
                    rows.append(
                        (
                            provider,
                            size,
                            mode,
                            {k: statistics.median(r[k] for r in runs[mode]) for k in runs[mode][0]},
                        )
                    )
            finally:
                peer.stop()

    print(f"\nFull sync (inventory + states), Postgres, medians of {args.repeat}")
    print(
        f"{'provider':10s} {'devices':>8s} {'mode':8s} {'devices/s':>10s} {'wall s':>8s} "
        f"{'CPU us/dev':>10s} {'RSS MiB':>8s} {'requests':>9s}"
    )
    for provider, size, mode, f in rows:
        print(
            f"{provider:10s} {size:>8d} {mode:8s} {f['devices_per_s']:>10.0f} {f['wall_s']:>8.1f} "
            f"{f['cpu_us']:>10.0f} {f['rss_mib']:>8.1f} {f['requests']:>9.0f}"
        )
    by_key = {(p, s, m): f for p, s, m, f in rows}
    for provider, size, mode, f in rows:
        device = by_key.get((provider, size, "device"))
        if mode == "default" and device:
            print(
                f"{provider} {size}: default/device devices/s "
                f"{f['devices_per_s'] / device['devices_per_s']:.1f}x, CPU per device "
                f"{f['cpu_us'] / device['cpu_us']:.2f}x"
            )
    print(f"load average: {load_average()}")


if __name__ == "__main__":
    main()
