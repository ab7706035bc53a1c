"""Webhook receiver throughput: durable signed deliveries/s, closed and open model.

The receiver (`run_receiver`: one uvicorn worker per core unless `--workers`) runs on a fresh
Postgres database in its own processes; senders in this process post Standard-Webhooks-signed
Golioth readings, each with a new `webhook-id`. Every 2xx is answered only after its event row
and activity row are committed (group commit; Postgres `synchronous_commit` as printed).

1. Closed model, at each `--levels` (default 8, 32, 128, 512 deliveries in flight): that many
   senders, one delivery at a time each, for `--seconds`; a sender answered 429 waits its
   `Retry-After`, as Standard Webhooks senders do. Printed per level: events/s, p50/p99 latency,
   receiver CPU per event (all its processes), 429s, and the share of the best level.
2. The per-commit ceiling of this Postgres, measured in the same run: single-row INSERT + COMMIT
   one after the other on one connection for 2 s.
3. Open model, at each `--open-rates` (fractions of the saturation rate, measured just before by
   a 5 s closed run at the best level, since the machine's load drifts; default 0.8 and 1.2):
   deliveries scheduled at a fixed rate whatever the answers, on a keep-alive pool of up
   to 1,024 connections (64 open before the clock starts), latency counted from the scheduled
   time; 429s retried after `Retry-After`. Printed: the rate offered, the rate served (2xx
   answered while deliveries were being offered), p50/p99, the backlog (scheduled, not yet answered 2xx) at
   its peak, the peak of deliveries at the receiver (sent, not answered: bounded by its in-flight
   limit), what was left when sending stopped and how long that took to drain.

The inbox row count must equal the 202s counted by the senders (checked at the end).

    .venv/bin/python bench/webhook_receiver.py --seconds 10
    .venv/bin/python bench/webhook_receiver.py --levels 32 --open-rates '' --client httpx
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field

import httpx
import psycopg
from bench_support import free_port, fresh_store_url

from sync_pipelines.figures import percentile
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.migrations import migrate
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines.webhooks.verification import standard_webhook_headers

SECRET_ENV = "BENCH_WEBHOOK_SECRET"
INTEGRATION = "bench-golioth"
WARM_CONNECTIONS = 64
#: the open model's sender opens at most this many connections; beyond, deliveries queue at the
#: sender (counted in their latency and in the backlog)
MAX_CONNECTIONS = 1024


def start_receiver(
    url: str, secret: str, port: int, workers: int | None = None
) -> subprocess.Popen:
    env = {**os.environ, SECRET_ENV: secret, "SYNC_LOG_LEVEL": "WARNING", "SYNC_LOG_FORMAT": "json"}
    if workers:
        env["SYNC_RECEIVER_WORKERS"] = str(workers)
    code = (
        "from sync_pipelines.webhooks.app import run_receiver; "
        f"run_receiver('127.0.0.1', {port}, database_url={url!r}, log_level='warning')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"receiver did not start: {proc.stderr.read().decode()[-2000:]}")


def delivery(secret: str, n: int, seq: int) -> tuple[bytes, dict[str, str]]:
    """A signed Golioth reading with a fresh webhook-id."""
    body = json.dumps({"temp": 20 + seq % 10, "seq": seq}).encode()
    headers = standard_webhook_headers(
        secret, f"msg_{n}_{seq}_{uuid.uuid4().hex[:8]}", int(time.time()), body
    )
    headers["ce-source"] = f"dev-{n}"
    return body, headers


@dataclass(frozen=True)
class Cpu:
    """CPU seconds so far: the receiver (its processes), the Postgres backends serving the bench's
    database (a backend that ended between two readings is left out), and this sender process."""

    receiver: float
    backends: dict[int, float]
    sender: float

    def __sub__(self, before: Cpu) -> Spent:
        postgres = sum(t - before.backends.get(pid, 0.0) for pid, t in self.backends.items())
        return Spent(self.receiver - before.receiver, postgres, self.sender - before.sender)


@dataclass(frozen=True)
class Spent:
    receiver: float
    postgres: float
    sender: float

    def per_event_ms(self, events: int) -> str:
        n = max(events, 1)
        return f"{self.receiver * 1000 / n:>5.2f} {self.postgres * 1000 / n:>5.2f} {self.sender * 1000 / n:>5.2f}"


def cpu_now(pid: int, database: str) -> Cpu:
    """From Linux /proc: the receiver is `pid` and its children (the worker processes); a
    Postgres backend names its database in its process title."""
    tick = os.sysconf("SC_CLK_TCK")
    receiver, backends = 0, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                comm, _, rest = stat.read().rpartition(")")
            fields = rest.split()
            ticks = int(fields[11]) + int(fields[12])
            if int(entry) == pid or int(fields[1]) == pid:  # fields[1]: the parent's pid
                receiver += ticks
            elif comm.endswith("(postgres"):
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    if f" {database} ".encode() in cmdline.read():
                        backends[int(entry)] = ticks / tick
        except OSError:  # gone meanwhile
            continue
    own = os.times()
    return Cpu(receiver / tick, backends, own.user + own.system)


async def send(
    url: str,
    secret: str,
    senders: int,
    seconds: float,
    client: str = "httpx",
) -> tuple[list[float], dict[int, int]]:
    """`senders` concurrent senders, each one request at a time on its own keep-alive connection."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds

    async def httpx_sender(http: httpx.AsyncClient, n: int) -> None:
        seq = 0
        while time.perf_counter() < deadline:
            seq += 1
            body, headers = delivery(secret, n, seq)
            started = time.perf_counter()
            response = await http.post(url, content=body, headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 429:  # a Standard Webhooks sender waits as told
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))

    async def raw_sender(n: int) -> None:
        """Plain HTTP/1.1 over asyncio streams: a sender that costs almost no CPU, so the
        receiver's own ceiling shows (httpx spends ~2 ms of CPU per request itself)."""
        parts = httpx.URL(url)
        reader, writer = await asyncio.open_connection(parts.host, parts.port)
        seq = 0
        while time.perf_counter() < deadline:
            seq += 1
            body, headers = delivery(secret, n, seq)
            head = f"POST {parts.raw_path.decode()} HTTP/1.1\r\nhost: {parts.host}:{parts.port}\r\n"
            head += f"content-length: {len(body)}\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in headers.items()
            )
            started = time.perf_counter()
            writer.write(head.encode() + b"\r\n" + body)
            status = int((await reader.readline()).split()[1])
            length, retry_after = 0, 1.0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
                elif name.lower() == b"retry-after":
                    retry_after = float(value)
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            if status == 429:  # a Standard Webhooks sender waits as told
                await asyncio.sleep(retry_after)
        writer.close()

    if client == "raw":
        await asyncio.gather(*(raw_sender(n) for n in range(senders)))
    else:
        limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
        async with httpx.AsyncClient(limits=limits, timeout=30) as http:
            await asyncio.gather(*(httpx_sender(http, n) for n in range(senders)))
    return latencies, statuses


