"""The receiver as `sync-pipelines receiver` with two worker processes on one port (SQLite and
Postgres): deliveries on fresh connections land on either worker, each is stored once, and
`/metrics` — whichever worker answers it — counts the deliveries of both."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from sync_pipelines.store.webhook_events import list_events
from sync_pipelines_tests.webhook_support import new_signing_secret
from sync_pipelines_tests.webhooks.test_receiver_store_faults import Receiver, _deliver, _register

DELIVERIES = 40


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                if entry.isdigit() and int(stat.read().rpartition(")")[2].split()[1]) == pid:
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _accepted(metrics_text: str) -> float:
    lines = [
        line
        for line in metrics_text.splitlines()
        if line.startswith("sync_pipelines_webhook_events_received_total{")
        and 'outcome="accepted"' in line
        and 'provider="golioth"' in line
    ]
    assert len(lines) == 1, metrics_text[-3000:]
    return float(lines[0].rsplit(" ", 1)[1])


def test_two_workers_serve_one_port_and_metrics_count_both(store, tmp_path):
    _register(store.url)
    secret = new_signing_secret()
    metrics_dir = tmp_path / "metrics"  # not beside a SQLite store: its *.db files are read
    metrics_dir.mkdir()
    receiver = Receiver(
        store.url,
        secret,
        SYNC_RECEIVER_WORKERS="2",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),  # this receiver's counts only
    )
    try:
        assert receiver.first_health(within_s=30).status_code == 200
        statuses = []
        for n in range(DELIVERIES):
            with httpx.Client(base_url=receiver.client.base_url, timeout=30) as fresh:
                statuses.append(_deliver(fresh, secret, f"msg_{n}").status_code)
        assert statuses == [202] * DELIVERIES
        # the supervisor's children: the two workers (and multiprocessing's resource tracker)
        workers = [
            pid
            for pid in _children(receiver.proc.pid)
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(workers) == 2, workers
        for _ in range(4):  # each on a new connection: either worker may answer
            with httpx.Client(base_url=receiver.client.base_url, timeout=30) as fresh:
                assert _accepted(fresh.get("/metrics").text) == DELIVERIES
        with store.connect() as conn:
            assert len(list_events(conn, "org-a", "gw-fault")) == DELIVERIES
    finally:
        receiver.stop()
