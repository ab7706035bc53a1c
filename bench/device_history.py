"""The devices' history (`device_changes`, sql/027) on Postgres: what it costs a sync, and how fast
the device page reads it back.

`resync` — a sync of N devices (default 100,000) from the Golioth emulator (its own process),
then a re-sync after 10 % of them changed at the emulator (each renamed through its control
API), with the history on and off, alternating, `--repeat` times each. Every sync runs in this
process through the product's sync (`sync_devices`) into a fresh database of a private
PostgreSQL server (nothing else writes there). "Off" is a switch of the benchmark's only: the two
history triggers on `devices` are disabled in its own database (ALTER TABLE … DISABLE TRIGGER);
the product has no such setting. Printed per run: wall time, devices/s, this process's CPU and
the private server's CPU (its backends) per device, and for the history-on re-syncs the change
rows written: they must be exactly the renamed devices, one `updated` row each (asserted).

`write` — the same A/B on the write path alone, without a provider: the product's upsert
(`upsert_devices`, 1,000-row batches, one transaction each, as the inventory sync writes them)
of N prepared device rows into an empty table, then of the same rows with 10 % changed (an
attribute and the name), history on and off, alternating; the store's share of a re-sync, where
the history's cost is least diluted. Asserts the change rows written are exactly the changed
devices'.

`page` — `device_changes` filled to `--rows` (default 10,000,000) with generate_series, spread
over `--devices` devices (default 50,000: 200 changes each, 180 of them its organization's) and the last 90 days, then the device page's JSON
(`/console/api/integrations/{id}/devices/{device}`: the device, its letters, its state and the
first 50 changes) and a deeper history page (`?after=` the cursor of the third page) requested
`--requests` times each (default 50) through the real console app on a loopback port, as the
all-organizations operator and as a tenant-scoped one (row-level security): median and p95.

    .venv/bin/python bench/device_history.py resync --devices 100000 --repeat 3
    .venv/bin/python bench/device_history.py write --devices 100000 --repeat 5
    .venv/bin/python bench/device_history.py page --rows 10000000 --requests 50

(`make bench-device-history` runs both.)
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from dataclasses import dataclass

import httpx
import psycopg
from golioth_bench import SYNC_ENV, load_average, register_golioth, start_emulator, stop
from noop_resync import Server, fresh_database, one_value, private_server

_TICK = os.sysconf("SC_CLK_TCK")
_HISTORY_TRIGGERS = ("device_changes_on_insert", "device_changes_on_update")


def _server_cpu_s(postmaster: int) -> float:
    """User + system CPU of the private server's processes (its postmaster's children)."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(pid) == postmaster or int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


def _postmaster_pid(url: str) -> int:
    text = str(one_value(url, "SELECT pg_read_file('postmaster.pid')"))
    return int(text.splitlines()[0])


@dataclass(frozen=True, slots=True)
class Run:
    label: str
    history: bool
    devices: int
    wall_s: float
    client_us: float
    server_us: float
    counts: str
    change_rows: int

    @property
    def per_s(self) -> float:
        return self.devices / self.wall_s


def _sync(url: str, integration_id: str, devices: int, label: str, history: bool) -> Run:
    from sync_pipelines.store.database import Store
    from sync_pipelines.sync.inventory import sync_devices
    from sync_pipelines.sync.session import RunContext, integration_session

    postmaster = _postmaster_pid(url)
    store = Store(url)
    run_id = f"devhist-{label}-{uuid.uuid4().hex[:6]}"
    server_before, client_before = _server_cpu_s(postmaster), os.times()
    started = time.perf_counter()
    with integration_session(store, integration_id, RunContext(run_id=run_id)) as session:
        result = sync_devices(session)
    wall = time.perf_counter() - started
    client_after, server_after = os.times(), _server_cpu_s(postmaster)  # backends still open
    store.dispose()
    if result.status != "success":
        raise RuntimeError(f"{label}: sync status {result.status}")
    client = (client_after.user - client_before.user) + (client_after.system - client_before.system)
    rows = int(one_value(url, f"SELECT count(*) FROM device_changes WHERE run_id = '{run_id}'"))  # type: ignore[arg-type]
    c = result.counts
    return Run(
        label,
        history,
        devices,
        wall,
        client / devices * 1e6,
        (server_after - server_before) / devices * 1e6,
        f"{c.created}/{c.updated}/{c.unchanged}",
        rows,
    )


