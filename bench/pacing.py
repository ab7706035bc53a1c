"""Pacing against a metered provider: Golioth state syncs paced by the account's shared rate
budget (providers/pacing.py), side by side in one run.

For each limit (`--limits`, req/s; the emulator's token bucket, `--rate-limit-rps`): one
integration's state sync of `--devices` devices, then two integrations of the same account
(same host, same credential variable) syncing their states at once, each in its own process so
they share only the store row. Each with the limit configured (`rate_limit_rps`) and, with
`--discover`, unset (the budget finds it from 429s). Then a storm: `--storm-s` seconds of 429 +
`Retry-After: 2` on every state read of an unlimited emulator, the limit unset, the retry
settings at their defaults (`retry_max_total_s` 60).

Printed per case, from the activity log (every attempt's row): achieved req/s of the state reads
(first to last attempt) and its share of the limit, the share answered 429, dead letters left
open, the syncs' status, wall time and the syncs' own CPU per state.

    .venv/bin/python bench/pacing.py --devices 3000 --limits 20 50 --storm-s 60
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime

import httpx
from bench_support import free_port, fresh_store_url
from golioth_bench import BIN, KEY, PROJECT, SYNC_ENV, load_average, register_golioth, stop

STORM_RETRY_AFTER_S = 2


def start_emulator(devices: int, rate_limit_rps: float | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    limit = ["--rate-limit-rps", str(rate_limit_rps)] if rate_limit_rps else []
    proc = subprocess.Popen(
        [
            f"{BIN}/sync-pipelines",
            "emulator",
            "golioth",
            "--port",
            str(port),
            "--devices",
            str(devices),
            "--api-key",
            KEY,
            "--project-id",
            PROJECT,
            *limit,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            httpx.get(f"{url}/_emulator/stats", timeout=1).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("emulator did not start")


def child(integration_id: str, run_id: str, stream: str) -> None:
    """One sync in this process (what a Dagster step runs); prints its figures as JSON."""
    from sync_pipelines.observability.logging import configure_logging
    from sync_pipelines.store.database import Store
    from sync_pipelines.sync.device_states import sync_device_states
    from sync_pipelines.sync.inventory import sync_devices
    from sync_pipelines.sync.session import RunContext, integration_session

    configure_logging()
    store = Store()
    before = os.times()
    with integration_session(store, integration_id, RunContext(run_id=run_id)) as session:
        result = (sync_devices if stream == "devices" else sync_device_states)(session)
    after = os.times()
    cpu = (after.user - before.user) + (after.system - before.system)
    print(
        json.dumps(
            {"status": result.status, "fetched": result.counts.fetched, "cpu_s": cpu},
        )
    )


def run_syncs(store_url: str, integration_ids: list[str], stream: str, tag: str) -> list[dict]:
    """The syncs at once, one process each; their printed figures."""
    env = {**os.environ, **SYNC_ENV, "SYNC_DATABASE_URL": store_url, "SYNC_LOG_LEVEL": "WARNING"}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", iid, f"{tag}-{iid}", stream],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for iid in integration_ids
    ]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(stderr[-3000:])
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def figures(store_url: str, run_ids: list[str]) -> dict:
    """Achieved rate, 429 share and dead letters of the runs, from the store."""
    import sqlalchemy as sa

    engine = sa.create_engine(store_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT created_at, status_code FROM integration_activity_log "
                "WHERE run_id = ANY(:r) AND activity_type = 'http_request' "
                "AND external_id IS NOT NULL ORDER BY created_at"
            ),
            {"r": run_ids},
        ).all()
        letters = conn.execute(
            sa.text(
                "SELECT count(*) FROM dead_letters WHERE status IN ('pending', 'retrying') "
                "AND stream = 'device_states'"
            )
        ).scalar()
    engine.dispose()
    times = [r[0].timestamp() if isinstance(r[0], datetime) else 0.0 for r in rows]
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    return {
        "requests": len(rows),
        "rate": (len(times) - 1) / span if span else 0.0,
        "throttled": sum(1 for r in rows if r[1] == 429) / max(1, len(rows)),
        "dead_letters": int(letters or 0),
    }


def clear_state(store_url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        for table in ("device_states", "dead_letters", "rate_budgets"):
            conn.execute(sa.text(f"DELETE FROM {table}"))  # noqa: S608 - fixed names
    engine.dispose()


def case(store_url: str, integration_ids: list[str], label: str, limit: float | None) -> dict:
    clear_state(store_url)
    tag = f"{label}-{time.monotonic_ns()}"
    started = time.perf_counter()
    results = run_syncs(store_url, integration_ids, "states", tag)
    wall = time.perf_counter() - started
    found = figures(store_url, [f"{tag}-{iid}" for iid in integration_ids])
    states = sum(r["fetched"] for r in results)
    found.update(
        label=label,
        limit=limit,
        wall_s=wall,
        status=",".join(sorted({r["status"] for r in results})),
        cpu_us_per_state=sum(r["cpu_s"] for r in results) / max(1, states) * 1e6,
    )
    return found


def print_row(f: dict) -> None:
    share = f"{f['rate'] / f['limit']:.2f}" if f["limit"] else "  -"
    print(
        f"{f['label']:34s} {f['requests']:7d} {f['rate']:8.1f} {share:>6s} "
        f"{f['throttled'] * 100:6.2f}% {f['dead_letters']:5d} {f['status']:>8s} "
        f"{f['wall_s']:7.1f} {f['cpu_us_per_state']:8.0f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=3000)
    parser.add_argument("--limits", type=float, nargs="+", default=[20.0, 50.0])
    parser.add_argument("--discover", action="store_true", help="also with the limit unset")
    parser.add_argument("--storm-s", type=float, default=60.0, help="0: no storm")
    parser.add_argument("--storm-devices", type=int, default=2000)
    args = parser.parse_args()
    print(
        f"{'case':34s} {'reqs':>7s} {'req/s':>8s} {'share':>6s} {'429':>7s} {'dead':>5s} "
        f"{'status':>8s} {'wall_s':>7s} {'CPU us/state':>8s}",
        flush=True,
    )
    for limit in args.limits:
        emulator, url = start_emulator(args.devices, limit)
        store_url, drop = fresh_store_url("postgres", prefix="sync_bench_pacing")
        try:
            # one request per device (what pacing is about): states read one by one
            settings = [("set", {"rate_limit_rps": str(limit), "state_source": "device"})]
            if args.discover:
                settings.append(("unset", {"state_source": "device"}))
            for kind, extra in settings:
                ids = [register_golioth(store_url, url, settings=extra) for _ in range(2)]
                run_syncs(store_url, ids, "devices", f"inv-{kind}")
                print_row(case(store_url, ids[:1], f"{limit:g} req/s, limit {kind}, 1 sync", limit))
                print_row(case(store_url, ids, f"{limit:g} req/s, limit {kind}, 2 syncs", limit))
        finally:
            stop(emulator)
            drop()
    if args.storm_s:
        storm(args.storm_devices, args.storm_s)
    print(load_average())


def storm(devices: int, seconds: float) -> None:
    """`seconds` of 429 + Retry-After on every state read, from 1 s into the sync."""
    emulator, url = start_emulator(devices, None)
    store_url, drop = fresh_store_url("postgres", prefix="sync_bench_pacing")
    try:
        iid = register_golioth(store_url, url, settings={"state_source": "device"})
        run_syncs(store_url, [iid], "devices", "inv-storm")
        fault = {"kind": "rate_limit", "retry_after_s": STORM_RETRY_AFTER_S, "path": "/data$"}

        def blow() -> None:
            time.sleep(1.0)
            httpx.post(f"{url}/_emulator/faults", json=[fault]).raise_for_status()
            time.sleep(seconds)
            httpx.delete(f"{url}/_emulator/faults").raise_for_status()

        storm_thread = threading.Thread(target=blow)
        storm_thread.start()
        f = case(store_url, [iid], f"storm {seconds:g} s, Retry-After 2, 1 sync", None)
        storm_thread.join()
        print_row(f)
    finally:
        stop(emulator)
        drop()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
    else:
        main()
