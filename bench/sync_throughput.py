"""Inventory sync throughput and peak memory against the Golioth emulator.

The emulator runs in its own process and the sync in another (`sync-pipelines sync`), so the
sync's peak RSS is its own. Each size gets a fresh store; figures are medians of `--repeat`
runs, printed with ratios against the smallest size (flat memory = ratio near 1).

    .venv/bin/python bench/sync_throughput.py --sizes 10000 100000 --backend postgres
"""

from __future__ import annotations

import argparse
import statistics

from bench_support import fresh_store_url
from golioth_bench import INVENTORY_ONLY, register_golioth, run_project_sync, start_emulator, stop


def run_sync(
    store_url: str, emulator_url: str, env_extra: dict[str, str]
) -> tuple[float, float, str]:
    """One sync in a child process: (wall seconds, peak RSS MiB, last output line)."""
    integration = register_golioth(store_url, emulator_url, settings=INVENTORY_ONLY)
    run = run_project_sync(store_url, integration, {"SYNC_LOG_LEVEL": "WARNING", **env_extra})
    lines = run.stdout.strip().splitlines()
    return run.wall_s, run.peak_rss_mib, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
            stop(emulator)

    base_size, base_wall, base_rss = rows[0]
    print(
        f"\nInventory sync, {args.backend}, median of {args.repeat} (each a fresh store; process wall time incl. start-up)"
    )
    print(
        f"{'devices':>10} {'wall s':>8} {'devices/s':>10} {'peak RSS MiB':>13} {'RSS vs smallest':>16}"
    )
    for size, wall, rss in rows:
        print(f"{size:>10} {wall:>8.2f} {size / wall:>10.0f} {rss:>13.1f} {rss / base_rss:>16.2f}")


if __name__ == "__main__":
    main()
