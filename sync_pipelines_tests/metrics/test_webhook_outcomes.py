"""Every delivery the receiver answers is counted by provider and outcome — the provider label
only ever a known provider, so junk paths cannot grow the label set. (This process's own
values: the receiver runs in the test's process here.)"""

from __future__ import annotations

import httpx
from prometheus_client import REGISTRY
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.monitoring.service_health import HealthOptions
from sync_pipelines.webhooks.app import create_receiver_app
from sync_pipelines_tests.webhook_support import register_webhook_integration

RECEIVED = "sync_pipelines_webhook_events_received_total"


def _received(provider: str, outcome: str) -> float:
    return REGISTRY.get_sample_value(RECEIVED, {"provider": provider, "outcome": outcome}) or 0.0


def test_deliveries_are_counted_by_outcome_and_junk_paths_as_provider_unknown(
    sqlite_store, monkeypatch
):
    _, secret = register_webhook_integration(
        sqlite_store, monkeypatch, provider="azure_iot", integration_id="az-o"
    )
    counted = [
        ("unknown", "not_found"),
        ("azure_iot", "not_found"),
        ("azure_iot", "bad_secret"),
        ("azure_iot", "malformed_payload"),
    ]
    before = {key: _received(*key) for key in counted}
    app = create_receiver_app(sqlite_store, health=HealthOptions())
    with EmulatorServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        statuses = [
            client.post(f"/webhooks/{'x' * 40}/no-such-integration", content=b"{}").status_code,
            client.post("/webhooks/azure_iot/no-such-integration", content=b"{}").status_code,
            client.post("/webhooks/azure_iot/az-o?code=wrong", content=b"[]").status_code,
            client.post(f"/webhooks/azure_iot/az-o?code={secret}", content=b"[{").status_code,
        ]
    assert statuses == [404, 404, 401, 400]
    assert {key: _received(*key) - before[key] for key in counted} == dict.fromkeys(counted, 1)
    families = {f.name for f in REGISTRY.collect()}
    assert "sync_pipelines_webhook_events_received" in families
    labels = {
        s.labels["provider"]
        for f in REGISTRY.collect()
        if f.name == "sync_pipelines_webhook_events_received"
        for s in f.samples
    }
    assert "x" * 40 not in labels