def _rename_tenth(emulator_url: str, ids: list[str], tag: str) -> dict[str, str]:
    """Rename every tenth device at the emulator; {id: new name}."""
    chosen = {i: f"renamed-{tag}-{n}" for n, i in enumerate(ids[::10])}
    with httpx.Client(base_url=emulator_url, timeout=30) as client:
        for device_id, name in chosen.items():
            client.patch(f"/_emulator/devices/{device_id}", json={"name": name}).raise_for_status()
    return chosen


def _one_arm(server: Server, emulator_url: str, devices: int, history: bool, rep: int) -> Run:
    with fresh_database(server) as url:
        integration_id = register_golioth(url, emulator_url)
        if not history:
            for trigger in _HISTORY_TRIGGERS:
                one_value(url, f"ALTER TABLE devices DISABLE TRIGGER {trigger}")
        _sync(url, integration_id, devices, f"first-{rep}", history)
        with psycopg.connect(url) as conn:
            ids = [r[0] for r in conn.execute("SELECT external_id FROM devices ORDER BY 1")]
        renamed = _rename_tenth(emulator_url, ids, f"{rep}-{'on' if history else 'off'}")
        one_value(url, "VACUUM ANALYZE")
        one_value(url, "CHECKPOINT")
        run = _sync(url, integration_id, devices, f"resync-{rep}", history)
        if history:
            with psycopg.connect(url) as conn:
                written = conn.execute(
                    "SELECT device_id, kind, changes -> 'name' FROM device_changes "
                    "WHERE run_id LIKE 'devhist-resync-%'"
                ).fetchall()
            assert sorted(d for d, _, _ in written) == sorted(renamed), "not the renamed devices"
            assert all(kind == "updated" for _, kind, _ in written)
            assert all(pair[1] == renamed[d] for d, _, pair in written), "wrong new names"
        else:
            assert run.change_rows == 0
    return run


def resync(args: argparse.Namespace) -> None:
    runs: list[Run] = []
    emulator, emulator_url = start_emulator(args.devices)
    try:
        with private_server() as server:
            for rep in range(args.repeat):
                for history in (True, False) if rep % 2 == 0 else (False, True):
                    run = _one_arm(server, emulator_url, args.devices, history, rep)
                    runs.append(run)
                    print(
                        f"  rep {rep} history {'on ' if history else 'off'}: {run.per_s:,.0f} dev/s, "
                        f"{run.change_rows} change rows",
                        flush=True,
                    )
    finally:
        stop(emulator)
    _report(
        runs,
        f"Re-sync of {args.devices:,} devices with 10 % renamed at the emulator, Golioth "
        "emulator → a private Postgres; medians of alternating runs",
    )


def _report(runs: list[Run], title: str) -> None:
    print(f"\n{title}")
    print(
        f"{'history':>8} {'runs':>5} {'dev/s':>9} {'wall s':>7} {'client us/dev':>13} "
        f"{'server us/dev':>13} {'change rows':>11}  counts created/updated/unchanged"
    )
    medians = {}
    for history in (True, False):
        mine = [r for r in runs if r.history == history]
        med = statistics.median(r.per_s for r in mine)
        medians[history] = med
        print(
            f"{'on' if history else 'off':>8} {len(mine):>5} {med:>9,.0f} "
            f"{statistics.median(r.wall_s for r in mine):>7.2f} "
            f"{statistics.median(r.client_us for r in mine):>13.1f} "
            f"{statistics.median(r.server_us for r in mine):>13.1f} "
            f"{statistics.median(r.change_rows for r in mine):>11.0f}  {mine[0].counts}"
        )
    delta = (medians[True] - medians[False]) / medians[False] * 100
    # each repetition's two arms ran back to back: their ratio is steadier on a shared machine
    by_rep: dict[str, dict[bool, float]] = {}
    for r in runs:
        by_rep.setdefault(r.label, {})[r.history] = r.per_s
    paired = statistics.median(
        (arms[True] / arms[False] - 1) * 100 for arms in by_rep.values() if len(arms) == 2
    )
    print(
        f"history on vs off: {delta:+.1f} % devices/s (medians), {paired:+.1f} % (median of the "
        "back-to-back pairs); target: within 5 %"
    )
    print(f"load average {load_average()}")


