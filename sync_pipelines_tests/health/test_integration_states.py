"""Each enabled integration's state, from real syncs against the Golioth emulator: healthy
(synced), degraded (synced, but older than its freshness SLA), unhealthy (its key was revoked
after a good sync: no retry fixes that; or three auth failures in a row, never a success),
unknown (never synced). Scoped to its organization an unhealthy
integration makes the check unhealthy (CLI exit 1, HTTP 503); system-wide it counts as degraded
(exit 0, 200). No API key or other secret appears in any output."""

from __future__ import annotations

import json
import secrets

import httpx
import pytest
from click.testing import CliRunner
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.cli.health import health
from sync_pipelines.errors import AuthError
from sync_pipelines.monitoring.service_health import (
    HealthOptions,
    UnknownOrganization,
    check_service_health,
)
from sync_pipelines.store.integrations import Integration
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.webhooks.app import HEALTH_TOKEN_ENV, create_receiver_app

GOOD_ENV, FLAKY_ENV, WRONG_ENV = "TEST_HEALTH_KEY", "TEST_HEALTH_FLAKY_KEY", "TEST_HEALTH_WRONG_KEY"
WRONG_KEY = f"wrong-{secrets.token_hex(16)}"
ORG_A_STATES = {
    "gl-healthy": "healthy",
    "gl-degraded": "degraded",
    "gl-revoked": "unhealthy",
    "gl-unhealthy": "unhealthy",
    "gl-unknown": "unknown",
}


def _register(
    store, running, integration_id: str, organization_id: str, key_env: str, **settings
) -> None:
    register_integration(
        store,
        Integration(
            integration_id=integration_id,
            organization_id=organization_id,
            provider="golioth",
            name=integration_id,
            settings={
                "base_url": running.url,
                "project_id": running.emulator.config.project_id,
                **settings,
            },
            secret_refs={"api_key": key_env},
        ),
    )


def _sync(store, open_session, integration_id: str, *, fails: bool = False) -> None:
    if not fails:
        with open_session(store, integration_id) as session:
            assert sync_devices(session).status == "success"
        return
    with (
        pytest.raises(AuthError, match="HTTP 401"),
        open_session(store, integration_id) as session,
    ):
        sync_devices(session)


def seed_states(store, golioth_factory, monkeypatch, open_session):
    """org-a: one integration in each state; org-b: one healthy integration."""
    running = golioth_factory(device_count=5)
    monkeypatch.setenv(GOOD_ENV, running.api_key)
    monkeypatch.setenv(FLAKY_ENV, running.api_key)
    monkeypatch.setenv(WRONG_ENV, WRONG_KEY)
    _register(store, running, "gl-healthy", "org-a", GOOD_ENV)
    # its data is older than its SLA as soon as it lands
    _register(store, running, "gl-degraded", "org-a", GOOD_ENV, monitoring={"freshness_sla_s": 0})
    _register(store, running, "gl-revoked", "org-a", FLAKY_ENV)
    _register(store, running, "gl-unhealthy", "org-a", WRONG_ENV)
    _register(store, running, "gl-unknown", "org-a", GOOD_ENV)
    _register(store, running, "gl-b", "org-b", GOOD_ENV)
    _sync(store, open_session, "gl-healthy")
    _sync(store, open_session, "gl-b")
    _sync(store, open_session, "gl-degraded")
    _sync(store, open_session, "gl-revoked")
    monkeypatch.setenv(FLAKY_ENV, WRONG_KEY)  # its key was revoked since
    _sync(store, open_session, "gl-revoked", fails=True)
    for _ in range(3):
        _sync(store, open_session, "gl-unhealthy", fails=True)
    return running


