"""`GET /metrics` on the receiver: the Prometheus exposition of every process on the host.

The end-to-end test runs the way production does, each part in a process of its own sharing
one PROMETHEUS_MULTIPROC_DIR: the receiver (uvicorn), two syncs against the Golioth emulator
(`sync-pipelines sync`), and an inbox-processing worker; webhooks are delivered over HTTP.
The receiver's /metrics must add up what the other processes counted."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.clock import utc_now
from sync_pipelines.monitoring.service_health import HealthOptions
from sync_pipelines.observability.metrics import INSTRUMENTS, MULTIPROC_DIR_ENV, PROVIDERS
from sync_pipelines.providers.registry import PROVIDERS as REGISTERED_PROVIDERS
from sync_pipelines.store.integrations import Integration
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines.sync.webhook_processing import process_webhook_events
from sync_pipelines.webhooks.app import create_receiver_app
from sync_pipelines_tests.webhook_support import (
    insert_pending,
    new_shared_secret,
    register_webhook_integration,
)

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "sync-pipelines")
KEY_ENV, SECRET_ENV = "TEST_METRICS_GOLIOTH_KEY", "TEST_METRICS_WEBHOOK_SECRET"


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition, keyed by (name, labels); parsing proves the format."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(parsed: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float | None:
    return parsed.get((name, frozenset(labels.items())))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """The host's processes for the end-to-end test, all with one environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.receiver: subprocess.Popen | None = None
        self.url = ""

    def start_receiver(self, database_url: str, *, probe: str = "/metrics") -> None:
        """Start it and wait until `probe` answers."""
        port = _free_port()
        self.receiver = subprocess.Popen(
            [CLI, "receiver", "--port", str(port), "--database-url", database_url],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}{probe}", timeout=2)
                return
            except httpx.TransportError:
                if self.receiver.poll() is not None:
                    break
                time.sleep(0.1)
        self.stop()
        raise AssertionError(
            f"the receiver did not start: {self.receiver.stderr.read().decode()[-2000:]}"
        )

    def run(self, *args: str) -> str:
        done = subprocess.run(
            list(args), env=self.env, cwd=REPO, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, f"{args} failed: {done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        return done.stdout

    def stop(self) -> None:
        if self.receiver is not None and self.receiver.poll() is None:
            self.receiver.terminate()
            try:
                self.receiver.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.receiver.kill()
                self.receiver.wait()


@pytest.fixture
def processes(tmp_path) -> Iterator[Processes]:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update({MULTIPROC_DIR_ENV: str(tmp_path / "prometheus"), "SYNC_LOG_LEVEL": "WARNING"})
    (tmp_path / "prometheus").mkdir()
    running = Processes(env)
    yield running
    running.stop()


def documented_families() -> list[str]:
    """The metric names the Metrics table of docs/monitoring.md lists (`..._x` stands for
    `sync_pipelines_x`)."""
    text = (REPO / "docs" / "monitoring.md").read_text(encoding="utf-8")
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    names = []
    for line in section.splitlines():
        if line.startswith("| `"):
            names += re.findall(r"`([^`]+)`", line.split("|")[1])
    return [n.replace("..._", "sync_pipelines_") for n in names]


def _reading(secret: str, device: str | None, n: int) -> tuple[dict[str, str], bytes]:
    headers = {"x-webhook-secret": secret, "ce-id": f"reading-{n}-{uuid.uuid4().hex[:8]}"}
    if device:
        headers["ce-source"] = device
    return headers, f'{{"temp": {20 + n}}}'.encode()


def test_metrics_add_up_a_real_sync_and_webhook_delivery_across_processes(
    store, golioth_factory, processes
):
    running = golioth_factory(device_count=25)
    secret = new_shared_secret()
    integ = Integration(
        integration_id="gl-metrics",
        organization_id="org-m",
        provider="golioth",
        name="metrics",
        settings={
            "base_url": running.url,
            "project_id": running.emulator.config.project_id,
            "page_size": 10,
            "webhook_auth": "shared_secret",
        },
        secret_refs={"api_key": KEY_ENV, "webhook_secret": SECRET_ENV},
    )
    processes.env.update(
        {KEY_ENV: running.api_key, SECRET_ENV: secret, "SYNC_DATABASE_URL": store.url}
    )
    register_integration(store, integ)
    processes.start_receiver(store.url)

    # two syncs, each in a process of its own (the second finds nothing new)
    for _ in range(2):
        processes.run(CLI, "sync", "gl-metrics", "--stream", "devices")
    # deliveries: two readings, one naming no device (it will fail), the first again, a bad secret
    hook = f"{processes.url}/webhooks/golioth/gl-metrics"
    first = _reading(secret, "dev-1", 1)
    codes = [
        httpx.post(hook, headers=h, content=b, timeout=10).status_code
        for h, b in (first, _reading(secret, "dev-2", 2), _reading(secret, None, 3), first)
    ]
    wrong = httpx.post(hook, headers={"x-webhook-secret": "not-it"}, content=b"{}", timeout=10)
    assert (codes, wrong.status_code) == ([202, 202, 202, 200], 401)
    # an inbox-processing run in a third process: two applied, one dead-lettered
    processes.run(sys.executable, "-m", "sync_pipelines_tests.metrics.inbox_worker", "gl-metrics")
    # one more event that waits in the inbox
    headers, body = _reading(secret, "dev-3", 4)
    assert httpx.post(hook, headers=headers, content=body, timeout=10).status_code == 202

    scrape = httpx.get(f"{processes.url}/metrics", timeout=10)
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    m = samples(scrape.text)
    with store.connect() as conn:
        calls = conn.execute(
            sa.text(
                "SELECT count(*) FROM integration_activity_log WHERE organization_id = 'org-m' "
                "AND activity_type = 'http_request' AND status_code = 200"
            )
        ).scalar()
    assert calls >= 6  # three pages per sync
    golioth = {"provider": "golioth"}
    assert (
        value(m, "sync_pipelines_syncs_total", **golioth, stream="devices", status="success") == 2
    )
    assert value(m, "sync_pipelines_sync_duration_seconds_count", **golioth, stream="devices") == 2
    assert (
        value(
            m, "sync_pipelines_last_successful_sync_timestamp_seconds", **golioth, stream="devices"
        )
        > 0
    )
    assert (
        value(
            m,
            "sync_pipelines_provider_requests_total",
            **golioth,
            operation="GET",
            status_class="2xx",
        )
        == calls
    )
    assert (
        value(
            m,
            "sync_pipelines_provider_request_duration_seconds_count",
            **golioth,
            operation="GET",
            status_class="2xx",
        )
        == calls
    )
    received = "sync_pipelines_webhook_events_received_total"
    assert value(m, received, **golioth, outcome="accepted") == 4
    assert value(m, received, **golioth, outcome="duplicate") == 1
    assert value(m, received, **golioth, outcome="bad_secret") == 1
    processed = "sync_pipelines_webhook_events_processed_total"
    assert value(m, processed, **golioth, status="applied") == 2
    assert value(m, processed, **golioth, status="failed") == 1
    assert value(m, "sync_pipelines_webhook_processing_delay_seconds_count", **golioth) == 3
    assert (
        value(m, "sync_pipelines_syncs_total", **golioth, stream="webhook_events", status="partial")
        == 1
    )
    # queue depths counted in the store at scrape time
    assert value(m, "sync_pipelines_store_up") == 1
    assert value(m, "sync_pipelines_webhook_inbox_backlog", **golioth) == 1
    assert value(m, "sync_pipelines_webhook_inbox_oldest_pending_age_seconds", **golioth) >= 0
    assert value(m, "sync_pipelines_dead_letters", **golioth, status="pending") == 1
    assert value(m, "sync_pipelines_dead_letters", **golioth, status="quarantined") == 0
    # every process left its own files: the figures above are their sum
    pids = {p.stem.rsplit("_", 1)[-1] for p in Path(processes.env[MULTIPROC_DIR_ENV]).glob("*.db")}
    assert len(pids) >= 4  # receiver, two syncs, the inbox worker


def test_first_scrape_of_a_fresh_receiver_carries_every_documented_family(store, processes):
    processes.env["SYNC_DATABASE_URL"] = store.url
    processes.start_receiver(store.url, probe="/health")  # so the scrape below is its first

    scrape = httpx.get(f"{processes.url}/metrics", timeout=10)
    assert scrape.status_code == 200
    families = {line.split()[2] for line in scrape.text.splitlines() if line.startswith("# TYPE")}
    documented = documented_families()
    # the table names every instrument (a counter's family is exposed with `_total`)
    assert {
        f.name + ("_total" if f.type == "counter" else "")
        for instrument in INSTRUMENTS
        for f in instrument.describe()
    } <= set(documented)
    assert [name for name in documented if name not in families] == []
    # nothing happened yet: the series rate() and absent() rules read are there, at zero
    m = samples(scrape.text)
    for provider in PROVIDERS:
        labels = {"provider": provider}
        assert (
            value(m, "sync_pipelines_provider_errors_total", **labels, error_type="transient") == 0
        )
        assert (
            value(m, "sync_pipelines_syncs_total", **labels, stream="devices", status="failed") == 0
        )
        for status in ("applied", "ignored", "failed"):
            assert (
                value(m, "sync_pipelines_webhook_events_processed_total", **labels, status=status)
                == 0
            )
        assert (
            value(m, "sync_pipelines_webhook_events_received_total", **labels, outcome="accepted")
            == 0
        )
        assert value(m, "sync_pipelines_webhook_processing_delay_seconds_count", **labels) == 0
        assert value(m, "sync_pipelines_webhook_inbox_backlog", **labels) == 0
        assert value(m, "sync_pipelines_dead_letters", **labels, status="pending") == 0
    assert value(m, "sync_pipelines_store_up") == 1


def test_metrics_know_every_registered_provider():
    assert sorted(PROVIDERS) == sorted(REGISTERED_PROVIDERS)


def test_queue_depth_gauges_follow_the_stores_rows(store, monkeypatch, open_session):
    golioth, _ = register_webhook_integration(
        store, monkeypatch, provider="golioth", integration_id="gl-q"
    )
    azure, _ = register_webhook_integration(
        store, monkeypatch, provider="azure_iot", integration_id="az-q", organization_id="org-q"
    )
    insert_pending(store, golioth, event_type="t", payload={"temp": 1}, external_id=None)  # fails
    insert_pending(store, golioth, event_type="t", payload={"temp": 2}, external_id="d-1")
    with open_session(store, "gl-q") as session:
        process_webhook_events(session)
    now = utc_now()
    for age_s in (300, 200, 100):
        insert_pending(
            store,
            azure,
            event_type="Microsoft.Devices.DeviceConnected",
            payload={"age": age_s},
            external_id="a",
            received_at=now - timedelta(seconds=age_s),
        )
    with store.transaction() as conn:  # one golioth letter waits for an operator
        conn.execute(
            sa.text("UPDATE dead_letters SET status = 'quarantined' WHERE integration_id = 'gl-q'")
        )
    app = create_receiver_app(store, health=HealthOptions(), environ={})
    with EmulatorServer(app) as server:
        scrape = httpx.get(
            f"{server.url}/metrics",
            headers={"accept": "application/openmetrics-text; version=1.0.0"},
            timeout=10,
        )
    assert scrape.headers["content-type"].startswith("application/openmetrics-text")
    m = {
        (s.name, frozenset(s.labels.items())): s.value
        for f in openmetrics_families(scrape.text)
        for s in f.samples
    }
    assert value(m, "sync_pipelines_webhook_inbox_backlog", provider="azure_iot") == 3
    # golioth: nothing waits in the inbox (both events were processed), one letter is quarantined
    assert value(m, "sync_pipelines_webhook_inbox_backlog", provider="golioth") == 0
    assert value(m, "sync_pipelines_dead_letters", provider="golioth", status="quarantined") == 1
    assert value(m, "sync_pipelines_dead_letters", provider="golioth", status="pending") == 0
    # the oldest of the three (300 s old when inserted), not the next one (200 s)
    age = value(m, "sync_pipelines_webhook_inbox_oldest_pending_age_seconds", provider="azure_iot")
    assert 300 <= age < 400
    assert value(m, "sync_pipelines_store_up") == 1
