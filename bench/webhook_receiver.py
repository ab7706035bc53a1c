"""Webhook receiver throughput: sustained signed deliveries/s with durable inbox inserts.

The receiver (uvicorn, one process) runs on a fresh Postgres database in its own process;
`--senders` concurrent httpx senders in this process post Standard-Webhooks-signed Golioth
readings, each with a new `webhook-id`, for `--seconds`; a sender answered 429 waits its
`Retry-After` before the next delivery, as Standard Webhooks senders do. Every accepted delivery is committed
(event row + activity row, one transaction, Postgres `synchronous_commit` as configured —
printed) before its 202. Printed: accepted events/s, p50/p95/p99 latency, and the inbox row
count, which must equal the accepted count.

    .venv/bin/python bench/webhook_receiver.py --senders 32 --seconds 10
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

import httpx
from bench_support import free_port, fresh_store_url

from sync_pipelines.figures import percentile
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.migrations import migrate
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines.webhooks.verification import standard_webhook_headers

SECRET_ENV = "BENCH_WEBHOOK_SECRET"
INTEGRATION = "bench-golioth"


def start_receiver(url: str, secret: str, port: int) -> subprocess.Popen:
    env = {**os.environ, SECRET_ENV: secret, "SYNC_LOG_LEVEL": "WARNING", "SYNC_LOG_FORMAT": "json"}
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


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds so far of a process and its children (the receiver's worker
    processes), from Linux /proc."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(entry) == pid or int(fields[1]) == pid:  # fields[1]: the parent's pid
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--client",
        choices=["httpx", "raw"],
        default="httpx",
        help="httpx.AsyncClient, or a minimal asyncio HTTP/1.1 sender (cheaper)",
    )
    args = parser.parse_args()

    url, drop = fresh_store_url("postgres", "sync_bench_wh")
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    os.environ[SECRET_ENV] = secret
    store = Store(url)
    receiver = None
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
        receiver = start_receiver(url, secret, port)
        endpoint = f"http://127.0.0.1:{port}/webhooks/golioth/{INTEGRATION}"
        asyncio.run(
            send(endpoint, secret, args.senders, 1.0, args.client)
        )  # warm-up (connections, caches)
        with store.connect() as conn:
            warmup = conn.exec_driver_sql("SELECT count(*) FROM webhook_events").scalar()
        cpu_before, started = process_cpu_s(receiver.pid), time.perf_counter()
        latencies, statuses = asyncio.run(
            send(endpoint, secret, args.senders, args.seconds, args.client)
        )
        elapsed = time.perf_counter() - started
        receiver_cpu = process_cpu_s(receiver.pid) - cpu_before
        with store.connect() as conn:
            stored = conn.exec_driver_sql("SELECT count(*) FROM webhook_events").scalar() - warmup
            activity = conn.exec_driver_sql(
                "SELECT count(*) FROM integration_activity_log WHERE activity_type = 'webhook_received'"
            ).scalar()
    finally:
        if receiver is not None:
            receiver.terminate()
            receiver.wait()
        store.dispose()
        drop()

    accepted = statuses.get(202, 0)
    print(
        f"\nwebhook receiver, Postgres (synchronous_commit={sync_commit}, fsync={fsync}), "
        f"{args.senders} concurrent {args.client} senders, {elapsed:.1f} s, one uvicorn process"
    )
    print(
        f"  accepted (202): {accepted}   other statuses: { {k: v for k, v in statuses.items() if k != 202} }"
    )
    print(f"  sustained: {accepted / elapsed:,.0f} events/s accepted with durable inserts")
    print(
        f"  latency ms: p50 {percentile(latencies, 50):.1f}  p95 {percentile(latencies, 95):.1f}  "
        f"p99 {percentile(latencies, 99):.1f}"
    )
    print(
        f"  inbox rows written in the run: {stored} (== accepted: {stored == accepted}); "
        f"webhook_received activity rows in total: {activity}"
    )
    print(
        f"  receiver process CPU: {receiver_cpu:.1f} s = {receiver_cpu / elapsed:.0%} of one core, "
        f"{receiver_cpu * 1000 / max(accepted, 1):.2f} ms per accepted event; "
        f"machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    if stored != accepted:
        raise SystemExit("inbox row count differs from the accepted count")


if __name__ == "__main__":
    main()