# -- the write path alone ------------------------------------------------------------------


def _device_rows(count: int, changed_every: int | None, tag: str) -> list[dict]:
    from sync_pipelines.clock import utc_now
    from sync_pipelines.providers.contract import DeviceRecord
    from sync_pipelines.sync.records import device_row

    now = utc_now()
    rows = []
    for i in range(count):
        changed = changed_every is not None and i % changed_every == 0
        rows.append(
            device_row(
                DeviceRecord(
                    external_id=f"dev-{i:07d}",
                    name=f"device-{i:07d}" + (f"-{tag}" if changed else ""),
                    hardware_ids=(f"02:00:00:00:{i % 256:02x}:{i // 256 % 256:02x}",),
                    tags=("01cdce9d8e19c2d9169f8c10", "fed05332e8badb6bed211beb"),
                    status="online",
                    enabled=True,
                    attributes={
                        "blueprintId": "eab6fd1dc09ce569757767b4",
                        "fw": "1.1" if changed else "1.0",
                        "metadata": {"lastSettingsStatus": {"status": "no-settings"}},
                    },
                ),
                organization_id=ORG,
                integration_id=INTEGRATION,
                run_id=f"write-{tag}",
                request_id=f"req-{tag}",
                now=now,
            )
        )
    return rows


def _write_arm(server: Server, devices: int, history: bool, rep: int) -> Run:
    from sync_pipelines.store.database import Store
    from sync_pipelines.store.device_changes import expand_documents
    from sync_pipelines.store.devices import upsert_devices
    from sync_pipelines.store.integrations import claim_integration_id, ensure_organization
    from sync_pipelines.store.migrations import migrate

    tag = f"{rep}-{'on' if history else 'off'}"
    first, second = _device_rows(devices, None, f"{tag}-first"), _device_rows(devices, 10, tag)
    with fresh_database(server) as url:
        store = Store(url)
        migrate(store)
        with store.transaction() as conn:
            ensure_organization(conn, ORG)
            claim_integration_id(conn, ORG, INTEGRATION)
        if not history:
            for trigger in _HISTORY_TRIGGERS:
                one_value(url, f"ALTER TABLE devices DISABLE TRIGGER {trigger}")
        for start in range(0, devices, 1000):
            with store.transaction() as conn:
                upsert_devices(conn, first[start : start + 1000])
        one_value(url, "VACUUM ANALYZE")
        one_value(url, "CHECKPOINT")
        postmaster = _postmaster_pid(url)
        with store.connect():  # the pool's connection open before the clock starts
            pass
        server_before, client_before = _server_cpu_s(postmaster), os.times()
        started = time.perf_counter()
        updated = 0
        for start in range(0, devices, 1000):
            with store.transaction() as conn:
                updated += upsert_devices(conn, second[start : start + 1000]).updated
        wall = time.perf_counter() - started
        client_after, server_after = os.times(), _server_cpu_s(postmaster)
        store.dispose()
        with psycopg.connect(url) as conn:
            written = conn.execute(
                "SELECT device_id, kind, changes FROM device_changes WHERE run_id = %s",
                (f"write-{tag}",),
            ).fetchall()
    changed = {r["external_id"] for r in second[::10]}
    if history:
        assert sorted(d for d, _, _ in written) == sorted(changed), "not the changed devices"
        assert all(
            k == "updated" and set(expand_documents(c)) == {"name", "attributes.fw"}
            for _, k, c in written
        )
    else:
        assert not written
    assert updated == len(changed)
    client = (client_after.user - client_before.user) + (client_after.system - client_before.system)
    return Run(
        f"write-{rep}",
        history,
        devices,
        wall,
        client / devices * 1e6,
        (server_after - server_before) / devices * 1e6,
        f"0/{updated}/{devices - updated}",
        len(written),
    )


