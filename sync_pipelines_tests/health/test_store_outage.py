"""The store goes down under a running receiver (a private PostgreSQL server, stopped and
started again, or frozen so it hangs instead of refusing): `GET /health` answers 503 with the
store part unhealthy, `/metrics` still answers (store_up 0), the CLI exits 1, the URL's
password shows nowhere; once the server is back, 200. The clients' timeouts guard against a
hang."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.cli.health import health
from sync_pipelines.monitoring.service_health import HealthOptions
from sync_pipelines.store.database import Store
from sync_pipelines.store.migrations import migrate
from sync_pipelines.webhooks.app import create_receiver_app
from sync_pipelines_tests.private_postgres import PrivatePostgres, running_private_postgres

PASSWORD = f"pw-{secrets.token_hex(12)}"


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    with running_private_postgres() as pg:
        yield pg


def _store_up(metrics_text: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "sync_pipelines_store_up":
                return sample.value
    raise AssertionError("no sync_pipelines_store_up sample")


def test_health_is_503_while_the_store_is_down_and_200_once_it_is_back(private_pg):
    url = private_pg.url_with_password(PASSWORD)
    store = Store(url)
    migrate(store)
    app = create_receiver_app(store, health=HealthOptions(), environ={})
    with EmulatorServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        before = client.get("/health")
        private_pg.stop()
        try:
            down = client.get("/health")
            scrape = client.get("/metrics")
            cli = CliRunner().invoke(health, ["--database-url", url, "--json"])
            cli_table = CliRunner().invoke(health, ["--database-url", url])
        finally:
            private_pg.start()
        back = client.get("/health")
    store.dispose()

    assert (before.status_code, before.json()["status"]) == (200, "healthy")
    assert down.status_code == 503
    report = down.json()
    assert report["status"] == "unhealthy"
    assert report["checks"]["store"]["status"] == "unhealthy"
    assert "store unreachable" in report["checks"]["store"]["detail"]
    assert report["checks"]["integrations"]["status"] == "unknown"  # not checked without a store
    assert (scrape.status_code, _store_up(scrape.text)) == (200, 0)
    assert cli.exit_code == 1, cli.output
    assert json.loads(cli.stdout)["checks"]["store"]["status"] == "unhealthy"
    assert cli_table.exit_code == 1 and "UNHEALTHY" in cli_table.stdout
    for text in (down.text, scrape.text, cli.output, cli_table.output):
        assert PASSWORD not in text
    assert (back.status_code, back.json()["checks"]["store"]["status"]) == (200, "healthy")


def test_health_answers_503_while_the_store_hangs(private_pg):
    store = Store(private_pg.url)
    migrate(store)
    app = create_receiver_app(store, health=HealthOptions(store_timeout_s=1.0), environ={})
    with EmulatorServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        before = client.get("/health")  # the probe's pool now holds a connection
        private_pg.freeze()
        try:
            hung = client.get("/health")
            scrape = client.get("/metrics")
        finally:
            private_pg.thaw()
        back = client.get("/health")
    store.dispose()

    assert before.status_code == 200
    assert hung.status_code == 503
    assert hung.json()["checks"]["store"]["detail"] == (
        "store unreachable: the store did not answer within 1 s"
    )
    assert (scrape.status_code, _store_up(scrape.text)) == (200, 0)
    assert back.status_code == 200
