"""deploy/dagster.yaml validates against Dagster's instance schema and builds a working
instance on the real PostgreSQL with the queue, monitoring and retry settings it declares."""

import shutil
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._core.launcher import DefaultRunLauncher
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from sync_pipelines.providers.registry import PROVIDERS
from sync_pipelines_tests.conftest import POSTGRES_ADMIN_URL
from sync_pipelines_tests.deploy.conftest import DEPLOY_YAML

EXPECTED_PROVIDER_LIMITS = {"golioth": 3, "aws_iot": 4, "azure_iot": 4, "mqtt": 2}


def test_yaml_validates_against_the_instance_schema(dagster_home: Path, dagster_pg_db: str) -> None:
    config, custom_class = dagster_instance_config(str(dagster_home))
    assert custom_class is None
    assert set(config) >= {
        "storage",
        "run_coordinator",
        "run_monitoring",
        "run_retries",
        "python_logs",
    }
    # the file names variables, never values
    text = DEPLOY_YAML.read_text()
    for var in (
        "DAGSTER_PG_USER",
        "DAGSTER_PG_PASSWORD",
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_DB",
        "DAGSTER_PG_PORT",
    ):
        assert f"env: {var}" in text


def test_instance_stores_everything_in_postgres(
    deploy_instance: dg.DagsterInstance, dagster_pg_db: str
) -> None:
    assert isinstance(deploy_instance.run_storage, PostgresRunStorage)
    assert isinstance(deploy_instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(deploy_instance.schedule_storage, PostgresScheduleStorage)
    assert deploy_instance.run_storage.postgres_url.startswith("postgresql+psycopg2://")
    assert deploy_instance.run_storage.postgres_url.endswith(f"/{dagster_pg_db}")

    # a round trip through the real database named by DAGSTER_PG_DB
    run = deploy_instance.create_run_for_job(_noop_job(), tags={"provider": "golioth"})
    assert deploy_instance.get_run_by_id(run.run_id).tags["provider"] == "golioth"
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/{dagster_pg_db}") as conn:
        tables = {
            row[0]
            for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        assert {"runs", "event_logs", "jobs", "job_ticks"} <= tables
        assert conn.execute(
            "SELECT count(*) FROM runs WHERE run_id = %s", (run.run_id,)
        ).fetchone() == (1,)


def test_queued_run_coordinator_with_provider_and_integration_limits(
    deploy_instance: dg.DagsterInstance,
) -> None:
    coordinator = deploy_instance.run_coordinator
    assert isinstance(coordinator, dg.QueuedRunCoordinator)
    queue = deploy_instance.get_concurrency_config().run_queue_config
    assert queue is not None
    assert queue.max_concurrent_runs == 20
    limits = queue.tag_concurrency_limits
    per_provider = {
        lim["value"]: lim["limit"]
        for lim in limits
        if lim["key"] == "provider" and isinstance(lim["value"], str)
    }
    assert per_provider == EXPECTED_PROVIDER_LIMITS
    # every registered provider has its own explicit limit
    assert set(per_provider) == set(PROVIDERS)
    catch_all = [
        lim for lim in limits if lim["key"] == "provider" and isinstance(lim["value"], dict)
    ]
    assert catch_all == [
        {"key": "provider", "value": {"applyLimitPerUniqueValue": True}, "limit": 4}
    ]
    # the catch-all is the ceiling of every explicit limit (a run waits while ANY matching limit is full)
    assert max(per_provider.values()) <= catch_all[0]["limit"]
    assert {
        "key": "dagster/partition",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    } in limits


def test_every_provider_pool_has_a_default_step_limit(deploy_instance: dg.DagsterInstance) -> None:
    from sync_pipelines.defs.provider_assets import PROVIDER_DEFS

    pools = deploy_instance.get_concurrency_config().pool_config
    assert pools.default_pool_limit == 4
    assert pools.pool_granularity is not None and pools.pool_granularity.value == "op"
    # every step calling a provider is in that provider's pool, so the limit applies to it
    for provider, defs in PROVIDER_DEFS.items():
        assert {asset.op.pool for asset in defs.assets} == {provider}


def test_run_monitoring_and_crash_only_retries(deploy_instance: dg.DagsterInstance) -> None:
    assert deploy_instance.run_monitoring_enabled
    assert deploy_instance.run_monitoring_max_runtime_seconds == 3600
    assert deploy_instance.run_monitoring_start_timeout_seconds == 300
    assert deploy_instance.run_monitoring_cancel_timeout_seconds == 300
    assert deploy_instance.run_monitoring_poll_interval_seconds == 60
    assert deploy_instance.run_retries_enabled
    assert deploy_instance.run_retries_max_retries == 2
    assert deploy_instance.run_retries_retry_on_asset_or_op_failure is False


def test_the_local_instance_monitors_runs_like_production(tmp_path: Path) -> None:
    # the yaml `make ui` uses, built in a home of its own (its SQLite storage lands there)
    shutil.copy(DEPLOY_YAML.parents[1] / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as local:
        assert local.run_monitoring_enabled
        assert local.run_monitoring_start_timeout_seconds == 300
        assert local.run_monitoring_cancel_timeout_seconds == 300
        assert local.run_monitoring_max_runtime_seconds == 3600
        assert local.run_monitoring_poll_interval_seconds == 60
        # why the poll schedules judge dead runs by their sync leases: this launcher cannot tell
        # Dagster a run worker died, so monitoring fails a dead STARTED run only at max runtime
        assert isinstance(local.run_launcher, DefaultRunLauncher)
        assert not local.run_launcher.supports_check_run_worker_health


def test_structured_logging_matches_the_local_instance(deploy_instance: dg.DagsterInstance) -> None:
    local, _ = dagster_instance_config(str(DEPLOY_YAML.parents[1]))
    assert deploy_instance.get_settings("python_logs") == local["python_logs"]
    formatters = {type(handler.formatter).__name__ for handler in deploy_instance.get_handlers()}
    assert "DagsterJsonFormatter" in formatters
    assert deploy_instance.managed_python_loggers == ["sync_pipelines"]


def test_a_missing_connection_variable_is_named(
    dagster_home: Path, dagster_pg_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_PG_HOST")
    with pytest.raises(DagsterInvalidConfigError, match="DAGSTER_PG_HOST"):
        dg.DagsterInstance.from_config(str(dagster_home))


def _noop_job() -> dg.JobDefinition:
    @dg.op
    def noop() -> None:
        return None

    @dg.job(tags={"provider": "golioth"})
    def deploy_smoke() -> None:
        noop()

    return deploy_smoke
