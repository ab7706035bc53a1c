"""Inventory sync throughput and peak memory against the Golioth emulator.

The emulator runs in its own process and the sync in another (`sync-pipelines sync`), so the
sync's peak RSS is its own. Each size gets a fresh store; figures are medians of `--repeat`
runs, printed with ratios against the smallest size (flat memory = ratio near 1).

    .venv/bin/python bench/sync_throughput.py --sizes 10000 100000 --backend postgres
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid

import httpx
from bench_support import free_port, fresh_store_url

KEY = "bench-emulator-key"
BIN = os.path.dirname(sys.executable)




def start_emulator(devices: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [f"{BIN}/sync-pipelines", "emulator", "golioth", "--port", str(port), "--devices", str(devices),
         "--api-key", KEY],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{url}/_emulator/stats", timeout=1).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("emulator did not start")




def run_sync(store_url: str, emulator_url: str, env_extra: dict[str, str]) -> tuple[float, float, str]:
    """One sync in a child process: (wall seconds, peak RSS MiB, last output line)."""
    env = {**os.environ, "SYNC_DATABASE_URL": store_url, "BENCH_GOLIOTH_KEY": KEY, "SYNC_LOG_LEVEL": "WARNING",
           "SYNC_LOG_FORMAT": "json", **env_extra}
    integration = f"bench-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        [f"{BIN}/sync-pipelines", "integrations", "add", "--organization", "bench", "--id", integration,
         "--provider", "golioth", "--setting", f"base_url={emulator_url}", "--setting", "project_id=demo-project",
         "--secret-env", "api_key=BENCH_GOLIOTH_KEY"],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )
    started = time.perf_counter()
    proc = subprocess.Popen([f"{BIN}/sync-pipelines", "sync", integration, "--stream", "devices"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    out = proc.stdout.read().decode().strip().splitlines()
    if status != 0:
        raise RuntimeError(proc.stderr.read().decode()[-3000:])
    return wall, usage.ru_maxrss / 1024, out[-1] if out else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rows = []
    for size in args.sizes:
        emulator, url = start_emulator(size)
        try:
            walls, rss = [], []
            for _ in range(args.repeat):
                store_url, drop = fresh_store_url(args.backend)
                try:
                    wall, peak, _last = run_sync(store_url, url, {})
                finally:
                    drop()
                walls.append(wall)
                rss.append(peak)
            rows.append((size, statistics.median(walls), statistics.median(rss)))
        finally:
            emulator.terminate()
            emulator.wait()

    base_size, base_wall, base_rss = rows[0]
    print(f"\nInventory sync, {args.backend}, median of {args.repeat} (each a fresh store; process wall time incl. start-up)")
    print(f"{'devices':>10} {'wall s':>8} {'devices/s':>10} {'peak RSS MiB':>13} {'RSS vs smallest':>16}")
    for size, wall, rss in rows:
        print(f"{size:>10} {wall:>8.2f} {size / wall:>10.0f} {rss:>13.1f} {rss / base_rss:>16.2f}")


if __name__ == "__main__":
    main()
