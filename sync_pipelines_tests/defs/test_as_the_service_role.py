"""The whole service as Postgres's `sync_app` role (sql/026): the CLI, the Dagster assets,
sensors and schedules, the receiver and the inbox, retention and alerts all do their work while
row-level security holds every transaction to one organization, and reach across tenants only
through the named functions. A path that forgot to say its organization would read nothing or
be refused a write here."""

from __future__ import annotations

import json
import shlex
from datetime import timedelta

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from starlette.testclient import TestClient

from sync_pipelines.cli import main
from sync_pipelines.clock import utc_now
from sync_pipelines.defs.alert_sensors import check_failure_alert_sensor
from sync_pipelines.defs.integration_checks import CHECKS_BY_PROVIDER, failed_or_stale_syncs_sensor
from sync_pipelines.defs.partitions import golioth_integrations
from sync_pipelines.defs.provider_assets import PROVIDER_DEFS
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.schedules import due_integration_ids, partitions_with_runs_in_flight
from sync_pipelines.defs.sensors import integration_partitions_sensor
from sync_pipelines.defs.webhook_inbox import process_webhook_inbox, webhook_inbox_sensor
from sync_pipelines.store.database import Store
from sync_pipelines.webhooks.app import create_receiver_app
from sync_pipelines.webhooks.verification import STANDARD_WEBHOOKS
from sync_pipelines_tests.conftest import GOLIOTH_KEY_ENV
from sync_pipelines_tests.webhook_support import register_webhook_integration, signed

ORGS = ("org-a", "org-b")


@pytest.fixture
def cli(service_role_url, monkeypatch, tmp_path):
    monkeypatch.setenv("SYNC_DATABASE_URL", service_role_url)
    monkeypatch.setenv("SYNC_HOME", str(tmp_path / "sync_home"))

    def run(command: str, *, exit_codes: tuple[int, ...] = (0,)) -> Result:
        result = CliRunner().invoke(main, ["--log-format", "json", *shlex.split(command)])
        assert result.exit_code in exit_codes, f"`{command}`: {result.output}"
        return result

    return run


def _printed(result: Result) -> list[dict]:
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    return [line for line in lines if "event" not in line]


def _devices(owner: Store) -> dict[str, int]:
    with owner.connect() as conn:
        return dict(
            conn.execute(
                sa.text("SELECT organization_id, count(*) FROM devices GROUP BY organization_id")
            ).all()
        )


@pytest.fixture
def two_tenants(cli, golioth, monkeypatch) -> None:
    """Each organization registers a Golioth integration and syncs it, through the CLI."""
    monkeypatch.setenv(GOLIOTH_KEY_ENV, golioth.api_key)
    for org in ORGS:
        cli(
            f"integrations add --organization {org} --id golioth-{org} --provider golioth "
            f"--name g --setting base_url={golioth.url} "
            f"--setting project_id={golioth.emulator.config.project_id} "
            f"--secret-env api_key={GOLIOTH_KEY_ENV}"
        )
        cli(f"sync golioth-{org} --stream all")


def test_the_cli_works_in_its_organization(two_tenants, cli, owner_store, golioth):
    assert _devices(owner_store) == {"org-a": 250, "org-b": 250}
    listed = cli("integrations list --organization org-a").output
    assert "golioth-org-a" in listed and "golioth-org-b" not in listed
    rows = _printed(cli("activity --organization org-a --integration golioth-org-a --json"))
    assert rows and {r["organization_id"] for r in rows} == {"org-a"}
    # `health` exits 1 when Dagster's part is unhealthy (no instance or daemon in a test): its
    # store views are what this test is about
    health = json.loads(cli("health --organization org-a --json", exit_codes=(0, 1)).output)
    assert health["checks"]["integrations"]["status"] == "healthy"
    assert [i["integration_id"] for i in health["integrations"]] == ["golioth-org-a"]
    everyone = json.loads(cli("health --json", exit_codes=(0, 1)).output)
    assert {i["integration_id"] for i in everyone["integrations"]} == {
        "golioth-org-a",
        "golioth-org-b",
    }
    report = json.loads(cli("report --all-organizations --json").output)
    assert {r["integration_id"] for r in report["integrations"]} == {
        "golioth-org-a",
        "golioth-org-b",
    }
    assert report["calls"] > 0 and report["p95_ms"] is not None
    cli("dead-letters list --organization org-a")
    cli("alerts evaluate")
    cli("alerts list")
    cli("retention --dry-run")
    cli("retention")
    cli("integrations disable --organization org-b --id golioth-org-b")
    cli("integrations remove --organization org-b --id golioth-org-b --yes")
    assert _devices(owner_store) == {"org-a": 250, "org-b": 250}  # history kept


def test_dagster_runs_sensors_and_schedules_as_the_service_role(
    two_tenants, service_store, owner_store, instance
):
    resources = {"store": SyncStoreResource(database_url=service_store.url)}
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        result = integration_partitions_sensor(context)
    added = {k for r in result.dynamic_partitions_requests for k in r.partition_keys}
    assert added == {"golioth-org-a", "golioth-org-b"}
    instance.add_dynamic_partitions(golioth_integrations.name, sorted(added))
    defs = PROVIDER_DEFS["golioth"]
    materialized = dg.materialize(
        [defs.devices, defs.device_states, CHECKS_BY_PROVIDER["golioth"]],
        partition_key="golioth-org-b",
        instance=instance,
        resources=resources,
    )
    assert materialized.success
    store_resource = resources["store"]
    # both synced a moment ago: nobody is due; no run in flight
    assert due_integration_ids(store_resource, "golioth") == []
    assert partitions_with_runs_in_flight(instance, "x", ["golioth-org-a"], store_resource) == set()
    for sensor in (failed_or_stale_syncs_sensor, check_failure_alert_sensor, webhook_inbox_sensor):
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            sensor(context)
    with owner_store.connect() as conn:
        checks = dict(
            conn.execute(
                sa.text(
                    "SELECT organization_id, count(*) FROM integration_check_results "
                    "GROUP BY organization_id"
                )
            ).all()
        )
    assert checks.get("org-b", 0) > 0


def test_a_webhook_is_received_and_applied_as_the_service_role(
    service_store, owner_store, monkeypatch, instance
):
    integration, secret = register_webhook_integration(
        service_store,
        monkeypatch,
        provider="golioth",
        integration_id="golioth-hooks",
        organization_id="org-b",
        scheme=STANDARD_WEBHOOKS,
    )
    body, headers = signed(secret, {"device_id": "dev-1", "data": {"temp": 21}})
    with TestClient(create_receiver_app(service_store)) as client:
        response = client.post("/webhooks/golioth/golioth-hooks", content=body, headers=headers)
        assert response.status_code == 202, response.text
        assert client.get("/metrics").status_code == 200
        assert client.get("/health").status_code in (200, 503)
    with dg.build_sensor_context(
        instance=instance, resources={"store": SyncStoreResource(database_url=service_store.url)}
    ) as context:
        planned = webhook_inbox_sensor(context)
    assert [r.tags["integration_id"] for r in planned.run_requests] == ["golioth-hooks"]
    result = process_webhook_inbox.execute_in_process(
        run_config=planned.run_requests[0].run_config,
        instance=instance,
        resources={"store": SyncStoreResource(database_url=service_store.url)},
    )
    assert result.success
    with owner_store.connect() as conn:
        status = conn.execute(sa.text("SELECT organization_id, status FROM webhook_events")).all()
    assert status == [("org-b", "processed")]
    assert utc_now() - timedelta(minutes=5) < utc_now()
