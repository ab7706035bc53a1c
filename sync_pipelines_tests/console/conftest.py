"""A store seeded with real sync runs for the console, on SQLite and Postgres: two organizations'
Golioth integrations synced by the sync engine against the emulator — in org-a one state read
fails once (503, retried), one record is poison (a dead letter) and a second integration's sync
fails on auth (a failed call and a failed sync), and a signed webhook delivery is received by the
real receiver and processed by an inbox run; org-b syncs cleanly. Seeded once per session and
backend; the tests only read it."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from sync_pipelines_peers.alert_sink import AlertSink
from sync_pipelines_peers.emulators.golioth import GoliothEmulator, GoliothEmulatorConfig
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.alerts.channels import SLACK, WEBHOOK, Channel
from sync_pipelines.alerts.incidents import clear_alert, raise_alert
from sync_pipelines.alerts.rules import CRITICAL, WARNING, Condition
from sync_pipelines.alerts.settings import AlertSettings
from sync_pipelines.clock import utc_now
from sync_pipelines.console.server import create_console_server
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.migrations import migrate
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.sync.session import RunContext, integration_session
from sync_pipelines.sync.webhook_processing import process_webhook_events
from sync_pipelines.webhooks.app import create_receiver_app
from sync_pipelines.webhooks.verification import STANDARD_WEBHOOKS, standard_webhook_headers
from sync_pipelines_tests.conftest import GOLIOTH_KEY_ENV, POSTGRES_ADMIN_URL
from sync_pipelines_tests.webhook_support import new_signing_secret, secret_env

ADMIN_TOKEN = "admin-" + "a" * 32
ADMIN_PASSWORD = "pw-" + "b" * 32
ORG_A_TOKEN = "tenant-a-" + "c" * 32
ORG_B_TOKEN = "tenant-b-" + "d" * 32
CONSOLE_ENV = {
    "SYNC_CONSOLE_TOKEN": ADMIN_TOKEN,
    "SYNC_CONSOLE_PASSWORD": ADMIN_PASSWORD,
    "SYNC_CONSOLE_TENANT_TOKENS": f"org-a={ORG_A_TOKEN},org-b={ORG_B_TOKEN}",
    "SYNC_DAGSTER_UI_URL": "http://dagster.example:3000",
}
DEVICE_COUNT = 8
POISON_INDEX = 3


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@dataclass(frozen=True)
class SeededStore:
    store: Store
    api_key: str
    #: the sync run of golioth-a (retry + dead letter) and of the failing golioth-bad
    sync_run: str
    failed_run: str
    #: the state read that failed once and was retried, and the device it read
    retried_request_id: str
    device_id: str
    org_b_run: str
    #: the webhook event (provider id) and the inbox run that processed it
    event_id: str
    webhook_run: str
    #: alert incidents: org-a's open one (golioth-bad, its slack delivery failed with a 500) and
    #: resolved one (golioth-a), org-b's open one (golioth-b)
    open_incident: str
    resolved_incident: str
    org_b_incident: str


def _integration(org: str, iid: str, url: str, project: str) -> Integration:
    return Integration(
        integration_id=iid,
        organization_id=org,
        provider="golioth",
        name=f"Golioth {iid}",
        settings={
            "base_url": url,
            "project_id": project,
            "page_size": 5,
            # the seeded faults hit a device's own state read
            "state_source": "device",
            "retry_base_backoff_s": 0.01,
            "retry_max_backoff_s": 0.05,
            "retry_jitter_s": 0,
            "webhook_auth": STANDARD_WEBHOOKS,
        },
        secret_refs={"api_key": GOLIOTH_KEY_ENV, "webhook_secret": secret_env(iid)},
    )


def _sync(store: Store, iid: str, run_id: str, *, states: bool = True) -> None:
    with integration_session(
        store, iid, RunContext(run_id=run_id, step_key="console_seed", job_name="seed")
    ) as s:
        sync_devices(s)
        if states:
            sync_device_states(s)


def seed(store: Store) -> SeededStore:
    """Real syncs through the engine into `store` (the emulator is stopped afterwards)."""
    api_key = f"gk-{uuid.uuid4().hex}"
    emulator = GoliothEmulator(GoliothEmulatorConfig(device_count=DEVICE_COUNT, api_key=api_key))
    project = emulator.config.project_id
    device_id = list(emulator.device_ids())[0]
    with pytest.MonkeyPatch.context() as mp, EmulatorServer(emulator.app) as server:
        mp.setenv(GOLIOTH_KEY_ENV, api_key)
        for org, iid in (("org-a", "golioth-a"), ("org-a", "golioth-bad"), ("org-b", "golioth-b")):
            mp.setenv(secret_env(iid), new_signing_secret())
            # golioth-a's is an operator's change: a config_change row on its timeline
            register_integration(
                store, _integration(org, iid, server.url, project), audit=iid == "golioth-a"
            )
        event_id, webhook_run = _deliver_webhook(store, "golioth-a", device_id)
        emulator.add_faults(
            {"kind": "server_error", "path": f"/devices/{device_id}/", "times": 1},
            {"kind": "poison_record", "device_index": POISON_INDEX},
        )
        sync_run = f"run-a-{uuid.uuid4().hex[:8]}"
        _sync(store, "golioth-a", sync_run)
        emulator.clear_faults()
        emulator.add_faults({"kind": "auth_failure"})
        failed_run = f"run-bad-{uuid.uuid4().hex[:8]}"
        with pytest.raises(Exception):  # noqa: B017 - whichever error the engine re-raises
            _sync(store, "golioth-bad", failed_run, states=False)
        emulator.clear_faults()
        org_b_run = f"run-b-{uuid.uuid4().hex[:8]}"
        _sync(store, "golioth-b", org_b_run)
    with store.connect() as conn:
        retried = conn.execute(
            sa.text(
                "SELECT request_id FROM integration_activity_log WHERE organization_id = 'org-a' "
                "AND run_id = :r AND status = 'retrying' LIMIT 1"
            ),
            {"r": sync_run},
        ).scalar_one()
    incidents = _raise_incidents(store)
    return SeededStore(
        store,
        api_key,
        sync_run,
        failed_run,
        retried,
        device_id,
        org_b_run,
        event_id,
        webhook_run,
        *incidents,
    )


def _raise_incidents(store: Store) -> tuple[str, str, str]:
    """Alerts raised (and one cleared) through the alert engine, delivered to a local sink: the
    webhook channel answers, the slack one fails with a 500 while org-a's outage is raised."""
    t0 = utc_now() - timedelta(hours=2)
    with AlertSink() as sink:
        settings = AlertSettings(
            channels=(
                Channel("webhook", WEBHOOK, sink.webhook_url),
                Channel("slack", SLACK, sink.slack_url + "?token=xoxb-secret"),
            ),
            cooldown_s=600,
            timeout_s=2,
            max_attempts=1,
        )

        def condition(org: str, iid: str, rule: str, severity: str, summary: str) -> Condition:
            return Condition(org, iid, rule, iid, severity, summary, {"failures": 3})

        resolved = condition(
            "org-a", "golioth-a", "error_rate", WARNING, "error rate 40% on golioth-a"
        )
        resolved_id = raise_alert(store, resolved, settings, now=t0).incident
        clear_alert(
            store,
            "org-a",
            resolved.dedupe_key,
            settings,
            now=t0 + timedelta(minutes=20),
            reason="error rate back under the threshold",
        )
        failing = condition(
            "org-a",
            "golioth-bad",
            "failure_streak",
            CRITICAL,
            "golioth-bad failed 3 syncs in a row",
        )
        sink.fail(500)
        raise_alert(store, failing, settings, now=t0 + timedelta(minutes=30))
        sink.recover()
        open_id = raise_alert(store, failing, settings, now=t0 + timedelta(minutes=45)).incident
        org_b = condition(
            "org-b", "golioth-b", "processing_delay", WARNING, "inbox of golioth-b 9 min behind"
        )
        org_b_id = raise_alert(store, org_b, settings, now=t0 + timedelta(minutes=50)).incident
    assert resolved_id and open_id and org_b_id
    return open_id.id, resolved_id.id, org_b_id.id