@dataclass
class Level:
    """One closed-model run."""

    in_flight: int
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]
    cpu: Spent

    @property
    def accepted(self) -> int:
        return self.statuses.get(202, 0)

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds


def closed_level(
    endpoint: str, secret: str, in_flight: int, seconds: float, client: str, pid: int, db: str
) -> Level:
    cpu_before, started = cpu_now(pid, db), time.perf_counter()
    latencies, statuses = asyncio.run(send(endpoint, secret, in_flight, seconds, client))
    elapsed = time.perf_counter() - started
    return Level(in_flight, elapsed, latencies, statuses, cpu_now(pid, db) - cpu_before)


def commit_ceiling(url: str, seconds: float = 2.0) -> float:
    """Single-row INSERT + COMMIT, one after the other on one connection: commits/s."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_commit_ceiling (n int, at timestamptz)")
        conn.commit()
        commits, deadline = 0, time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            conn.execute("INSERT INTO bench_commit_ceiling VALUES (%s, now())", (commits,))
            conn.commit()
            commits += 1
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_commit_ceiling")
        conn.commit()
    return commits / elapsed


@dataclass
class OpenRun:
    rate: float
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    sent: int = 0
    peak_backlog: int = 0
    in_window: int = 0  # answered 2xx while deliveries were still being offered
    on_wire: int = 0  # sent to the receiver, not answered yet
    peak_on_wire: int = 0
    backlog_at_end: int = 0
    drained_s: float | None = None
    connections: int = 0
    cpu: Spent = Spent(0.0, 0.0, 0.0)
    saturation: float = 0.0


async def open_model(url: str, secret: str, rate: float, seconds: float) -> OpenRun:
    """Deliveries at a fixed rate (see the module docstring, 3.)."""
    run = OpenRun(rate, seconds)
    parts = httpx.URL(url)
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    waiting = 0  # scheduled, not answered 2xx yet: the backlog
    tasks: set[asyncio.Task] = set()

    async def connection() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if idle.empty() and run.connections < MAX_CONNECTIONS:
            run.connections += 1
            return await asyncio.open_connection(parts.host, parts.port)
        return await idle.get()  # all busy: the delivery waits at the sender (its clock runs)

    async def deliver(seq: int, scheduled: float) -> None:
        nonlocal waiting
        body, headers = delivery(secret, 0, seq)
        while True:
            reader, writer = await connection()
            run.on_wire += 1
            try:
                status, retry_after = await _exchange(reader, writer, parts, body, headers)
            except (ConnectionError, IndexError):  # an idle keep-alive closed by the receiver
                writer.close()
                reader, writer = await asyncio.open_connection(parts.host, parts.port)
                status, retry_after = await _exchange(reader, writer, parts, body, headers)
            finally:
                run.on_wire -= 1
            idle.put_nowait((reader, writer))
            run.statuses[status] = run.statuses.get(status, 0) + 1
            if status not in (429, 503):
                break
            await asyncio.sleep(retry_after)  # as a Standard Webhooks sender does
        answered = time.perf_counter()
        run.latencies.append((answered - scheduled) * 1000)
        run.in_window += answered < end
        waiting -= 1

    async def watch() -> None:
        while True:
            run.peak_backlog = max(run.peak_backlog, waiting)
            run.peak_on_wire = max(run.peak_on_wire, run.on_wire)
            await asyncio.sleep(0.05)

    # a sender's keep-alive pool, open before the clock starts (a fleet's senders do not open a
    # connection per delivery; more are opened when these are all busy, up to MAX_CONNECTIONS)
    for _ in range(WARM_CONNECTIONS):
        idle.put_nowait(await asyncio.open_connection(parts.host, parts.port))
        run.connections += 1
    watcher = asyncio.create_task(watch())
    started = time.perf_counter()
    end = started + seconds  # deliver() counts what is served before it
    while (now := time.perf_counter()) < end:
        due = int((now - started) * rate)
        while run.sent < due:
            waiting += 1
            task = asyncio.create_task(deliver(run.sent, started + run.sent / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            run.sent += 1
        await asyncio.sleep(0.001)
    run.backlog_at_end = waiting
    stopped = time.perf_counter()
    pending = set()
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=60)
    run.drained_s = None if pending else time.perf_counter() - stopped
    watcher.cancel()
    while not idle.empty():
        idle.get_nowait()[1].close()
    return run


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    parts: httpx.URL,
    body: bytes,
    headers: dict[str, str],
) -> tuple[int, float]:
    head = f"POST {parts.raw_path.decode()} HTTP/1.1\r\nhost: {parts.host}:{parts.port}\r\n"
    head += f"content-length: {len(body)}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    writer.write(head.encode() + b"\r\n" + body)
    status = int((await reader.readline()).split()[1])
    length, retry_after = 0, 1.0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
        elif name.lower() == b"retry-after":
            retry_after = float(value)
    await reader.readexactly(length)
    return status, retry_after


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--levels", default="8,32,128,512", help="deliveries in flight, closed model"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="per level and per open run")
    parser.add_argument(
        "--open-rates",
        default="0.8,1.2",
        help="open-model rates as fractions of the saturation rate ('' for none)",
    )
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument(
        "--client",
        choices=["httpx", "raw"],
        default="raw",
        help="closed model: a minimal asyncio HTTP/1.1 sender (cheap, default) or httpx",
    )
    args = parser.parse_args()
    levels = [int(n) for n in args.levels.split(",") if n]
    open_rates = [float(f) for f in args.open_rates.split(",") if f]

    url, drop = fresh_store_url("postgres", "sync_bench_wh")
    db = url.rsplit("/", 1)[1]
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    os.environ[SECRET_ENV] = secret
    store = Store(url)
    receiver = None
    results: list[Level] = []
    open_runs: list[OpenRun] = []
    remeasured: list[Level] = []
    load = [os.getloadavg()[0]]
    try:
        migrate(store)
        register_integration(
            store,
            Integration(
                INTEGRATION,
                "bench",
                "golioth",
                "bench",
                settings={
                    "base_url": "http://127.0.0.1:9",
                    "project_id": "p",
                    "webhook_auth": "standard_webhooks",
                },
                secret_refs={"webhook_secret": SECRET_ENV},
            ),
        )
        with store.connect() as conn:
            sync_commit = conn.exec_driver_sql("SHOW synchronous_commit").scalar()
            fsync = conn.exec_driver_sql("SHOW fsync").scalar()
        port = free_port()
        receiver = start_receiver(url, secret, port, args.workers)
        endpoint = f"http://127.0.0.1:{port}/webhooks/golioth/{INTEGRATION}"
        asyncio.run(send(endpoint, secret, 32, 2.0, args.client))  # warm-up
        with store.connect() as conn:
            warmup = conn.exec_driver_sql("SELECT count(*) FROM webhook_events").scalar()
        for in_flight in levels:
            results.append(
                closed_level(
                    endpoint, secret, in_flight, args.seconds, args.client, receiver.pid, db
                )
            )
            load.append(os.getloadavg()[0])
        ceiling = commit_ceiling(url)
        best = max(results, key=lambda r: r.rate) if results else None
        for fraction in open_rates:
            # the machine is shared: saturation measured again just before, at the best level
            again = closed_level(
                endpoint, secret, best.in_flight, 5.0, args.client, receiver.pid, db
            )
            remeasured.append(again)
            saturation = again.rate
            cpu_before = cpu_now(receiver.pid, db)
            run = asyncio.run(open_model(endpoint, secret, saturation * fraction, args.seconds))
            run.cpu, run.saturation = cpu_now(receiver.pid, db) - cpu_before, saturation
            open_runs.append(run)
            load.append(os.getloadavg()[0])
        with store.connect() as conn:
            stored = conn.exec_driver_sql("SELECT count(*) FROM webhook_events").scalar() - warmup
    finally:
        if receiver is not None:
            receiver.terminate()
            receiver.wait()
        store.dispose()
        drop()

    workers = args.workers or len(os.sched_getaffinity(0))
    best_rate = best.rate if best else 1.0
    print(
        f"\nwebhook receiver, Postgres (synchronous_commit={sync_commit}, fsync={fsync}), "
        f"{workers} uvicorn worker(s), {args.client} senders, {args.seconds:.0f} s a run; "
        f"load average (1 min) {' -> '.join(f'{x:.1f}' for x in load)} on {os.cpu_count()} cores"
    )
    print("\nclosed model (each sender one delivery at a time; 429 -> waits Retry-After)")
    print(
        f"  {'in flight':>9} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/ev rcv pg snd':>20} {'429s':>6} {'of best':>8}"
    )
    for r in results:
        print(
            f"  {r.in_flight:>9} {r.rate:>9,.0f} {percentile(r.latencies, 50):>8.1f} "
            f"{percentile(r.latencies, 99):>8.1f} {r.cpu.per_event_ms(r.accepted):>20} "
            f"{r.statuses.get(429, 0):>6} {r.rate / best_rate:>8.0%}"
        )
        other = {k: v for k, v in r.statuses.items() if k not in (202, 429)}
        if other:
            print(f"  {'':>9} other statuses: {other}")
    print(f"\nper-commit ceiling of this Postgres: {ceiling:,.0f} single-row commits/s one by one")
    if results:
        print(f"  best closed-model rate / commit ceiling: {best_rate / ceiling:.1f}x")
    if open_runs:
        print(
            "\nopen model (fixed arrival rate; latency from the scheduled time; 429 retried); "
            "saturation measured just before each: "
            + ", ".join(f"{o.saturation:,.0f}/s" for o in open_runs)
        )
        print(
            f"  {'offered/s':>9} {'served/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/ev rcv pg snd':>20} "
            f"{'429s':>6} {'peak backlog':>13} {'at receiver':>12} {'left at stop':>13} {'drained in':>11}"
        )
    for o in open_runs:
        accepted = o.statuses.get(202, 0)
        drained = f"{o.drained_s:.1f} s" if o.drained_s is not None else "no (60 s)"
        served = o.in_window / o.seconds
        print(
            f"  {o.rate:>9,.0f} {served:>9,.0f} {percentile(o.latencies, 50):>8.1f} "
            f"{percentile(o.latencies, 99):>8.1f} {o.cpu.per_event_ms(accepted):>20} "
            f"{o.statuses.get(429, 0):>6} {o.peak_backlog:>13} {o.peak_on_wire:>12} "
            f"{o.backlog_at_end:>13} {drained:>11}"
        )
        other = {k: v for k, v in o.statuses.items() if k not in (202, 429)}
        if other:
            print(f"  {'':>9} other statuses: {other}")
    accepted = sum(r.accepted for r in results + remeasured)
    accepted += sum(o.statuses.get(202, 0) for o in open_runs)
    print(f"\ninbox rows written: {stored}; 202s counted by the senders: {accepted}")
    if stored != accepted:
        raise SystemExit("inbox row count differs from the accepted count")


if __name__ == "__main__":
    main()
