"""What a poll where nothing changed costs Postgres: WAL bytes of a first inventory sync and of
an unchanged re-sync, side by side, from `pg_current_wal_lsn()` around each run.

Per size: the Golioth emulator (its own process) serves N devices; the sync runs in this process
(activity log and structured logs on, as the product ships) into a fresh database. The first
sync loads the devices; then VACUUM ANALYZE (what autovacuum would have done by the next poll:
its one-time work on freshly loaded rows is not the re-sync's) and, before each measured run, a
CHECKPOINT, so every run pays the full-page images a real poll pays once per checkpoint. Printed
per run: WAL bytes, `devices` rows inserted / updated (HOT) from pg_stat_user_tables, wall time,
this process's CPU per device (the emulator's is not counted), the sync's own counts, and, for
the last re-sync, the WAL by relation (pg_waldump over the run's LSN range).

WAL is cluster-wide, so by default the benchmark starts a private PostgreSQL server (initdb into a
temp directory, autovacuum off, fsync off) where nothing else writes; `--postgres-url` uses an
existing server instead (its other users' WAL is then counted too).

    .venv/bin/python bench/noop_resync.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from bench_support import free_port
from golioth_bench import SYNC_ENV, load_average, register_golioth, start_emulator, stop

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Server:
    admin_url: str
    #: the server's WAL directory, when we can read it (private server): pg_waldump's input
    wal_dir: str | None
    bin_dir: str | None


@contextlib.contextmanager
def private_server() -> Iterator[Server]:
    """A throwaway PostgreSQL server on a free loopback port (as root: run as `postgres`)."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        raise SystemExit(
            "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin): --postgres-url"
        )
    bin_dir, home, port = bins[-1], tempfile.mkdtemp(prefix="noop-resync-pg-"), free_port()
    data = os.path.join(home, "data")
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        shutil.chown(home, "postgres")
        as_postgres = [shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin") or "runuser"]
        as_postgres += ["-u", "postgres", "--"]

    def run(tool: str, *args: str) -> None:
        subprocess.run(
            [*as_postgres, os.path.join(bin_dir, tool), *args], check=True, capture_output=True
        )

    run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
    options = (
        f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off -c autovacuum=off "
        "-c max_wal_size=4GB -c checkpoint_timeout=1h"
    )
    run("pg_ctl", "-D", data, "-o", options, "-l", os.path.join(home, "log"), "-w", "start")
    try:
        yield Server(
            f"postgresql://postgres@127.0.0.1:{port}/postgres",
            os.path.join(data, "pg_wal"),
            bin_dir,
        )
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server: Server) -> Iterator[str]:
    name = f"noop_resync_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server.admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(server.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def one_value(url: str, statement: str) -> object:
    """One statement (autocommit: VACUUM runs outside a transaction); its first value, if any."""
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchone()[0] if cursor.description else None  # type: ignore[index]


def table_writes(url: str, table: str) -> tuple[int, int, int]:
    """(n_tup_ins, n_tup_upd, n_tup_hot_upd) of `table`, as the statistics system has them."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE relname = %s",
            (table,),
        ).fetchone()
    return tuple(row) if row else (0, 0, 0)  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Run:
    label: str
    wal_bytes: int
    inserted: int
    updated: int
    hot_updated: int
    wall_s: float
    cpu_us_per_device: float
    counts: str
    start_lsn: str
    end_lsn: str


def measured_sync(url: str, integration_id: str, devices: int, label: str, stream: str) -> Run:
    """One sync of `stream` (devices | device_states) in this process, with the WAL and the
    writes to the stream's table around it."""
    from sync_pipelines.store.database import Store
    from sync_pipelines.sync.device_states import sync_device_states
    from sync_pipelines.sync.inventory import sync_devices
    from sync_pipelines.sync.session import RunContext, integration_session

    sync = sync_devices if stream == "devices" else sync_device_states
    store = Store(url)
    before_writes = table_writes(url, stream)
    start_lsn = str(one_value(url, "SELECT pg_current_wal_lsn()"))
    cpu_before, started = os.times(), time.perf_counter()
    with integration_session(store, integration_id, RunContext(run_id=f"noop-{label}")) as session:
        result = sync(session)
    wall, cpu_after = time.perf_counter() - started, os.times()
    store.dispose()  # closing its connections flushes their table statistics
    end_lsn = str(one_value(url, "SELECT pg_current_wal_lsn()"))
    wal = int(one_value(url, f"SELECT pg_wal_lsn_diff('{end_lsn}', '{start_lsn}')"))  # type: ignore[arg-type]
    time.sleep(0.2)
    after_writes = table_writes(url, stream)
    if result.status != "success":
        raise RuntimeError(f"{label}: sync status {result.status}")
    c = result.counts
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    ins, upd, hot = (a - b for a, b in zip(after_writes, before_writes, strict=True))
    return Run(
        label,
        wal,
        ins,
        upd,
        hot,
        wall,
        cpu / devices * 1e6,
        f"{c.created}/{c.updated}/{c.unchanged}/{c.deleted}",
        start_lsn,
        end_lsn,
    )


_BLOCK_REF = re.compile(r"rel \d+/(\d+)/(\d+)")
_LENGTH = re.compile(r"len \(rec/tot\):\s*\d+/\s*(\d+)")


