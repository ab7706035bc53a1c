"""The conformance suite's fixtures: one started peer per registered provider (module scope,
so each provider's peer starts once per test worker), integrations wired to it, providers
built exactly as a sync builds them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sync_pipelines_peers.launchers.contract import ProviderPeer
from sync_pipelines_peers.launchers.registry import PEERS, new_peer

from sync_pipelines.observability.activity import ActivityRecorder, ActivityScope, MemorySink
from sync_pipelines.providers.contract import Provider
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import Integration
from sync_pipelines.sync.integration_config import (
    open_provider,
    register_integration,
    resolve_config,
)

#: devices every peer is seeded with: several pages at PAGE_SIZE, small enough to stay fast
INVENTORY_SIZE = 60
PAGE_SIZE = 15
ORG = "org-conformance"
#: the clients' retries with short backoffs (a server's Retry-After is still honoured)
FAST_RETRIES = {"retry_base_backoff_s": 0.01, "retry_max_backoff_s": 0.05, "retry_jitter_s": 0.01}


@pytest.fixture(scope="module", params=sorted(PEERS))
def peer(request: pytest.FixtureRequest) -> Iterator[ProviderPeer]:
    peer = new_peer(request.param)
    peer.start()
    try:
        peer.seed(INVENTORY_SIZE)
        yield peer
    finally:
        peer.stop()


@pytest.fixture(autouse=True)
def _faults_cleared(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "peer" in request.fixturenames:
        request.getfixturevalue("peer").clear_faults()


def integration_for(
    peer: ProviderPeer, integration_id: str, *, wrong_secret: bool = False, **settings: Any
) -> tuple[Integration, dict[str, str]]:
    prefix = "CONFORMANCE_" + integration_id.upper().replace("-", "_")
    secret_refs, env = peer.secret_env(prefix)
    if wrong_secret:
        env = peer.wrong_secret_env(prefix)
    integration = Integration(
        integration_id=integration_id,
        organization_id=ORG,
        provider=peer.provider,
        name=f"{peer.provider} conformance",
        settings={
            **peer.integration_settings(),
            "page_size": PAGE_SIZE,
            **FAST_RETRIES,
            **settings,
        },
        secret_refs=secret_refs,
    )
    return integration, env


@pytest.fixture
def recorder() -> ActivityRecorder:
    return ActivityRecorder(
        MemorySink(),
        ActivityScope(organization_id=ORG, integration_id="conformance"),
        flush_every=1,
    )


@pytest.fixture
def open_peer_provider(
    peer: ProviderPeer, recorder: ActivityRecorder
) -> Iterator[Callable[..., Provider]]:
    """`open_peer_provider(wrong_secret=False, **settings)` -> a provider on the peer (closed after)."""
    opened: list[Provider] = []

    def open_(*, wrong_secret: bool = False, **settings: Any) -> Provider:
        integration, env = integration_for(
            peer, f"{peer.provider}-provider", wrong_secret=wrong_secret, **settings
        )
        provider = open_provider(resolve_config(integration, env), recorder, timeout_s=10.0)
        opened.append(provider)
        return provider

    yield open_
    for provider in opened:
        provider.close()


@pytest.fixture
def register_peer_integration(
    peer: ProviderPeer, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Integration]:
    """Register an integration on the peer in a store; its secrets go in the environment."""

    def register(store: Store, integration_id: str | None = None, **settings: Any) -> Integration:
        integration, env = integration_for(
            peer, integration_id or f"{peer.provider}-sync", **settings
        )
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        register_integration(store, integration)
        return integration

    return register