def write(args: argparse.Namespace) -> None:
    runs: list[Run] = []
    with private_server() as server:
        for rep in range(args.repeat):
            for history in (True, False) if rep % 2 == 0 else (False, True):
                run = _write_arm(server, args.devices, history, rep)
                runs.append(run)
                print(
                    f"  rep {rep} history {'on ' if history else 'off'}: {run.per_s:,.0f} dev/s, "
                    f"{run.change_rows} change rows",
                    flush=True,
                )
    _report(
        runs,
        f"Re-upsert of {args.devices:,} devices with 10 % changed, the write path alone "
        "(upsert_devices, 1,000-row batches) into a private Postgres; medians of alternating runs",
    )


# -- the device page at 10M rows -------------------------------------------------------------

ORG, OTHER_ORG, INTEGRATION = "bench-org", "bench-other", "bench-int"


def _fill(url: str, rows: int, devices: int) -> None:
    from sync_pipelines.store.database import Store
    from sync_pipelines.store.integrations import Integration
    from sync_pipelines.store.migrations import migrate
    from sync_pipelines.sync.integration_config import register_integration

    store = Store(url)
    migrate(store)
    os.environ.setdefault("BENCH_GOLIOTH_KEY", "bench-emulator-key")
    for org, iid in ((ORG, INTEGRATION), (OTHER_ORG, "bench-other-int")):
        register_integration(
            store,
            Integration(
                integration_id=iid,
                organization_id=org,
                provider="golioth",
                name=iid,
                settings={"base_url": "http://127.0.0.1:9", "project_id": "p"},
                secret_refs={"api_key": "BENCH_GOLIOTH_KEY"},
            ),
        )
    store.dispose()
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO devices (organization_id, integration_id, external_id, name, hardware_ids, "
            "tags, status, attributes, content_hash, created_at, updated_at) "
            f"SELECT '{ORG}', '{INTEGRATION}', 'dev-' || lpad(g::text, 7, '0'), 'device ' || g, "
            "'[]', '[]', 'online', '{\"fw\": \"1.0\"}', md5(g::text), now(), now() "
            f"FROM generate_series(0, {devices - 1}) g"
        )
        # the other organization's history: the same device ids, a tenant must not see them
        chunk = 1_000_000
        for start in range(0, rows, chunk):
            count = min(chunk, rows - start)
            conn.execute(
                "INSERT INTO device_changes (organization_id, integration_id, device_id, at, kind, "
                "changes, source, run_id, request_id) "
                "SELECT CASE WHEN mod(g / %(devices)s, 10) = 9 THEN %(other)s ELSE %(org)s END, "
                "CASE WHEN mod(g / %(devices)s, 10) = 9 THEN 'bench-other-int' ELSE %(iid)s END, "
                "'dev-' || lpad(mod(g, %(devices)s)::text, 7, '0'), "
                "now() - (g::double precision / %(rows)s) * interval '89 days', 'updated', "
                "jsonb_build_object('attributes.fw', jsonb_build_array('1.' || mod(g, 7), "
                "'1.' || (mod(g, 7) + 1)), 'name', jsonb_build_array('a', 'b')), 'sync', "
                "'run-' || (g / %(devices)s), 'req-' || g "
                "FROM generate_series(%(lo)s, %(hi)s) g",
                {
                    "org": ORG,
                    "other": OTHER_ORG,
                    "iid": INTEGRATION,
                    "devices": devices,
                    "rows": rows,
                    "lo": start,
                    "hi": start + count - 1,
                },
            )
            print(
                f"  filled {start + count:,} rows ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        conn.execute("VACUUM ANALYZE device_changes")
        conn.execute("VACUUM ANALYZE devices")
        total = conn.execute("SELECT count(*) FROM device_changes").fetchone()[0]  # type: ignore[index]
        size = conn.execute(
            "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) "
            "FROM pg_inherits WHERE inhparent = 'device_changes'::regclass"
        ).fetchone()[0]  # type: ignore[index]
    print(
        f"device_changes: {total:,} rows, {size} with indexes, filled in "
        f"{time.perf_counter() - started:.0f} s"
    )


def _timed(client: httpx.Client, path: str, params: dict | None = None) -> float:
    started = time.perf_counter()
    response = client.get(path, params=params)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(round(0.95 * len(ordered))) - 1)]


