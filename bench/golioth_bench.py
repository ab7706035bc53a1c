"""What the Golioth benchmarks share: the emulator in its own process, an integration
registered against it, and one measured child process (wall time and its own peak RSS).

A measured command runs under a tiny wrapper process that spawns it, reaps it with `os.wait4`
and reports its wall time and peak RSS: the command's alone, never the benchmark's or the
emulator's (see `_MEASURE`).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

import httpx
import psycopg
from bench_support import free_port

KEY = "bench-emulator-key"
PROJECT = "demo-project"
ORGANIZATION = "bench"
BIN = os.path.dirname(sys.executable)
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))

#: prometheus-client's multiprocess files of the measured processes (one set per process, kept
#: until the directory is wiped): in a directory of the benchmark's, not the user's SYNC_HOME
_METRICS_DIR = tempfile.mkdtemp(prefix="sync-bench-metrics-")
atexit.register(shutil.rmtree, _METRICS_DIR, True)

#: the environment every measured sync gets unless a run says otherwise: the emulator's key
#: (by name, as a secret ref), JSON logs at the product's default level, the metrics directory
SYNC_ENV = {
    "BENCH_GOLIOTH_KEY": KEY,
    "SYNC_LOG_FORMAT": "json",
    "SYNC_LOG_LEVEL": "INFO",
    "PROMETHEUS_MULTIPROC_DIR": _METRICS_DIR,
    # the peers listen on loopback, which the service calls only where allowed (outbound.py)
    "SYNC_OUTBOUND_ALLOW": "127.0.0.0/8,::1",
}


def start_emulator(devices: int) -> tuple[subprocess.Popen, str]:
    """The Golioth emulator serving `devices` seeded devices: (process, base URL)."""
    port = free_port()
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


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


#: an inventory benchmark's settings: the device list alone, as dlt's source reads it (with the
#: default `state_source: list` the inventory lists each device's state too, and stores it)
INVENTORY_ONLY = {"state_source": "device"}


def register_golioth(
    store_url: str,
    emulator_url: str,
    integration_id: str | None = None,
    settings: dict[str, str] | None = None,
) -> str:
    """Register (and migrate the store for) an integration against the emulator; its id."""
    integration_id = integration_id or f"bench-{uuid.uuid4().hex[:6]}"
    extra = [a for k, v in (settings or {}).items() for a in ("--setting", f"{k}={v}")]
    subprocess.run(
        [
            f"{BIN}/sync-pipelines",
            "integrations",
            "add",
            "--organization",
            ORGANIZATION,
            "--id",
            integration_id,
            "--provider",
            "golioth",
            "--setting",
            f"base_url={emulator_url}",
            "--setting",
            f"project_id={PROJECT}",
            *extra,
            "--secret-env",
            "api_key=BENCH_GOLIOTH_KEY",
        ],
        env={**os.environ, **SYNC_ENV, "SYNC_DATABASE_URL": store_url},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return integration_id


@dataclass(frozen=True, slots=True)
class ChildRun:
    wall_s: float
    peak_rss_mib: float
    stdout: str
    stderr: str
    #: stopped by the benchmark's time limit (figures are up to that point)
    timed_out: bool = False
    #: time.monotonic() at spawn and at reaping (CLOCK_MONOTONIC: comparable with the child's)
    spawned_at: float = 0.0
    reaped_at: float = 0.0
    #: user + system CPU seconds of the command (and any children it reaped): steadier than
    #: wall time on a machine shared with other work
    cpu_s: float = 0.0

    def last_json(self) -> dict:
        """The last stdout line that is a JSON object (the command's figures)."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    continue
        return {}


#: Runs the measured command as its own child and reports (spawn, reap, ru_maxrss KiB, wait
#: status, CPU seconds user + system) on the fd it is given. A child's ru_maxrss starts from the RSS of the process that
#: forked it (the high-water mark survives exec), so the benchmark, with its drivers loaded,
#: would put a floor of ~50 MiB under every figure; this wrapper (`python -S`, ~9 MiB) does not.
#: SIGTERM to the wrapper kills the command and still reports its figures (a time limit).
_MEASURE = """
import os, signal, sys, time
fd = int(sys.argv[1])
os.set_inheritable(fd, False)
spawned = time.monotonic()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
_, status, usage = os.wait4(pid, 0)
reaped = time.monotonic()
cpu = usage.ru_utime + usage.ru_stime
os.write(fd, f"{spawned} {reaped} {usage.ru_maxrss} {status} {cpu}".encode())
os._exit(0)
"""


def run_child(
    argv: Sequence[str],
    env: dict[str, str],
    *,
    timeout_s: float | None = None,
    on_tick: Callable[[float], None] | None = None,
    tick_s: float = 15.0,
) -> ChildRun:
    """Run one process to completion (or to `timeout_s`, then kill it); raise with its stderr
    if it fails. Wall time and peak RSS are the process's own (see `_MEASURE`);
    `on_tick(elapsed_s)` is called every `tick_s` while it runs (progress)."""
    report_r, report_w = os.pipe()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-S", "-c", _MEASURE, str(report_w), *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(report_w,),
    )
    os.close(report_w)
    output: dict[str, bytes] = {}
    readers = [
        threading.Thread(target=_read_all, args=(stream, output, name), daemon=True)
        for name, stream in (("out", proc.stdout), ("err", proc.stderr))
    ]
    for reader in readers:  # a chatty child must not block on a full pipe
        reader.start()
    timed_out, next_tick = False, tick_s
    while proc.poll() is None:
        elapsed = time.monotonic() - started
        if timeout_s is not None and elapsed > timeout_s and not timed_out:
            timed_out = True
            proc.terminate()  # the wrapper kills the command, then reports
        if on_tick is not None and elapsed >= next_tick:
            next_tick += tick_s
            on_tick(elapsed)
        time.sleep(0.05)
    for reader in readers:
        reader.join()
    with os.fdopen(report_r, "rb") as report:
        measured = report.read().split()
    out = output.get("out", b"").decode(errors="replace")
    err = output.get("err", b"").decode(errors="replace")
    if len(measured) != 5:  # the wrapper itself failed: its error is on our stderr pipe
        raise RuntimeError(f"measuring {' '.join(argv)} failed:\n{err[-3000:]}")
    spawned_at, reaped_at, cpu_s = float(measured[0]), float(measured[1]), float(measured[4])
    maxrss_kib, status = int(measured[2]), int(measured[3])
    code = os.waitstatus_to_exitcode(status)
    if code != 0 and not timed_out:
        raise RuntimeError(f"{' '.join(argv)} exited {code}:\n{err[-3000:]}")
    return ChildRun(
        wall_s=reaped_at - spawned_at,
        peak_rss_mib=maxrss_kib / 1024,
        stdout=out,
        stderr=err,
        timed_out=timed_out,
        spawned_at=spawned_at,
        reaped_at=reaped_at,
        cpu_s=cpu_s,
    )