def test_each_state_is_reported_with_its_last_success_attempt_and_error(
    store, golioth_factory, monkeypatch, open_session
):
    seed_states(store, golioth_factory, monkeypatch, open_session)
    scoped = check_service_health(store, HealthOptions(), organization_id="org-a")
    entries = {e["integration_id"]: e for e in scoped.integrations}
    assert {i: e["state"] for i, e in entries.items()} == ORG_A_STATES
    healthy, degraded, revoked = (
        entries["gl-healthy"],
        entries["gl-degraded"],
        entries["gl-revoked"],
    )
    unhealthy, unknown = entries["gl-unhealthy"], entries["gl-unknown"]
    assert (
        healthy["last_success_at"] and healthy["last_attempt_at"] and healthy["last_error"] is None
    )
    assert healthy["reasons"] == []
    assert degraded["last_success_at"] and degraded["last_error"] is None
    assert len(degraded["reasons"]) == 1 and degraded["reasons"][0].startswith(
        "last successful sync"
    )
    assert degraded["reasons"][0].endswith("(SLA 0 s): stale")
    assert revoked["last_success_at"] and revoked["last_error"].startswith("auth: ")
    assert len(revoked["reasons"]) == 1
    assert revoked["reasons"][0].startswith("the last sync failed on its auth (auth: ")
    assert revoked["reasons"][0].endswith("it will fail until that is fixed")
    assert unhealthy["last_success_at"] is None and unhealthy["last_attempt_at"]
    assert unhealthy["last_error"].startswith("auth: ")
    assert any(r.startswith("3 syncs failed in a row") for r in unhealthy["reasons"])
    assert unknown["reasons"] == ["never synced"]
    assert (unknown["last_success_at"], unknown["last_attempt_at"], unknown["last_error"]) == (
        None,
        None,
        None,
    )
    assert (scoped.status, scoped.http_status) == ("unhealthy", 503)
    integrations = scoped.check("integrations")
    assert (integrations.status, integrations.data["enabled"]) == ("unhealthy", 5)
    counts = ("healthy", "warning", "degraded", "unhealthy", "unknown")
    assert [integrations.data[s] for s in counts] == [1, 0, 1, 2, 1]

    # system-wide: every tenant's integrations; one tenant's broken key degrades the service
    everyone = check_service_health(store, HealthOptions())
    assert {e["integration_id"] for e in everyone.integrations} == {*ORG_A_STATES, "gl-b"}
    assert everyone.check("integrations").status == "unhealthy"
    assert (everyone.status, everyone.http_status) == ("degraded", 200)
    with pytest.raises(UnknownOrganization, match="org-nope"):
        check_service_health(store, HealthOptions(), organization_id="org-nope")


def test_the_cli_exits_1_only_when_unhealthy_in_json_or_as_a_table(
    sqlite_store, golioth_factory, monkeypatch, open_session
):
    running = seed_states(sqlite_store, golioth_factory, monkeypatch, open_session)
    url = ["--database-url", sqlite_store.url]
    runner = CliRunner()
    scoped_json = runner.invoke(health, [*url, "--organization", "org-a", "--json"])
    scoped_table = runner.invoke(health, [*url, "--organization", "org-a"])
    org_b = runner.invoke(health, [*url, "--organization", "org-b", "--json"])
    everyone = runner.invoke(health, url)
    nope = runner.invoke(health, [*url, "--organization", "org-nope"])

    assert scoped_json.exit_code == 1, scoped_json.output
    report = json.loads(scoped_json.stdout)
    assert report["status"] == "unhealthy" and report["organization_id"] == "org-a"
    assert {e["integration_id"]: e["state"] for e in report["integrations"]} == ORG_A_STATES
    parts = {"store", "dagster", "integrations", "webhook_inbox", "dead_letters", "alerting"}
    assert set(report["checks"]) == parts
    # the real alert path (sync_pipelines.alerts), with no channel configured here
    assert report["checks"]["alerting"]["status"] == "unknown"
    assert scoped_table.exit_code == 1
    table = scoped_table.stdout
    assert table.startswith("Health: UNHEALTHY (org-a;")
    for integration_id, state in ORG_A_STATES.items():
        row = next(line for line in table.splitlines() if line.strip().startswith(integration_id))
        assert f" {state} " in row
    assert "3 syncs failed in a row" in table
    assert (org_b.exit_code, json.loads(org_b.stdout)["status"]) == (0, "healthy")
    assert everyone.exit_code == 0 and everyone.stdout.startswith(
        "Health: DEGRADED (all organizations;"
    )
    assert nope.exit_code == 2 and "org-nope" in nope.output
    for result in (scoped_json, scoped_table, org_b, everyone, nope):
        assert running.api_key not in result.output and WRONG_KEY not in result.output


def test_the_endpoint_lists_integrations_only_to_a_caller_with_the_health_token(
    sqlite_store, golioth_factory, monkeypatch, open_session
):
    seed_states(sqlite_store, golioth_factory, monkeypatch, open_session)
    token = secrets.token_urlsafe(24)
    app = create_receiver_app(
        sqlite_store, health=HealthOptions(), environ={HEALTH_TOKEN_ENV: token}
    )
    with EmulatorServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        anyone = client.get("/health")
        wrong = client.get("/health", headers={"authorization": "Bearer not-the-token"})
        operator = client.get("/health", headers={"authorization": f"Bearer {token}"})
    assert anyone.status_code == wrong.status_code == operator.status_code == 200  # degraded
    for public in (anyone, wrong):
        body = public.json()
        assert body["status"] == "degraded" and "integrations" not in body
        assert body["checks"]["integrations"]["unhealthy"] == 2
        assert "gl-unhealthy" not in public.text and "org-a" not in public.text
    listed = {e["integration_id"]: e["state"] for e in operator.json()["integrations"]}
    assert listed == {**ORG_A_STATES, "gl-b": "healthy"}
    assert operator.headers["cache-control"] == "no-store"