def page(args: argparse.Namespace) -> None:
    from sync_pipelines_peers.emulators.server import EmulatorServer

    from sync_pipelines.console.server import create_console_server
    from sync_pipelines.store.database import Store

    admin_token, tenant_token = "admin-" + "a" * 32, "tenant-" + "b" * 32
    environ = {
        "SYNC_CONSOLE_TOKEN": admin_token,
        "SYNC_CONSOLE_TENANT_TOKENS": f"{ORG}={tenant_token}",
    }
    with private_server() as server, fresh_database(server) as url:
        _fill(url, args.rows, args.devices)
        store = Store(url)
        rng = random.Random(7)
        picks = [f"dev-{rng.randrange(args.devices):07d}" for _ in range(args.requests)]
        results = []
        with EmulatorServer(create_console_server(store, environ=environ)) as console:
            for who, token in (("all organizations", admin_token), ("tenant (RLS)", tenant_token)):
                with httpx.Client(
                    base_url=f"{console.url}/console",
                    headers={"authorization": f"Bearer {token}"},
                    timeout=60,
                ) as client:
                    base = f"/api/integrations/{INTEGRATION}/devices/"
                    _timed(client, base + picks[0])  # warm the pool and the caches once
                    first = [_timed(client, base + d) for d in picks]
                    deep = []
                    for d in picks:
                        cursor = None
                        for _ in range(2):  # to the third page's cursor
                            body = client.get(
                                base + d, params={"after": cursor} if cursor else None
                            ).json()
                            cursor = body["next_cursor"]
                        deep.append(_timed(client, base + d, {"after": cursor}))
                        assert len(body["history"]) == 50
                    results.append((who, first, deep))
        store.dispose()
    print(
        f"\nDevice page reads at {args.rows:,} device_changes rows ({args.devices:,} devices, 90 "
        f"days, monthly partitions), {args.requests} random devices each, through the console app"
    )
    print(f"{'operator':>18} {'read':>28} {'median ms':>9} {'p95 ms':>7} {'max ms':>7}")
    for who, first, deep in results:
        for label, values in (
            ("device page (+50 changes)", first),
            ("history page 3 (?after=)", deep),
        ):
            print(
                f"{who:>18} {label:>28} {statistics.median(values):>9.1f} {_p95(values):>7.1f} "
                f"{max(values):>7.1f}"
            )
    print(f"target: median <= 300 ms; load average {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("resync", help="sync devices/s with the history on and off")
    a.add_argument("--devices", type=int, default=100_000)
    a.add_argument("--repeat", type=int, default=3, help="runs of each arm (alternating)")
    w = sub.add_parser("write", help="the write path's devices/s with the history on and off")
    w.add_argument("--devices", type=int, default=100_000)
    w.add_argument("--repeat", type=int, default=5, help="runs of each arm (alternating)")
    b = sub.add_parser("page", help="the device page at 10M history rows")
    b.add_argument("--rows", type=int, default=10_000_000)
    b.add_argument("--devices", type=int, default=50_000)
    b.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    os.environ.update({**SYNC_ENV, "SYNC_LOG_LEVEL": "WARNING"})
    from sync_pipelines.observability.logging import configure_logging

    configure_logging()
    {"resync": resync, "write": write, "page": page}[args.command](args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
