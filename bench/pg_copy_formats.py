"""Text vs binary COPY for the devices upsert, side by side: client CPU, server CPU and wall time
per row, medians of alternating repetitions (store/pg_copy.py picks binary when it can).

Each repetition upserts the same rows into an emptied devices table in 1,000-row batches,
exactly as a sync writes them (staging table, COPY, one merge), once per format.

    .venv/bin/python bench/pg_copy_formats.py --rows 50000 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from bench_support import fresh_store_url

from sync_pipelines.clock import utc_now
from sync_pipelines.providers.contract import DeviceRecord
from sync_pipelines.store import pg_copy
from sync_pipelines.store.database import Store
from sync_pipelines.store.devices import upsert_devices
from sync_pipelines.store.integrations import claim_integration_id, ensure_organization
from sync_pipelines.store.migrations import migrate
from sync_pipelines.sync.records import device_row

_TICK = os.sysconf("SC_CLK_TCK")


def _postgres_cpu_s() -> float:
    """User + system CPU of every postgres process on this machine (the server's share)."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as comm:
                if not comm.read().startswith("postgres"):
                    continue
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return total / _TICK


def _rows(count: int) -> list[dict]:
    now = utc_now()
    return [
        device_row(
            DeviceRecord(
                external_id=f"dev-{i:07d}",
                name=f"device-{i:07d}",
                hardware_ids=(f"02:00:00:00:{i % 256:02x}:{i // 256 % 256:02x}",),
                tags=("01cdce9d8e19c2d9169f8c10", "fed05332e8badb6bed211beb"),
                status="online",
                enabled=True,
                last_seen_at=now,
                provider_created_at=now,
                provider_updated_at=now,
                attributes={"blueprintId": "eab6fd1dc09ce569757767b4", "metadata": {"status": "-"}},
            ),
            organization_id="bench",
            integration_id="bench-copy",
            run_id="bench",
            request_id="bench",
            now=now,
        )
        for i in range(count)
    ]


def _one_pass(store: Store, rows: list[dict], binary: bool) -> tuple[float, float, float]:
    """(client CPU, server CPU, wall) in µs per row for one full upsert of `rows`."""
    if not binary:  # make every copy text: no column counts as binary-safe
        saved, pg_copy._BINARY_TYPES = pg_copy._BINARY_TYPES, frozenset()
    try:
        before, server0, wall0 = os.times(), _postgres_cpu_s(), time.perf_counter()
        for start in range(0, len(rows), 1000):
            with store.transaction() as conn:
                upsert_devices(conn, rows[start : start + 1000])
        after, server1, wall1 = os.times(), _postgres_cpu_s(), time.perf_counter()
    finally:
        if not binary:
            pg_copy._BINARY_TYPES = saved
    with store.transaction() as conn:
        conn.exec_driver_sql("TRUNCATE devices")
    client = (after.user + after.system) - (before.user + before.system)
    per_row = 1e6 / len(rows)
    return client * per_row, (server1 - server0) * per_row, (wall1 - wall0) * per_row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    url, drop = fresh_store_url("postgres", prefix="sync_bench_copy")
    try:
        store = Store(url)
        migrate(store)
        with store.transaction() as conn:  # the devices are keyed by an owned integration id
            ensure_organization(conn, "bench")
            claim_integration_id(conn, "bench", "bench-copy")
        rows = _rows(args.rows)
        results: dict[str, list[tuple[float, float, float]]] = {"text": [], "binary": []}
        for _ in range(args.repeat):
            for name in results:
                results[name].append(_one_pass(store, rows, binary=name == "binary"))
        store.dispose()
    finally:
        drop()
    print(f"devices upsert, {args.rows} rows in 1,000-row batches, medians of {args.repeat}")
    print(
        f"{'format':8s} {'client CPU us/row':>18s} {'server CPU us/row':>18s} {'wall us/row':>12s}"
    )
    medians = {}
    for name, runs in results.items():
        medians[name] = [statistics.median(r[k] for r in runs) for k in range(3)]
        client, server, wall = medians[name]
        print(f"{name:8s} {client:18.1f} {server:18.1f} {wall:12.1f}")
    ratios = [
        b / t if t else float("nan")
        for b, t in zip(medians["binary"], medians["text"], strict=True)
    ]
    print(
        f"binary/text: client CPU {ratios[0]:.2f}x, server CPU {ratios[1]:.2f}x, wall {ratios[2]:.2f}x"
    )


if __name__ == "__main__":
    main()
