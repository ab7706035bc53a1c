"""What shape drift detection (sync/shape_drift.py) costs the inventory sync, before/after.

The same Golioth devices sync (`sync-pipelines sync ID --stream devices` in a child process,
states listed with the devices: both shapes observed) with this checkout and with the package
tree in `--baseline` (a checkout without shape drift, put first on PYTHONPATH), alternating the
order every rep, each a full initial load into a fresh store. Figures: medians of process wall
and user + system CPU, devices/s and µs CPU per device, and after / before.

The first sync of an integration records its baseline; a re-sync is compared with it. `--resync`
adds an unchanged re-sync after each load and reports it separately (the steady state: every
device observed, nothing written).

    .venv/bin/python bench/shape_drift_cost.py --baseline /work/main --size 100000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics

from bench_support import fresh_store_url
from golioth_bench import load_average, register_golioth, run_project_sync, start_emulator, stop

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one(checkout: str, backend: str, url: str, resync: bool) -> list[tuple[float, float]]:
    """(wall s, CPU s) of the load, and of the re-sync when asked."""
    os.environ["PYTHONPATH"] = checkout  # the children (register, sync) import this tree
    store_url, drop = fresh_store_url(backend, prefix="shape_bench")
    try:
        integration = register_golioth(store_url, url)
        figures = []
        for _ in range(2 if resync else 1):
            run = run_project_sync(store_url, integration, {"SYNC_LOG_LEVEL": "WARNING"})
            if run.timed_out or "success" not in run.stdout:
                raise SystemExit(f"sync failed ({checkout}):\n{run.stdout}\n{run.stderr[-2000:]}")
            figures.append((run.wall_s, run.cpu_s))
        return figures
    finally:
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", required=True, help="a checkout without shape drift")
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--resync", action="store_true")
    args = parser.parse_args()

    variants = {"before": os.path.abspath(args.baseline), "after": HERE}
    results: dict[str, list[list[tuple[float, float]]]] = {k: [] for k in variants}
    emulator, url = start_emulator(args.size)
    try:
        for rep in range(args.repeat):
            order = list(variants) if rep % 2 == 0 else list(reversed(variants))
            for name in order:
                results[name].append(one(variants[name], args.backend, url, args.resync))
    finally:
        stop(emulator)

    print(
        f"\n{args.size} devices, {args.backend}, median of {args.repeat} (order alternated); "
        f"load {load_average()}"
    )
    phases = ["load", "re-sync"] if args.resync else ["load"]
    for i, phase in enumerate(phases):
        med = {
            name: (
                statistics.median(r[i][0] for r in runs),
                statistics.median(r[i][1] for r in runs),
            )
            for name, runs in results.items()
        }
        for name, (wall, cpu) in med.items():
            print(
                f"  {phase:<8} {name:<7} wall {wall:6.2f} s  {args.size / wall:8.0f} devices/s  "
                f"CPU {cpu:6.2f} s  {cpu / args.size * 1e6:5.1f} µs/device"
            )
        (bw, bc), (aw, ac) = med["before"], med["after"]
        print(f"  {phase:<8} after/before: wall {aw / bw:.3f}, CPU {ac / bc:.3f}")


if __name__ == "__main__":
    main()
