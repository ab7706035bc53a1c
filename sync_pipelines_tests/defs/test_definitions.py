"""The code location loads: every object is there, every asset is documented and owned, and
`dagster definitions validate` accepts the workspace the UI uses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from sync_pipelines.definitions import defs

REPO_ROOT = Path(__file__).resolve().parents[2]
ASSET_SPECS = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}


PROVIDERS = ("golioth", "aws_iot", "azure_iot", "mqtt")


def test_definitions_load_the_assets_of_every_provider():
    expected = {
        f"{p}_{a}" for p in PROVIDERS for a in ("devices", "device_states", "desired_exports")
    }
    assert set(ASSET_SPECS) == expected | {"mqtt_telemetry", "integration_health_report"}


@pytest.mark.parametrize(
    "asset", sorted(a for a in ASSET_SPECS if a != "integration_health_report")
)
def test_every_provider_asset_has_a_description_group_owners_and_kinds(asset):
    spec = ASSET_SPECS[asset]
    assert spec.description and spec.description.strip()
    provider = next(p for p in PROVIDERS if asset.startswith(f"{p}_"))
    assert spec.group_name == provider
    assert spec.tags.get("provider") == provider
    assert spec.owners
    assert spec.kinds


@pytest.mark.parametrize("provider", PROVIDERS)
def test_states_depend_on_devices_and_exports_on_states(provider):
    deps = {dep.asset_key for dep in ASSET_SPECS[f"{provider}_device_states"].deps}
    assert deps == {dg.AssetKey(f"{provider}_devices")}
    deps = {dep.asset_key for dep in ASSET_SPECS[f"{provider}_desired_exports"].deps}
    assert deps == {dg.AssetKey(f"{provider}_device_states")}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_provider_has_its_jobs_and_poll_schedule(provider):
    sync_job = defs.resolve_job_def(f"sync_{provider}_integration")
    assert sync_job.tags["provider"] == provider
    assert defs.resolve_job_def(f"export_{provider}_desired_states").tags["provider"] == provider
    assert (
        defs.resolve_schedule_def(f"{provider}_poll_schedule").job_name
        == f"sync_{provider}_integration"
    )


def test_the_connection_job_and_partitions_sensor_exist_by_name():
    assert defs.resolve_job_def("test_integration_connection").name == "test_integration_connection"
    assert defs.resolve_job_def("replay_dead_letters").name == "replay_dead_letters"
    assert defs.resolve_sensor_def("dead_letter_replay_sensor").name == "dead_letter_replay_sensor"
    assert defs.resolve_sensor_def("run_failure_recorder").name == "run_failure_recorder"
    assert defs.resolve_job_def("process_webhook_inbox").name == "process_webhook_inbox"
    assert defs.resolve_sensor_def("webhook_inbox_sensor").name == "webhook_inbox_sensor"
    assert (
        defs.resolve_sensor_def("integration_partitions_sensor").name
        == "integration_partitions_sensor"
    )


def test_the_monitoring_objects_exist_by_name():
    """Issue 5: checks per provider, the sensors that alert, the report and retention."""
    for provider in PROVIDERS:
        keys = {
            k.name
            for k in defs.resolve_asset_graph().asset_check_keys
            if k.asset_key.path == [f"{provider}_devices"]
        }
        assert {
            "integration_health",
            "last_syncs_complete",
            "call_failure_rate_below_threshold",
            "call_failure_rate_not_trending_up",
            "synced_within_freshness_sla",
        } <= keys
    for sensor in (
        "failed_or_stale_syncs_sensor",
        "alert_evaluation_sensor",
        "check_failure_alert_sensor",
        "alert_heartbeat_sensor",
    ):
        assert defs.resolve_sensor_def(sensor).name == sensor
    for job in ("purge_expired_rows", "report_integration_health"):
        assert defs.resolve_job_def(job).name == job
    for schedule in ("retention_schedule", "weekly_integration_health_summary"):
        assert defs.resolve_schedule_def(schedule).name == schedule
    report = ASSET_SPECS["integration_health_report"]
    assert report.group_name == "monitoring" and report.description


@pytest.mark.parametrize("provider", PROVIDERS)
def test_polled_assets_carry_a_freshness_policy_of_three_default_polls(provider):
    graph = defs.resolve_asset_graph()
    polled = [f"{provider}_devices", f"{provider}_device_states"]
    if provider == "mqtt":
        polled.append("mqtt_telemetry")
    for name in polled:
        policy = graph.get(dg.AssetKey(name)).freshness_policy
        assert policy is not None, name
        assert policy.fail_window.to_timedelta().total_seconds() == 900
        assert policy.warn_window.to_timedelta().total_seconds() == 600
    # pushed on demand, not polled: no freshness to keep
    assert graph.get(dg.AssetKey(f"{provider}_desired_exports")).freshness_policy is None


def test_dagster_definitions_validate_accepts_the_workspace(tmp_path):
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "SYNC_HOME": str(tmp_path / "sync_home"),
    }
    dagster = Path(sys.executable).with_name("dagster")
    completed = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
