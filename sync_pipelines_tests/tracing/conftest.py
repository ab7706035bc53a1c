"""One real causal chain to trace, on SQLite and Postgres: a signed Golioth webhook delivered to
the receiver over a socket, processed by the inbox run, then a sync of devices and states
against the Golioth emulator in which the webhook's device needs a retry (one 503) and another
device is a poison record (a dead letter)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import httpx
import pytest
import sqlalchemy as sa
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.webhook_events import list_events
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.sync.webhook_processing import process_webhook_events
from sync_pipelines.webhooks.app import create_receiver_app
from sync_pipelines.webhooks.verification import STANDARD_WEBHOOKS, standard_webhook_headers
from sync_pipelines_tests.conftest import GOLIOTH_KEY_ENV
from sync_pipelines_tests.webhook_support import new_signing_secret, secret_env

ORG = "org-trace"
INTEGRATION = "golioth-trace"
DEVICE_COUNT = 8
POISON_INDEX = 3  # on the first page, with the traced device


@dataclass(frozen=True)
class TracedChain:
    store: Store
    integration: Integration
    device_id: str
    poisoned_device_id: str
    event_id: str
    event_row_id: str
    webhook_run: str
    sync_run: str
    #: the inventory page call that last wrote the device row, and the state read (retried once)
    page_request_id: str
    state_request_id: str
    api_key: str
    webhook_secret: str


def _request_id_of(store: Store, table: str, external_id: str) -> str:
    with store.connect() as conn:
        return conn.execute(
            sa.text(
                f"SELECT last_request_id FROM {table} WHERE organization_id = :o AND external_id = :e"
            ),
            {"o": ORG, "e": external_id},
        ).scalar_one()


@pytest.fixture
def traced(store, golioth_factory, open_session, monkeypatch) -> TracedChain:
    golioth = golioth_factory(device_count=DEVICE_COUNT)
    ids = list(golioth.emulator.device_ids())
    device_id, poisoned = ids[0], ids[POISON_INDEX]
    webhook_secret = new_signing_secret()
    monkeypatch.setenv(GOLIOTH_KEY_ENV, golioth.api_key)
    monkeypatch.setenv(secret_env(INTEGRATION), webhook_secret)
    integration = Integration(
        integration_id=INTEGRATION,
        organization_id=ORG,
        provider="golioth",
        name="Golioth trace",
        settings={
            "base_url": golioth.url,
            "project_id": golioth.emulator.config.project_id,
            "page_size": 5,
            # the chain's faults hit per-device state reads
            "state_source": "device",
            "webhook_auth": STANDARD_WEBHOOKS,
            "retry_base_backoff_s": 0.01,
            "retry_max_backoff_s": 0.05,
            "retry_jitter_s": 0,
        },
        secret_refs={"api_key": GOLIOTH_KEY_ENV, "webhook_secret": secret_env(INTEGRATION)},
    )
    register_integration(store, integration)

    # 1. a signed delivery into the real receiver
    event_id = f"msg_{uuid.uuid4().hex}"
    body = json.dumps({"temp": 21.5}).encode()
    headers = standard_webhook_headers(webhook_secret, event_id, int(time.time()), body)
    headers.update({"ce-source": device_id, "ce-type": "io.golioth.data.v1/.s/env"})
    with EmulatorServer(create_receiver_app(store)) as receiver:
        response = httpx.post(
            f"{receiver.url}/webhooks/golioth/{INTEGRATION}",
            content=body,
            headers=headers,
            timeout=10,
        )
    assert response.status_code == 202, response.text

    # 2. the inbox run applies it
    webhook_run = f"run-webhook-{uuid.uuid4().hex[:8]}"
    with open_session(store, INTEGRATION, run_id=webhook_run) as session:
        assert process_webhook_events(session).counts.fetched == 1

    # 3. a sync: the device's state read fails once (503) and is retried; one record is poison
    golioth.emulator.add_faults(
        {"kind": "server_error", "path": f"/devices/{device_id}/", "times": 1},
        {"kind": "poison_record", "device_index": POISON_INDEX},
    )
    sync_run = f"run-sync-{uuid.uuid4().hex[:8]}"
    with open_session(store, INTEGRATION, run_id=sync_run) as session:
        assert sync_devices(session).status == "partial"
        sync_device_states(session)

    with store.connect() as conn:
        (event,) = list_events(conn, ORG, INTEGRATION)
    return TracedChain(
        store=store,
        integration=integration,
        device_id=device_id,
        poisoned_device_id=poisoned,
        event_id=event_id,
        event_row_id=event.id,
        webhook_run=webhook_run,
        sync_run=sync_run,
        page_request_id=_request_id_of(store, "devices", device_id),
        state_request_id=_request_id_of(store, "device_states", device_id),
        api_key=golioth.api_key,
        webhook_secret=webhook_secret,
    )
