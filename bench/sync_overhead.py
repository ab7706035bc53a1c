"""What observability costs a devices sync, and what every sync run pays before it syncs.

1. Observability on vs off (`--size`, default 100k): the same devices sync (bench/sync_child.py,
   the CLI's sync in a child process) with the activity log and structured logs each on or
   off, alternating the order every rep, each a full initial load into emptied tables.
   Structured logs off = `SYNC_LOG_LEVEL=WARNING` (the product's switch; a sync that goes
   well logs nothing at WARNING). Activity log off = `SYNC_ACTIVITY_LOG=off` (the product's
   switch: a sink that discards rows). Overhead % = median(variant) / median(all off) - 1,
   from process wall time and from the sync's own duration. "logs at DEBUG" shows what a log
   line per provider call and per batch would cost (not a production setting).
2. Per-run fixed cost (a 1-device inventory): `python -c pass`, `sync-pipelines --help`, the
   real `sync-pipelines sync ID --stream devices`, the phases inside a sync run, the per-run
   cost inside a process that has the code imported already (a Dagster run worker: the store
   resource, session open/close around a 1-device sync, after a warm-up), and an import time
   breakdown from `python -X importtime`.
3. Before/after (`--baseline DIR`): `sync-pipelines --help` and `sync` with this checkout and
   with the package tree in DIR (put first on PYTHONPATH, e.g. an older `sync_pipelines/` copied
   there next to a `sql` link), alternating every rep; medians of wall and CPU time.

    .venv/bin/python bench/sync_overhead.py --size 100000 --repeat 3
    .venv/bin/python bench/sync_overhead.py --size 0 --fixed-repeat 9 --baseline /tmp/before
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import defaultdict

from bench_support import fresh_store_url
from golioth_bench import (
    BENCH_DIR,
    BIN,
    INVENTORY_ONLY,
    SYNC_ENV,
    count_activity_rows,
    count_devices,
    load_average,
    median,
    register_golioth,
    run_child,
    run_project_sync,
    start_emulator,
    stop,
    truncate_project_tables,
)

#: variant → environment on top of SYNC_ENV (INFO JSON logs, activity log on)
VARIANTS = {
    "all on": {},
    "activity log off": {"SYNC_ACTIVITY_LOG": "off"},
    "structured logs off": {"SYNC_LOG_LEVEL": "WARNING"},
    "all off": {"SYNC_ACTIVITY_LOG": "off", "SYNC_LOG_LEVEL": "WARNING"},
    # not a production setting: what a log line per provider call and per batch would cost
    "logs at DEBUG": {"SYNC_LOG_LEVEL": "DEBUG"},
}


def child_env(store_url: str, extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **SYNC_ENV, "SYNC_DATABASE_URL": store_url, **extra}


def sync_in_child(
    store_url: str, integration_id: str, extra: dict[str, str], args: tuple[str, ...] = ()
):
    return run_child(
        [f"{BIN}/python", os.path.join(BENCH_DIR, "sync_child.py"), integration_id, *args],
        child_env(store_url, extra),
    )


def observability_overhead(size: int, repeat: int, variants: list[str]) -> None:
    print(
        f"\n== Observability on/off: {size} devices, {repeat} reps per variant (order rotates) ==",
        flush=True,
    )
    emulator, url = start_emulator(size)
    store_url, drop = fresh_store_url("postgres", prefix="sync_bench_obs")
    runs: dict[str, list[tuple[float, float, float, float, int]]] = defaultdict(list)
    try:
        integration_id = register_golioth(store_url, url, settings=INVENTORY_ONLY)
        for rep in range(repeat):
            order = variants[rep % len(variants) :] + variants[: rep % len(variants)]
            for name in order:
                truncate_project_tables(store_url)
                run = sync_in_child(store_url, integration_id, VARIANTS[name])
                figures = run.last_json()
                stored = count_devices(store_url, integration_id)
                activity_rows = count_activity_rows(store_url, integration_id)
                if figures.get("status") != "success" or stored != size:
                    raise RuntimeError(
                        f"{name}: status {figures.get('status')}, {stored}/{size} devices stored"
                    )
                if VARIANTS[name].get("SYNC_ACTIVITY_LOG") == "off" and activity_rows:
                    raise RuntimeError(
                        f"{name}: {activity_rows} activity rows written with the log off"
                    )
                log_lines = sum(1 for line in run.stdout.splitlines() if line.startswith('{"'))
                runs[name].append(
                    (run.wall_s, figures["duration_s"], run.cpu_s, run.peak_rss_mib, activity_rows)
                )
                print(
                    f"  {name:<20} wall {run.wall_s:7.2f} s  sync {figures['duration_s']:7.2f} s  "
                    f"CPU {run.cpu_s:6.2f} s  {size / run.wall_s:7.0f} devices/s  "
                    f"RSS {run.peak_rss_mib:6.1f} MiB  activity rows {activity_rows:>5} "
                    f"({figures.get('activity_log')})  stdout lines {log_lines}  load {load_average()}",
                    flush=True,
                )
    finally:
        stop(emulator)
        drop()

    print(
        f"\n{'variant':<20} {'devices/s':>10} {'wall s':>8} {'sync s':>8} {'CPU s':>7} {'peak RSS':>9} "
        f"{'activity rows':>14}"
    )
    # per variant: median wall, sync duration, CPU, RSS; and the activity rows of its first run
    med = {
        name: (*(median([r[i] for r in rs]) for i in range(4)), rs[0][4])
        for name, rs in runs.items()
    }
    for name in variants:
        wall, inner, cpu, rss, rows = med[name]
        print(
            f"{name:<20} {size / wall:>10.0f} {wall:>8.2f} {inner:>8.2f} {cpu:>7.2f} {rss:>9.1f} {rows:>14}"
        )
    if "all off" in med:
        base = med["all off"]
        print(
            "\noverhead vs 'all off': ratio of medians (process wall, the sync's own duration, "
            "process CPU), and the median of the per-rep paired wall ratios (each rep runs every "
            "variant back to back, so a pair shares the machine's load)"
        )
        for name in variants:
            if name != "all off":
                pct = [100 * (med[name][i] / base[i] - 1) for i in range(3)]
                paired = [
                    100 * (on[0] / off[0] - 1)
                    for on, off in zip(runs[name], runs["all off"], strict=True)
                ]
                print(
                    f"  {name:<20} wall {pct[0]:+6.1f} %   sync {pct[1]:+6.1f} %   CPU {pct[2]:+6.1f} %"
                    f"   paired wall {median(paired):+6.1f} % (range {min(paired):+.1f} … {max(paired):+.1f})"
                )


_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def import_breakdown(stderr: str, top: int = 12) -> list[str]:
    """`-X importtime` output → self time per top-level package, and the heaviest imports."""
    per_package: dict[str, int] = defaultdict(int)
    heavy: list[tuple[int, int, str]] = []
    for line in stderr.splitlines():
        m = _IMPORT_LINE.match(line)
        if not m:
            continue
        self_us, cumulative_us, depth, name = int(m[1]), int(m[2]), len(m[3]) // 2, m[4]
        per_package[name.split(".")[0]] += self_us
        if depth <= 1:
            heavy.append((cumulative_us, depth, name))
    total = sum(per_package.values())
    lines = [
        f"  all imports: {total / 1e6:.3f} s (self times summed; -X importtime inflates them a little)",
        "  self time by top-level package:",
    ]
    for package, us in sorted(per_package.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"    {package:<28} {us / 1e6:7.3f} s  {100 * us / total:5.1f} %")
    lines.append("  heaviest imports (cumulative, depth 0-1):")
    for cumulative_us, depth, name in sorted(heavy, reverse=True)[:top]:
        lines.append(f"    {'  ' * depth}{name:<40} {cumulative_us / 1e6:7.3f} s")
    return lines


def fixed_cost(repeat: int) -> None:
    print(f"\n== Per-run fixed cost: a 1-device inventory, medians of {repeat} ==", flush=True)
    emulator, url = start_emulator(1)
    store_url, drop = fresh_store_url("postgres", prefix="sync_bench_fixed")
    try:
        integration_id = register_golioth(store_url, url, settings=INVENTORY_ONLY)
        env = child_env(store_url, {})
        timed = {
            "python -c pass": [f"{BIN}/python", "-c", "pass"],
            "sync-pipelines --help": [f"{BIN}/sync-pipelines", "--help"],
        }
        rows = []
        for label, argv in timed.items():
            runs = [run_child(argv, env) for _ in range(repeat)]
            rows.append(
                (label, median([r.wall_s for r in runs]), median([r.peak_rss_mib for r in runs]))
            )
        cli_runs = [run_project_sync(store_url, integration_id) for _ in range(repeat)]
        rows.append(
            (
                "sync-pipelines sync (1 device)",
                median([r.wall_s for r in cli_runs]),
                median([r.peak_rss_mib for r in cli_runs]),
            )
        )
        inner = [r.last_json()["duration_s"] for r in cli_runs]
        for label, wall, rss in rows:
            print(f"  {label:<32} {wall:7.3f} s   peak RSS {rss:6.1f} MiB")
        print(f"  of which the devices sync itself (its duration_s): {median(inner):.3f} s")

        child_runs = [sync_in_child(store_url, integration_id, {}) for _ in range(repeat)]
        phases = [r.last_json()["phases_s"] for r in child_runs]
        wall = median([r.wall_s for r in child_runs])
        print(
            f"\n  phases of one run (bench/sync_child.py, same calls as the CLI's sync; wall {wall:.3f} s):"
        )
        figures = [r.last_json() for r in child_runs]
        startup = median(
            [
                f["started_monotonic"] - r.spawned_at
                for f, r in zip(figures, child_runs, strict=True)
            ]
        )
        teardown = median(
            [r.reaped_at - f["ended_monotonic"] for f, r in zip(figures, child_runs, strict=True)]
        )
        print(
            f"    {'interpreter start-up':<28} {startup:7.3f} s  (spawn to the script's first line)"
        )
        for name in phases[0]:
            if name != "total_in_process":
                print(f"    {name:<28} {median([p[name] for p in phases]):7.3f} s")
        print(
            f"    {'interpreter teardown':<28} {teardown:7.3f} s  (the script's last line to exit)"
        )

        warm_runs = max(repeat, 5)
        warm = sync_in_child(store_url, integration_id, {}, ("--warm-runs", str(warm_runs)))
        print(
            f"\n  per run with the code imported already (a Dagster run worker), medians of "
            f"{warm_runs} in-process 1-device syncs after a warm-up:"
        )
        for name, seconds in warm.last_json()["warm_runs_s"].items():
            print(f"    {name:<28} {1000 * seconds:8.2f} ms")

        profiled = run_project_sync(
            store_url, integration_id, argv_prefix=[f"{BIN}/python", "-X", "importtime"]
        )
        print("\n  import time of `python -X importtime sync-pipelines sync ID --stream devices`:")
        print("\n".join(import_breakdown(profiled.stderr)))
    finally:
        stop(emulator)
        drop()


def before_after(baseline: str, repeat: int) -> None:
    """This checkout against the tree in `baseline`, alternating (see the module docstring)."""
    print(
        f"\n== Before ({baseline}) / after (this checkout): medians of {repeat}, "
        f"alternating, load average {load_average()} ==",
        flush=True,
    )
    emulator, url = start_emulator(1)
    store_url, drop = fresh_store_url("postgres", prefix="sync_bench_ab")
    try:
        integration_id = register_golioth(store_url, url, settings=INVENTORY_ONLY)
        commands = {
            "sync-pipelines --help": [f"{BIN}/sync-pipelines", "--help"],
            "sync-pipelines sync (1 device)": [
                f"{BIN}/sync-pipelines",
                *("sync", integration_id, "--stream", "devices"),
            ],
        }
        trees = {"before": baseline, "after": ""}
        runs: dict[tuple[str, str], list] = defaultdict(list)
        for rep in range(repeat):
            for tree in list(trees)[:: 1 if rep % 2 == 0 else -1]:
                env = child_env(store_url, {})
                if trees[tree]:
                    env["PYTHONPATH"] = trees[tree]
                for label, argv in commands.items():
                    runs[(label, tree)].append(run_child(argv, env))
        print(
            f"  {'':<32} {'before wall':>12} {'after wall':>11} {'before CPU':>11} {'after CPU':>10}"
        )
        for label in commands:
            b, a = runs[(label, "before")], runs[(label, "after")]
            print(
                f"  {label:<32} {median([r.wall_s for r in b]):10.3f} s {median([r.wall_s for r in a]):9.3f} s "
                f"{median([r.cpu_s for r in b]):9.3f} s {median([r.cpu_s for r in a]):8.3f} s"
            )
        print(f"  load average at the end {load_average()}")
    finally:
        stop(emulator)
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size", type=int, default=100_000, help="devices for the on/off comparison (0 skips it)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fixed-repeat", type=int, default=5)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        default=None,
        help="also compare with the package tree in DIR (first on PYTHONPATH), alternating",
    )
    args = parser.parse_args()
    if args.baseline and not os.path.isdir(os.path.join(args.baseline, "sync_pipelines")):
        parser.error(f"--baseline {args.baseline}: no sync_pipelines package there")
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {load_average()} (1/5/15 min)",
        flush=True,
    )
    if args.size:
        observability_overhead(args.size, args.repeat, args.variants)
    fixed_cost(args.fixed_repeat)
    if args.baseline:
        before_after(args.baseline, args.fixed_repeat)
    print(f"\nload average at the end {load_average()} (1/5/15 min)")


if __name__ == "__main__":
    main()