def _deliver_webhook(store: Store, iid: str, device_id: str) -> tuple[str, str]:
    """A signed Golioth delivery into the real receiver, then the inbox run that applies it."""
    event_id = f"msg_{uuid.uuid4().hex}"
    body = json.dumps({"temp": 21.5}).encode()
    headers = standard_webhook_headers(
        os.environ[secret_env(iid)], event_id, int(time.time()), body
    )
    headers.update({"ce-source": device_id, "ce-type": "io.golioth.data.v1/.s/env"})
    with EmulatorServer(create_receiver_app(store)) as receiver:
        response = httpx.post(
            f"{receiver.url}/webhooks/golioth/{iid}", content=body, headers=headers, timeout=10
        )
    assert response.status_code == 202, response.text
    webhook_run = f"run-webhook-{uuid.uuid4().hex[:8]}"
    with integration_session(
        store, iid, RunContext(run_id=webhook_run, step_key="inbox", job_name="seed")
    ) as s:
        assert process_webhook_events(s).counts.fetched == 1
    return event_id, webhook_run


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory, worker_id: str
) -> Iterator[SeededStore]:
    """Seeded once per backend for the session: on Postgres in a database of its own (the shared
    test database is truncated by other tests between modules)."""
    if request.param == "sqlite":
        store = Store(f"sqlite:///{tmp_path_factory.mktemp('console')}/store.db")
        migrate(store)
        yield seed(store)
        store.dispose()
        return
    name = f"sync_console_{worker_id}_{os.getpid()}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    store = Store(f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}")
    try:
        migrate(store)
        yield seed(store)
    finally:
        store.dispose()
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def console_server(seeded: SeededStore) -> Iterator[EmulatorServer]:
    """The console's own server (`sync-pipelines console`) on a loopback port."""
    with EmulatorServer(create_console_server(seeded.store, environ=CONSOLE_ENV)) as server:
        yield server


@pytest.fixture(scope="session")
def client(console_server: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{console_server.url}/console", timeout=30) as c:
        yield c
