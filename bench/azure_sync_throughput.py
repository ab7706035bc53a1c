"""Azure IoT Hub sync throughput: inventory (twin query pages) plus state (one twin read per
device), against the IoT Hub emulator.

Like bench/sync_throughput.py, the emulator runs in its own process and the sync in another
(`sync-pipelines sync <id> --stream all`), each size on a fresh store. Printed per size
(medians of `--repeat`): the whole process wall time and devices/s over it, and each
stream's own devices/s as the engine reports it (`devices_per_s` of its sync log).

    .venv/bin/python bench/azure_sync_throughput.py --sizes 10000 --backend postgres
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

import httpx
from bench_support import free_port, fresh_store_url

BIN = os.path.dirname(sys.executable)
CONNECTION_ENV = "BENCH_AZURE_IOT_CONNECTION_STRING"


def start_emulator(devices: int) -> tuple[subprocess.Popen, str, str]:
    """The emulator in its own process: (process, base URL, connection string)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sync_pipelines_peers.emulators.azure_iot",
            "--port",
            str(port),
            "--devices",
            str(devices),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    connection_string = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("connection string: "):
            connection_string = line.split(": ", 1)[1].strip()
            break
    for _ in range(200):
        try:
            httpx.get(f"{url}/_emulator/stats", timeout=1).raise_for_status()
            if connection_string:
                return proc, url, connection_string
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("emulator did not start")


def run_sync(
    store_url: str, emulator_url: str, connection_string: str, state_concurrency: int
) -> tuple[float, float, dict[str, dict]]:
    """One full sync in a child process: (wall s, peak RSS MiB, figures by stream)."""
    env = {
        **os.environ,
        "SYNC_DATABASE_URL": store_url,
        CONNECTION_ENV: connection_string,
        "SYNC_LOG_LEVEL": "WARNING",
        "SYNC_LOG_FORMAT": "json",
    }
    integration = f"bench-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        [
            f"{BIN}/sync-pipelines",
            "integrations",
            "add",
            "--organization",
            "bench",
            "--id",
            integration,
            "--provider",
            "azure_iot",
            "--setting",
            f"base_url={emulator_url}",
            "--setting",
            f"state_concurrency={state_concurrency}",
            "--secret-env",
            f"connection_string={CONNECTION_ENV}",
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    started = time.perf_counter()
    proc = subprocess.Popen(
        [f"{BIN}/sync-pipelines", "sync", integration, "--stream", "all"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    out = proc.stdout.read().decode().strip().splitlines()
    if status != 0:
        raise RuntimeError(proc.stderr.read().decode()[-3000:])
    figures = {}
    for line in out:
        if line.startswith("{"):
            result = json.loads(line)
            if result.get("status") != "success":
                raise RuntimeError(f"sync was not clean: {line}")
            figures[result["stream"]] = result
    return wall, usage.ru_maxrss / 1024, figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--state-concurrency", type=int, default=8)
    args = parser.parse_args()

    rows = []
    for size in args.sizes:
        emulator, url, connection_string = start_emulator(size)
        try:
            walls, rss, inventory, states = [], [], [], []
            for _ in range(args.repeat):
                store_url, drop = fresh_store_url(args.backend)
                try:
                    wall, peak, figures = run_sync(
                        store_url, url, connection_string, args.state_concurrency
                    )
                finally:
                    drop()
                assert (
                    figures["devices"]["fetched"] == size
                    and figures["device_states"]["created"] == size
                )
                walls.append(wall)
                rss.append(peak)
                inventory.append(figures["devices"]["devices_per_s"])
                states.append(figures["device_states"]["devices_per_s"])
            rows.append(
                (
                    size,
                    statistics.median(walls),
                    statistics.median(rss),
                    statistics.median(inventory),
                    statistics.median(states),
                )
            )
        finally:
            emulator.terminate()
            emulator.wait()

    print(
        f"\nAzure IoT Hub sync (inventory + twin state), {args.backend}, state_concurrency="
        f"{args.state_concurrency}, median of {args.repeat} (fresh store each; wall incl. process start-up)"
    )
    print(
        f"{'devices':>9} {'wall s':>7} {'devices/s':>10} {'inventory/s':>12} {'states/s':>9} {'peak RSS MiB':>13}"
    )
    for size, wall, peak, inv, st in rows:
        print(f"{size:>9} {wall:>7.2f} {size / wall:>10.0f} {inv:>12.0f} {st:>9.0f} {peak:>13.1f}")


if __name__ == "__main__":
    main()
