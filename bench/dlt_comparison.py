"""Our inventory sync against dlt's rest_api source, side by side, on the same seeded feed.

For each size one Golioth emulator serves the same seeded devices to both tools, and both load
into the same fresh Postgres database (ours into its tables, dlt into its own schema):

  project     `sync-pipelines sync ID --stream devices`, activity log and INFO structured logs on
  dlt-default bench/dlt_golioth_load.py: rest_api_source, write_disposition="merge",
              primary_key="id", dlt's own max_table_nesting (child tables for nested lists)
  dlt-nest0   the same with max_table_nesting=0: one table, nested fields as JSON (like ours)

Both dlt settings run in the same run as ours, each labelled, so neither ratio is quoted without
the other. Each tool in a child process (wall time from spawn to exit, peak RSS and CPU its
own), the order rotated per rep, each run a full initial load into an emptied target (our tables
truncated and the cursor gone; dlt's schemas dropped and a fresh pipelines dir). After every run
the target's rows are counted against the size. Figures are medians; ratios are project / dlt,
one line per dlt setting. CPU per device is the process's user + system CPU (start-up included)
over the devices stored. `--solo-sizes` runs the project alone (1M by default from `make bench`).
`--dlt-python` runs dlt under another interpreter (a venv with only the `bench` extra).

    .venv/bin/python bench/dlt_comparison.py --sizes 10000 100000 --solo-sizes 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass

from bench_support import fresh_store_url
from golioth_bench import (
    BENCH_DIR,
    BIN,
    INVENTORY_ONLY,
    KEY,
    count_activity_rows,
    count_devices,
    load_average,
    median,
    register_golioth,
    run_child,
    run_project_sync,
    sql,
    start_emulator,
    stop,
    truncate_project_tables,
)

DLT_DATASET = "dlt_golioth"

#: the dlt settings compared, by label: max_table_nesting (None = dlt's default)
DLT_SETTINGS: dict[str, int | None] = {"dlt-default": None, "dlt-nest0": 0}


@dataclass(frozen=True, slots=True)
class Measured:
    size: int
    tool: str
    wall_s: float
    peak_rss_mib: float
    rows: int
    inner_s: float | None  # the tool's own timing (our sync's duration, dlt's pipeline.run)
    cpu_s: float  # user + system CPU of the process
    complete: bool = True  # False: stopped at --timeout-s, rows are what had landed
    note: str = ""

    @property
    def devices_per_s(self) -> float:
        return self.rows / self.wall_s

    @property
    def cpu_us_per_device(self) -> float:
        return self.cpu_s / max(self.rows, 1) * 1e6


def measure_project(
    store_url: str,
    integration_id: str,
    size: int,
    *,
    timeout_s: float | None = None,
    progress: bool = False,
) -> Measured:
    truncate_project_tables(store_url)

    def tick(elapsed: float) -> None:
        rows = count_devices(store_url, integration_id)
        print(
            f"    ... {elapsed:6.0f} s  {rows:>9} devices stored  {rows / elapsed:8.0f}/s  "
            f"load {load_average()}",
            flush=True,
        )

    run = run_project_sync(
        store_url,
        integration_id,
        timeout_s=timeout_s,
        on_tick=tick if progress else None,
        tick_s=30.0,
    )
    rows = count_devices(store_url, integration_id)
    figures = run.last_json()
    if not run.timed_out and figures.get("status") != "success":
        raise RuntimeError(f"project sync did not succeed: {figures or run.stderr[-2000:]}")
    activity = count_activity_rows(store_url, integration_id)
    return Measured(
        size,
        "project",
        run.wall_s,
        run.peak_rss_mib,
        rows,
        figures.get("duration_s"),
        run.cpu_s,
        complete=not run.timed_out,
        note=f"activity rows {activity}",
    )


def measure_dlt(store_url: str, emulator_url: str, size: int, label: str, python: str) -> Measured:
    nesting = DLT_SETTINGS[label]
    for schema in (DLT_DATASET, f"{DLT_DATASET}_staging"):
        sql(store_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    pipelines_dir = tempfile.mkdtemp(prefix="dlt-bench-")
    try:
        run = run_child(
            [
                python,
                os.path.join(BENCH_DIR, "dlt_golioth_load.py"),
                "--base-url",
                emulator_url,
                "--credentials",
                store_url,
                "--dataset",
                DLT_DATASET,
                "--pipelines-dir",
                pipelines_dir,
                "--max-table-nesting",
                str(-1 if nesting is None else nesting),
            ],
            {**os.environ, "BENCH_GOLIOTH_KEY": KEY},
        )
    finally:
        shutil.rmtree(pipelines_dir, ignore_errors=True)
    rows = sql(store_url, f'SELECT count(*) FROM "{DLT_DATASET}".devices')[0][0]
    figures = run.last_json()
    return Measured(
        size,
        label,
        run.wall_s,
        run.peak_rss_mib,
        rows,
        figures.get("run_s"),
        run.cpu_s,
        note=f"steps {figures.get('steps_s')} {figures.get('loader_file_format')}",
    )


def report_line(m: Measured) -> str:
    check = "ok" if m.rows == m.size else ("PARTIAL (time limit)" if not m.complete else "MISMATCH")
    inner = f"{m.inner_s:8.2f}" if m.inner_s is not None else f"{'-':>8}"
    return (
        f"  {m.size:>8} {m.tool:<11} {m.wall_s:8.2f} s {m.devices_per_s:9.0f}/s {m.peak_rss_mib:8.1f} MiB "
        f" in-tool {inner} s  CPU {m.cpu_s:7.2f} s {m.cpu_us_per_device:6.1f} µs/device  rows {m.rows}/{m.size} {check}  {m.note}  load {load_average()}"
    )


def summarise(results: list[Measured], repeat: int, solo_repeat: int) -> str:
    lines = [
        "",
        f"Golioth inventory → Postgres, medians (side by side: {repeat} rotated reps per tool; "
        f"project alone: {solo_repeat})",
        "wall = child process spawn to exit (start-up included); devices/s = rows stored / wall; "
        "in-tool = the tool's own timing of the load (no interpreter start-up or imports); "
        "CPU = user + system seconds of the process (steadier than wall on a shared machine); "
        "dlt-default = dlt's own max_table_nesting, dlt-nest0 = max_table_nesting=0",
        "",
        f"{'devices':>9} {'tool':<11} {'devices/s':>10} {'wall s':>8} {'in-tool s':>10} {'CPU s':>7} "
        f"{'µs CPU/dev':>10} {'peak RSS MiB':>13} {'rows stored':>12}",
    ]
    for size in sorted({m.size for m in results}):
        medians: dict[str, tuple[float, float, float]] = {}
        for tool in ("project", *DLT_SETTINGS):
            runs = [m for m in results if m.size == size and m.tool == tool]
            if not runs:
                continue
            rate = median([m.devices_per_s for m in runs])
            rss = median([m.peak_rss_mib for m in runs])
            per_device = median([m.cpu_us_per_device for m in runs])
            inner = [m.inner_s for m in runs if m.inner_s is not None]
            medians[tool] = (rate, rss, per_device)
            rows = ",".join(str(m.rows) for m in runs)
            partial = "" if all(m.complete for m in runs) else " (stopped at the time limit)"
            inner_text = f"{median(inner):>10.2f}" if inner else f"{'-':>10}"
            lines.append(
                f"{size:>9} {tool:<11} {rate:>10.0f} {median([m.wall_s for m in runs]):>8.2f} "
                f"{inner_text} {median([m.cpu_s for m in runs]):>7.2f} {per_device:>10.1f} "
                f"{rss:>13.1f} {rows:>12}{partial}"
            )
        if "project" not in medians:
            continue
        p_rate, p_rss, p_cpu = medians["project"]
        for label in DLT_SETTINGS:
            if label in medians:
                d_rate, d_rss, d_cpu = medians[label]
                lines.append(
                    f"{'':>9} {'ratio':<11} project/{label}: devices/s {p_rate / d_rate:.2f}x, "
                    f"CPU per device {p_cpu / d_cpu:.2f}x, peak RSS {p_rss / d_rss:.2f}x"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=int, nargs="*", default=[10_000, 100_000], help="sizes synced by both tools"
    )
    parser.add_argument(
        "--solo-sizes", type=int, nargs="*", default=[], help="sizes synced by the project alone"
    )
    parser.add_argument("--repeat", type=int, default=3, help="alternating reps per tool and size")
    parser.add_argument("--solo-repeat", type=int, default=1)
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=None,
        help="stop a project-alone run after this long and report what it stored",
    )
    parser.add_argument(
        "--dlt-settings",
        nargs="+",
        choices=sorted(DLT_SETTINGS),
        default=list(DLT_SETTINGS),
        help="which dlt settings run beside ours (default: both, each labelled)",
    )
    parser.add_argument(
        "--dlt-python",
        default=f"{BIN}/python",
        help="the interpreter dlt runs under (default: this venv's, with the bench extra)",
    )
    args = parser.parse_args()

    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {load_average()} (1/5/15 min)",
        flush=True,
    )
    results: list[Measured] = []
    plan = [(size, True) for size in args.sizes] + [(size, False) for size in args.solo_sizes]
    for size, side_by_side in plan:
        print(
            f"\n{size} devices {'project vs ' + ', '.join(args.dlt_settings) if side_by_side else 'project alone'}:",
            flush=True,
        )
        emulator, url = start_emulator(size)
        store_url, drop = fresh_store_url("postgres", prefix="sync_bench_dlt")
        try:
            integration_id = register_golioth(store_url, url, settings=INVENTORY_ONLY)
            tools = ["project", *args.dlt_settings] if side_by_side else ["project"]
            for rep in range(args.repeat if side_by_side else args.solo_repeat):
                shift = rep % len(tools)  # each tool goes first in turn
                for tool in tools[shift:] + tools[:shift]:
                    if tool == "project":
                        m = measure_project(
                            store_url,
                            integration_id,
                            size,
                            timeout_s=None if side_by_side else args.timeout_s,
                            progress=not side_by_side,
                        )
                    else:
                        m = measure_dlt(store_url, url, size, tool, args.dlt_python)
                    results.append(m)
                    print(report_line(m), flush=True)
        finally:
            stop(emulator)
            drop()
    print(summarise(results, args.repeat, args.solo_repeat))
    print(f"\nload average at the end {load_average()} (1/5/15 min)")


if __name__ == "__main__":
    main()
