"""The ledger test's fixtures: one private PostgreSQL server for the module (it is restarted
mid-write, so never the shared one), a fresh schema per test, and one started peer per provider
wired to an integration whose secrets are in the environment (for in-process syncs and for the
CLI syncs that are killed).

Seeds: fixed per provider so CI is repeatable; LEDGER_SEED overrides them all and LEDGER_ROUNDS
the number of rounds (e.g. `LEDGER_SEED=7 LEDGER_ROUNDS=12` for a longer local run)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sync_pipelines_peers.emulators.server import EmulatorServer
from sync_pipelines_peers.launchers.registry import PEERS, new_peer

from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.migrations import migrate
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines.webhooks.app import create_receiver_app
from sync_pipelines.webhooks.verification import SHARED_SECRET
from sync_pipelines_tests.private_postgres import PrivatePostgres, running_private_postgres
from sync_pipelines_tests.webhook_support import new_shared_secret

from .ledger_peers import LEDGER_PEERS, LedgerPeer

#: CI's seeds, one per provider (printed by every run; LEDGER_SEED replaces them)
CI_SEEDS = {"aws_iot": 1701, "azure_iot": 1702, "golioth": 1703, "mqtt": 1704}
#: rounds per provider: four covers each disruption once (kill, 5xx, 429, Postgres restart)
DEFAULT_ROUNDS = 4
#: devices seeded at each peer (moto serves one shadow per call: AWS gets fewer to stay fast)
INVENTORY = {"aws_iot": 150, "azure_iot": 300, "golioth": 300, "mqtt": 300}
PAGE_SIZE = 50
ORG = "org-ledger"
SETTINGS = {
    "page_size": PAGE_SIZE,
    # fast client retries: a burst is retried (or exhausts the budget) in well under a second,
    # while a server's Retry-After is still honoured
    "retry_max_attempts": 4,
    "retry_base_backoff_s": 0.01,
    "retry_max_backoff_s": 0.05,
    "retry_jitter_s": 0.01,
    # dead letters due again at once, so the replay in the next round picks them up
    "dead_letter_backoff_s": 0.01,
    "dead_letter_backoff_max_s": 0.01,
    "request_timeout_s": 10.0,
}


@dataclass
class LedgerSetup:
    seed: int
    rounds: int
    store: Store
    private_pg: PrivatePostgres
    peer: LedgerPeer
    integration: Integration
    #: the environment a CLI sync needs: the store's URL and the integration's secrets
    env: dict[str, str]
    #: the real receiver on a loopback port, and the integration's webhook path and secret
    #: (None on MQTT, which has no webhooks)
    receiver: httpx.Client | None = None
    webhook_path: str = ""
    webhook_secret: str = ""


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    with running_private_postgres() as pg:
        yield pg


@pytest.fixture
def pg_store(private_pg: PrivatePostgres) -> Iterator[Store]:
    store = Store(private_pg.url)
    with store.transaction() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    migrate(store)
    yield store
    store.dispose()


@pytest.fixture(params=sorted(PEERS))
def ledger_setup(
    request: pytest.FixtureRequest,
    private_pg: PrivatePostgres,
    pg_store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LedgerSetup]:
    provider = request.param
    seed = int(os.environ.get("LEDGER_SEED") or CI_SEEDS[provider])
    rounds = int(os.environ.get("LEDGER_ROUNDS") or DEFAULT_ROUNDS)
    peer = new_peer(provider)
    peer.rate_limit_retry_after_s = 1.0  # honoured for real: one second per 429, not two
    peer.start()
    try:
        seeded = peer.seed(INVENTORY[provider])
        prefix = "LEDGER_" + provider.upper()
        secret_refs, secrets = peer.secret_env(prefix)
        webhooks = provider != "mqtt"
        webhook_settings = {}
        if webhooks:  # shared secret: Golioth, AWS IoT rules and Event Grid cannot sign
            secret_refs = {**secret_refs, "webhook_secret": prefix + "_WEBHOOK_SECRET"}
            secrets = {**secrets, prefix + "_WEBHOOK_SECRET": new_shared_secret()}
            webhook_settings = {"webhook_auth": SHARED_SECRET}
        for name, value in secrets.items():
            monkeypatch.setenv(name, value)
        integration = Integration(
            integration_id=f"{provider}-ledger",
            organization_id=ORG,
            provider=provider,
            name=f"{provider} ledger",
            settings={**peer.integration_settings(), **SETTINGS, **webhook_settings},
            secret_refs=secret_refs,
        )
        register_integration(pg_store, integration)
        env = {
            **os.environ,
            **secrets,
            "SYNC_DATABASE_URL": pg_store.url,
            "SYNC_LOG_FORMAT": "json",
            "SYNC_LOG_LEVEL": "WARNING",
        }
        print(f"\nledger {provider}: seed={seed} rounds={rounds} devices={len(seeded)}")
        setup = LedgerSetup(
            seed=seed,
            rounds=rounds,
            store=pg_store,
            private_pg=private_pg,
            peer=LEDGER_PEERS[provider](peer, len(seeded)),
            integration=integration,
            env=env,
        )
        if not webhooks:
            yield setup
            return
        with (
            EmulatorServer(create_receiver_app(pg_store)) as server,
            httpx.Client(base_url=server.url, timeout=30) as client,
        ):
            setup.receiver = client
            setup.webhook_path = f"/webhooks/{provider}/{integration.integration_id}"
            setup.webhook_secret = secrets[prefix + "_WEBHOOK_SECRET"]
            yield setup
    finally:
        peer.stop()
