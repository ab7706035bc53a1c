"""The Dagster part of the health check, on a real instance in a temporary DAGSTER_HOME: its
daemons' heartbeats (written through the instance, as the daemon writes them) decide running
or not; a daemon that is not running is degraded, unless the daemon is required."""

from __future__ import annotations

import time
from collections.abc import Iterator

import dagster as dg
import pytest
from dagster._daemon.types import DaemonHeartbeat
from dagster_shared.error import SerializableErrorInfo

from sync_pipelines.monitoring.service_health import HealthOptions, check_service_health


@pytest.fixture(scope="module")
def dagster_home(tmp_path_factory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("dagster_home")
    yield str(home)


@pytest.fixture
def instance(dagster_home) -> Iterator[dg.DagsterInstance]:
    instance = dg.DagsterInstance.from_config(dagster_home)
    instance.wipe_daemon_heartbeats()
    yield instance
    instance.dispose()


def _beat(instance: dg.DagsterInstance, *, age_s: float = 0.0, errors: bool = False) -> list[str]:
    """A heartbeat for every daemon type the instance requires; returns the types."""
    kinds = list(instance.get_required_daemon_types())
    failure = SerializableErrorInfo(message="sensor tick failed", stack=[], cls_name="Exception")
    for kind in kinds:
        instance.add_daemon_heartbeat(
            DaemonHeartbeat(time.time() - age_s, kind, "daemon-1", [failure] if errors else None)
        )
    return kinds


def _dagster(store, **options):
    # a generous deadline: the first check imports Dagster and opens the instance's storages
    report = check_service_health(store, HealthOptions(dagster_timeout_s=120, **options))
    return report, report.check("dagster")


def test_without_dagster_home_the_instance_is_not_checked(sqlite_store):
    report, dagster = _dagster(sqlite_store, dagster_home=None)
    assert dagster.status == "unknown" and "DAGSTER_HOME is not set" in dagster.detail
    assert report.status == "healthy"  # unknown does not move the overall status


def test_a_relative_or_missing_dagster_home_is_unhealthy(sqlite_store, tmp_path):
    for home in ("relative/home", str(tmp_path / "missing")):
        report, dagster = _dagster(sqlite_store, dagster_home=home)
        assert dagster.status == "unhealthy" and repr(home) in dagster.detail
        assert report.http_status == 503


def test_no_daemon_running_is_degraded_unless_one_is_required(sqlite_store, dagster_home, instance):
    kinds = instance.get_required_daemon_types()
    report, dagster = _dagster(sqlite_store, dagster_home=dagster_home)
    assert (dagster.status, report.status, report.http_status) == ("degraded", "degraded", 200)
    assert dagster.detail.startswith("daemon not running")
    assert all(
        not d["running"] and d["last_heartbeat_at"] is None
        for d in dagster.data["daemons"].values()
    )
    assert set(dagster.data["daemons"]) == set(kinds)

    report, dagster = _dagster(sqlite_store, dagster_home=dagster_home, require_daemon=True)
    assert (dagster.status, report.status, report.http_status) == ("unhealthy", "unhealthy", 503)


def test_fresh_heartbeats_are_healthy_and_stale_ones_are_not(sqlite_store, dagster_home, instance):
    kinds = _beat(instance)
    report, dagster = _dagster(sqlite_store, dagster_home=dagster_home, require_daemon=True)
    assert (dagster.status, report.status) == ("healthy", "healthy")
    assert all(dagster.data["daemons"][k]["running"] for k in kinds)

    _beat(instance, age_s=3 * 3600)  # the daemon stopped hours ago
    _, dagster = _dagster(sqlite_store, dagster_home=dagster_home)
    assert dagster.status == "degraded" and all(k in dagster.detail for k in kinds)


def test_a_daemon_reporting_errors_is_degraded(sqlite_store, dagster_home, instance):
    _beat(instance, errors=True)
    _, dagster = _dagster(sqlite_store, dagster_home=dagster_home)
    assert dagster.status == "degraded" and dagster.detail.startswith("daemon reports errors")