def wal_by_relation(server: Server, url: str, run: Run, top: int = 12) -> list[tuple[str, int]]:
    """The run's WAL bytes by the table a record's first block belongs to, with its indexes and
    TOAST (pg_waldump)."""
    if server.wal_dir is None or server.bin_dir is None:
        return []
    dump = subprocess.run(
        [
            os.path.join(server.bin_dir, "pg_waldump"),
            "-p",
            server.wal_dir,
            "-s",
            run.start_lsn,
            "-e",
            run.end_lsn,
        ],
        capture_output=True,
        text=True,
    ).stdout
    with psycopg.connect(url, autocommit=True) as conn:
        # a TOAST table or an index counts for the table it belongs to
        names = dict(
            conn.execute(
                "SELECT pg_relation_filenode(c.oid)::text, coalesce(t.relname, i.relname, c.relname) "
                "FROM pg_class c LEFT JOIN pg_class t ON t.reltoastrelid = c.oid "
                "LEFT JOIN pg_index x ON x.indexrelid = c.oid "
                "LEFT JOIN pg_class i ON i.oid = x.indrelid "
                "WHERE pg_relation_filenode(c.oid) IS NOT NULL"
            ).fetchall()
        )
    by_relation: Counter[str] = Counter()
    for line in dump.splitlines():
        length = _LENGTH.search(line)
        if length is None:
            continue
        ref = _BLOCK_REF.search(line)
        rmgr = line.split()[1] if line.startswith("rmgr:") else "?"
        key = names.get(ref.group(2), f"other ({rmgr})") if ref else f"no block ({rmgr})"
        by_relation[key] += int(length.group(1))
    ranked = by_relation.most_common()
    rest = sum(size for _, size in ranked[top:])
    return ranked[:top] + ([(f"the other {len(ranked) - top}", rest)] if rest else [])


def bench_size(
    server: Server, devices: int, repeat: int, stream: str
) -> tuple[Run, list[Run], list]:
    emulator, emulator_url = start_emulator(devices)
    try:
        with fresh_database(server) as url:
            # states from the device list: one call per page, not per device
            integration_id = register_golioth(url, emulator_url, settings={"state_source": "list"})
            if stream == "device_states":  # the states sync reads the stored inventory
                measured_sync(url, integration_id, devices, "inventory", "devices")
            first = measured_sync(url, integration_id, devices, "first", stream)
            one_value(url, "VACUUM ANALYZE")
            resyncs = []
            for rep in range(repeat):
                one_value(url, "CHECKPOINT")
                resyncs.append(measured_sync(url, integration_id, devices, f"resync-{rep}", stream))
            breakdown = wal_by_relation(server, url, resyncs[-1])
    finally:
        stop(emulator)
    return first, resyncs, breakdown


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=2, help="unchanged re-syncs per size")
    parser.add_argument("--postgres-url", help="an existing server (default: a private one)")
    parser.add_argument(
        "--stream", choices=["devices", "device_states"], default="devices", help="what to re-sync"
    )
    args = parser.parse_args()
    os.environ.update({**SYNC_ENV, "SYNC_LOG_LEVEL": "WARNING"})
    from sync_pipelines.observability.logging import configure_logging

    configure_logging()
    server_cm = (
        contextlib.nullcontext(Server(args.postgres_url, None, None))
        if args.postgres_url
        else private_server()
    )
    results = []
    with server_cm as server:
        for size in args.sizes:
            results.append((size, *bench_size(server, size, args.repeat, args.stream)))
    where = "an existing server (cluster-wide WAL)" if args.postgres_url else "a private server"
    print(
        f"\nNo-op re-sync of {args.stream}, Golioth emulator → Postgres ({where}); "
        f"ins/upd/hot upd: rows of {args.stream}; counts created/updated/unchanged/deleted"
    )
    print(
        f"{'devices':>8} {'run':>9} {'WAL MB':>8} {'WAL B/dev':>9} {'ins':>7} {'upd':>7} "
        f"{'hot upd':>7} {'wall s':>7} {'dev/s':>7} {'CPU us/dev':>10}  counts"
    )
    for size, first, resyncs, _ in results:
        for run in (first, *resyncs):
            print(
                f"{size:>8} {run.label:>9} {run.wal_bytes / 1e6:>8.2f} "
                f"{run.wal_bytes / size:>9.0f} {run.inserted:>7} {run.updated:>7} "
                f"{run.hot_updated:>7} {run.wall_s:>7.2f} {size / run.wall_s:>7.0f} "
                f"{run.cpu_us_per_device:>10.1f}  {run.counts}"
            )
        wal = statistics.median(r.wal_bytes for r in resyncs)
        print(f"{size:>8} re-sync/first WAL: {wal / first.wal_bytes:.3f}x")
    for size, _, _, breakdown in results:
        if breakdown:
            print(f"\nWAL of the last re-sync at {size} by table, with its indexes and TOAST:")
            for name, size_bytes in breakdown:
                print(f"  {name[:56]:56s} {size_bytes / 1e6:8.3f} MB")
    print(f"load average {load_average()}")


if __name__ == "__main__":
    main()