def _read_all(stream: IO[bytes], into: dict[str, bytes], name: str) -> None:
    into[name] = stream.read()


def run_project_sync(
    store_url: str,
    integration_id: str,
    env_extra: dict[str, str] | None = None,
    argv_prefix: Sequence[str] = (),
    **child: Any,
) -> ChildRun:
    """`sync-pipelines sync ID --stream devices` in a child process (the CLI as operators run
    it); `argv_prefix` wraps it (a profiler), `child` goes to `run_child`."""
    env = {**os.environ, **SYNC_ENV, "SYNC_DATABASE_URL": store_url, **(env_extra or {})}
    return run_child(
        [*argv_prefix, f"{BIN}/sync-pipelines", "sync", integration_id, "--stream", "devices"],
        env,
        **child,
    )


def sql(store_url: str, statement: str) -> list[tuple]:
    """One statement on the bench database (autocommit); its rows, if any."""
    with psycopg.connect(store_url, autocommit=True) as conn:
        cur = conn.execute(statement)
        return cur.fetchall() if cur.description else []


def count_devices(store_url: str, integration_id: str) -> int:
    return sql(
        store_url,
        f"SELECT count(*) FROM devices WHERE organization_id = '{ORGANIZATION}' "
        f"AND integration_id = '{integration_id}'",
    )[0][0]


def count_activity_rows(store_url: str, integration_id: str) -> int:
    return sql(
        store_url,
        f"SELECT count(*) FROM integration_activity_log WHERE organization_id = "
        f"'{ORGANIZATION}' AND integration_id = '{integration_id}'",
    )[0][0]


def truncate_project_tables(store_url: str) -> None:
    """An empty target for the next full initial load (the bench's own database only)."""
    sql(
        store_url,
        "TRUNCATE devices, integration_sync_state, integration_sync_log, "
        "integration_activity_log, dead_letters",
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"
