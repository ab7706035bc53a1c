"""What Sentry and OpenTelemetry cost a devices sync, and that neither costs anything when off.

The same in-process devices sync (integration_session + sync_devices, a full initial load into
emptied tables on Postgres) against the Golioth emulator, in a fresh child process per variant
and rep, configured the way the product's entry points configure it:

- off: neither SENTRY_DSN nor an OTLP endpoint (the default)
- otel: OTEL_EXPORTER_OTLP_ENDPOINT → a loopback sink (OTLP/HTTP protobuf, batch exporter)
- sentry: SENTRY_DSN → the same sink (a successful sync sends no event: what is measured is
  the SDK's presence — its logging breadcrumbs and patched stdlib)
- both

The order of the variants rotates every rep; each child runs `--syncs` syncs and reports the
median of their durations (the first, a warm-up, left out); the figures are the medians of
those per rep, the ratio to `off`, and the median of the per-rep paired ratios. The sink counts
what each child sent: an `off` child must send nothing. A micro-benchmark of the hot-path
checks when off (per provider call and per log line) closes.

    .venv/bin/python bench/observability_backends.py --size 20000 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import timeit
from collections import defaultdict

from bench_support import fresh_store_url
from golioth_bench import (
    BIN,
    INVENTORY_ONLY,
    SYNC_ENV,
    load_average,
    median,
    register_golioth,
    start_emulator,
    stop,
    truncate_project_tables,
)

from sync_pipelines_tests.observability.backend_sinks import BackendSink

VARIANTS = ("off", "otel", "sentry", "both")
_BACKEND_ENVS = ("SENTRY_DSN", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def variant_env(variant: str, sink: BackendSink) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _BACKEND_ENVS}
    env.update(SYNC_ENV)
    if variant in ("otel", "both"):
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.url
    if variant in ("sentry", "both"):
        env["SENTRY_DSN"] = sink.sentry_dsn
    return env


# -- child: the measured syncs ---------------------------------------------------------------------


def child(store_url: str, integration_id: str, syncs: int) -> None:
    import uuid

    from sync_pipelines.observability import otel
    from sync_pipelines.observability.logging import configure_logging
    from sync_pipelines.observability.sentry import configure_sentry
    from sync_pipelines.store.database import Store
    from sync_pipelines.sync.inventory import sync_devices
    from sync_pipelines.sync.session import RunContext, integration_session

    configure_logging()
    configure_sentry()
    tracing_on = otel.configure_tracing()
    store = Store(store_url)
    durations, cpu = [], []
    for _ in range(syncs):
        truncate_project_tables(store_url)
        run = RunContext(run_id=str(uuid.uuid4()), step_key="bench_devices", job_name="bench")
        started, cpu_started = time.perf_counter(), time.process_time()
        with integration_session(store, integration_id, run) as session:
            result = sync_devices(session)
        durations.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)  # every thread of this process
        if result.status != "success":
            raise RuntimeError(f"sync ended {result.status}")
    otel.shutdown_tracing()  # flush the last spans (not timed)
    store.dispose()
    print(
        json.dumps(
            {
                "durations": durations,
                "cpu": cpu,
                "tracing": tracing_on,
                "fetched": result.counts.fetched,
            }
        )
    )


# -- parent ------------------------------------------------------------------------------------------


def run_child(
    variant: str, sink: BackendSink, store_url: str, integration_id: str, syncs: int
) -> dict:
    env = {
        **variant_env(variant, sink),
        "SYNC_DATABASE_URL": store_url,
        "SYNC_LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [
            f"{BIN}/python",
            os.path.abspath(__file__),
            "--child",
            store_url,
            integration_id,
            str(syncs),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{variant} child failed:\n{done.stderr[-3000:]}")
    return json.loads(
        [line for line in done.stdout.splitlines() if line.startswith('{"durations"')][-1]
    )


def compare(size: int, repeat: int, syncs: int) -> None:
    print(
        f"\n== Backends off / OTel / Sentry / both: {size} devices, {repeat} reps x {syncs} syncs "
        "per child (first sync a warm-up), order rotates ==",
        flush=True,
    )
    emulator, url = start_emulator(size)
    store_url, drop = fresh_store_url("postgres", prefix="sync_bench_backends")
    # variant -> per-rep medians of (wall s, process CPU s) of its syncs
    per_rep: dict[str, list[tuple[float, float]]] = defaultdict(list)
    sent: dict[str, int] = defaultdict(int)
    try:
        integration_id = register_golioth(store_url, url, settings=INVENTORY_ONLY)
        with BackendSink() as sink:
            for rep in range(repeat):
                order = VARIANTS[rep % len(VARIANTS) :] + VARIANTS[: rep % len(VARIANTS)]
                for variant in order:
                    before = len(sink.requests)
                    figures = run_child(variant, sink, store_url, integration_id, syncs)
                    sent[variant] += len(sink.requests) - before
                    wall = median(figures["durations"][1:] or figures["durations"])
                    cpu = median(figures["cpu"][1:] or figures["cpu"])
                    per_rep[variant].append((wall, cpu))
                    print(
                        f"  rep {rep + 1} {variant:<7} sync wall {wall:7.3f} s  CPU {cpu:7.3f} s  "
                        f"({figures['fetched']} devices)  requests to the sink "
                        f"{len(sink.requests) - before:>3}  load {load_average()}",
                        flush=True,
                    )
            spans = len(sink.otlp_spans())
    finally:
        stop(emulator)
        drop()

    print(
        "\nmedians over reps; 'vs off' = ratio of medians, 'paired' = median of the per-rep ratios "
        "(a rep runs every variant back to back). Process CPU is the steadier figure on a busy host."
    )
    print(
        f"{'variant':<8} {'wall s':>8} {'devices/s':>10} {'vs off':>8} {'paired':>8} "
        f"{'CPU s':>7} {'vs off':>8} {'paired':>8} {'sent':>5}"
    )
    for variant in VARIANTS:
        cells = []
        for i in (0, 1):
            mine = [r[i] for r in per_rep[variant]]
            off = [r[i] for r in per_rep["off"]]
            paired = median([v / o - 1 for v, o in zip(mine, off, strict=True)])
            cells.append((median(mine), 100 * (median(mine) / median(off) - 1), 100 * paired))
        (wall, wall_pct, wall_paired), (cpu, cpu_pct, cpu_paired) = cells
        print(
            f"{variant:<8} {wall:>8.3f} {size / wall:>10.0f} {wall_pct:>+7.1f}% {wall_paired:>+7.1f}% "
            f"{cpu:>7.3f} {cpu_pct:>+7.1f}% {cpu_paired:>+7.1f}% {sent[variant]:>5}"
        )
    print(
        f"\nspans received over OTLP/HTTP: {spans}; requests from `off` children: {sent['off']} "
        "(must be 0)"
    )


def hot_path_when_off() -> None:
    """What the checks added to every provider call / row / log line cost with both off."""
    from sync_pipelines.observability import otel
    from sync_pipelines.observability.logging import _add_trace_context

    assert not otel.tracing_enabled()
    n = 1_000_000
    event: dict = {"event": "x"}
    figures = {
        "otel.tracing_enabled()": timeit.timeit(otel.tracing_enabled, number=n),
        "otel.span(...) entered (nullcontext)": timeit.timeit(
            lambda: otel.span("x").__enter__(), number=n
        ),
        "log processor _add_trace_context": timeit.timeit(
            lambda: _add_trace_context(None, "info", event), number=n
        ),
    }
    print("\n== Hot path with both off (per call) ==")
    for label, seconds in figures.items():
        print(f"  {label:<40} {seconds / n * 1e9:7.1f} ns")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--syncs", type=int, default=3)
    args = parser.parse_args()
    compare(args.size, args.repeat, args.syncs)
    hot_path_when_off()


if __name__ == "__main__":
    main()
