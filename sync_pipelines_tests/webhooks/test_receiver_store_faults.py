"""The receiver (`sync-pipelines receiver`, a real process) against a store that is down or hung,
on a private PostgreSQL server: it starts with the store down and answers 503 + Retry-After
until the store answers, then serves without a restart; with a store that accepts connections
but never answers, `/health` still answers within 2 s while 50 deliveries wait."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.migrations import migrate
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines.webhooks.app import STORE_RETRY_S
from sync_pipelines.webhooks.verification import STANDARD_WEBHOOKS, standard_webhook_headers
from sync_pipelines_tests.private_postgres import PrivatePostgres
from sync_pipelines_tests.webhook_support import new_signing_secret

CLI = str(Path(sys.executable).with_name("sync-pipelines"))
SECRET_ENV = "TEST_FAULT_WEBHOOK_SECRET"


@pytest.fixture
def pg():
    server = PrivatePostgres()  # initialised, not started
    yield server
    server.destroy()


class Receiver:
    def __init__(self, database_url: str, secret: str, **extra_env: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
        env |= {SECRET_ENV: secret, "SYNC_LOG_LEVEL": "WARNING", **extra_env}
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [CLI, "receiver", "--port", str(self.port), "--database-url", database_url],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def first_health(self, within_s: float) -> httpx.Response:
        while time.monotonic() - self.started < within_s:
            assert self.proc.poll() is None, self.proc.stderr.read().decode()[-2000:]
            try:
                return self.client.get("/health")
            except httpx.TransportError:
                time.sleep(0.05)
        pytest.fail(f"no /health answer within {within_s} s of the start")

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(10)


def _register(url: str) -> None:
    store = Store(url)
    register_integration(
        store,
        Integration(
            integration_id="gw-fault",
            organization_id="org-a",
            provider="golioth",
            name="gw-fault",
            settings={
                "base_url": "http://127.0.0.1:9",
                "project_id": "p",
                "webhook_auth": STANDARD_WEBHOOKS,
            },
            secret_refs={"api_key": "UNUSED_KEY", "webhook_secret": SECRET_ENV},
        ),
    )
    store.dispose()


def _deliver(client: httpx.Client, secret: str, msg_id: str) -> httpx.Response:
    body = json.dumps({"temp": 1}).encode()
    headers = standard_webhook_headers(secret, msg_id, int(time.time()), body)
    return client.post("/webhooks/golioth/gw-fault", content=body, headers=headers)


def _serve_a_migrated_store(pg: PrivatePostgres) -> None:
    pg.start()
    store = Store(pg.url)
    migrate(store)
    store.dispose()
    _register(pg.url)


def _deliver_in_background(
    receiver: Receiver, secret: str, prefix: str, count: int, outcomes: list[int]
) -> list[threading.Thread]:
    """`count` deliveries, each from its own sender thread, started; their statuses go to
    `outcomes` as they are answered."""

    def deliver(n: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{receiver.port}", timeout=60) as c:
            outcomes.append(_deliver(c, secret, f"{prefix}_{n}").status_code)

    senders = [threading.Thread(target=deliver, args=(n,)) for n in range(count)]
    for sender in senders:
        sender.start()
    return senders


def test_it_starts_with_the_store_down_and_serves_once_it_answers_without_a_restart(pg):
    secret = new_signing_secret()
    receiver = Receiver(pg.url, secret)
    try:
        health = receiver.first_health(within_s=5.0)
        assert health.status_code == 503, health.text
        assert health.headers["retry-after"] == "5"
        assert health.json()["checks"]["store"]["status"] == "unhealthy"
        refused = _deliver(receiver.client, secret, "msg_early")
        assert (refused.status_code, refused.headers["retry-after"]) == (503, "5")
        assert refused.json()["error"] == "store_unavailable"

        pg.start()  # a new, empty database: the receiver migrates it when it answers
        deadline = time.monotonic() + 20
        while True:
            # 200 as soon as the store answers; its check healthy once a worker has migrated it
            # (another worker's /health can read the ledger while that is under way: degraded)
            health = receiver.client.get("/health")
            if (
                health.status_code == 200
                and health.json()["checks"]["store"]["status"] == "healthy"
            ):
                break
            assert time.monotonic() < deadline, health.text
            time.sleep(0.5)
        _register(pg.url)
        # each worker process asks the store again within STORE_RETRY_S of its last try: a
        # sender retrying a 503 is served within that, not after its Retry-After only
        deadline = time.monotonic() + STORE_RETRY_S + 2
        while (accepted := _deliver(receiver.client, secret, "msg_late")).status_code == 503:
            assert time.monotonic() < deadline, accepted.text
            time.sleep(0.2)
        assert accepted.status_code == 202, accepted.text
        assert receiver.proc.poll() is None  # the same process throughout
    finally:
        receiver.stop()


def test_health_answers_within_2_s_while_50_deliveries_wait_on_a_hung_store(pg):
    _serve_a_migrated_store(pg)
    secret = new_signing_secret()
    # all 50 admitted, whichever worker takes them (beyond the limit: 429 at once, the next test)
    receiver = Receiver(pg.url, secret, SYNC_RECEIVER_MAX_IN_FLIGHT="50")
    outcomes: list[int] = []
    try:
        assert receiver.first_health(within_s=30).json()["checks"]["store"]["status"] == "healthy"
        assert _deliver(receiver.client, secret, "msg_before").status_code == 202
        pg.freeze()  # accepts connections, answers nothing

        senders = _deliver_in_background(receiver, secret, "msg_hung", 50, outcomes)
        time.sleep(1.0)  # every delivery is in, waiting on the store
        assert outcomes == []
        asked = time.monotonic()
        health = receiver.client.get("/health")
        took = time.monotonic() - asked
        assert health.status_code == 503 and took < 2.0, (took, health.text)
        assert health.json()["checks"]["store"]["status"] == "unhealthy"
        assert receiver.client.get("/metrics").status_code == 200
        pg.thaw()
        for sender in senders:
            sender.join(60)
        # the waiting deliveries end in an answer the sender acts on: stored, or retry later
        assert len(outcomes) == 50 and set(outcomes) <= {202, 503}, outcomes
    finally:
        pg.thaw()
        receiver.stop()


def test_deliveries_beyond_the_in_flight_limit_are_a_429_at_once_not_a_wait(pg):
    _serve_a_migrated_store(pg)
    secret = new_signing_secret()
    # one process: the limit is per process, and which one a connection lands on is the kernel's
    receiver = Receiver(pg.url, secret, SYNC_RECEIVER_MAX_IN_FLIGHT="3", SYNC_RECEIVER_WORKERS="1")
    outcomes: list[int] = []
    try:
        assert receiver.first_health(within_s=30).json()["checks"]["store"]["status"] == "healthy"
        assert _deliver(receiver.client, secret, "msg_warm").status_code == 202
        pg.freeze()  # the three admitted deliveries wait on the store

        held = _deliver_in_background(receiver, secret, "msg_held", 3, outcomes)
        time.sleep(1.0)
        asked = time.monotonic()
        fourth = _deliver(receiver.client, secret, "msg_fourth")
        took = time.monotonic() - asked
        assert (fourth.status_code, fourth.headers["retry-after"]) == (429, "1"), fourth.text
        assert fourth.json()["error"] == "overloaded" and took < 1.0, took
        pg.thaw()
        for sender in held:
            sender.join(60)
        assert sorted(outcomes) == [202, 202, 202]
        # and with the load gone, the refused one is accepted when the sender retries it
        assert _deliver(receiver.client, secret, "msg_fourth").status_code == 202
    finally:
        pg.thaw()
        receiver.stop()
