"""`purge_expired_rows` (run in process against the real store) and the daily
`retention_schedule`, which creates the activity log's partitions ahead and starts the purge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import sqlalchemy as sa

from sync_pipelines.clock import utc_now
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.retention import (
    RETENTION_JOBS,
    RETENTION_SCHEDULES,
    purge_expired_rows,
    retention_schedule,
)
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.retention import RETENTION
from sync_pipelines_tests.retention.seeding import Seeded, remaining

_OP = "purge_expired_rows_op"


def _resources(store) -> dict:
    return {"store": SyncStoreResource(database_url=store.url)}


def _seed(store) -> Seeded:
    now = utc_now()
    with store.transaction() as conn:
        s = Seeded(conn)
        s.activity(now - timedelta(days=40), kept=False)
        s.activity(now - timedelta(days=1), kept=True)
        s.event_failure(now - timedelta(days=40), kept=False)
    return s


def test_the_job_purges_and_records_a_retention_activity_row(store, instance):
    s = _seed(store)

    result = purge_expired_rows.execute_in_process(
        run_config={"ops": {_OP: {"config": {"retention_days": 30}}}},
        instance=instance,
        resources=_resources(store),
    )

    assert result.success
    with store.connect() as conn:
        left = remaining(conn, "integration_activity_log")
        assert s.kept("integration_activity_log") <= left
        assert not s.gone("integration_activity_log") & left
        assert remaining(conn, "event_failures") == set()
        rows = activity_rows(conn, "_system", activity_type=RETENTION)
    assert len(rows) == 1
    assert (rows[0]["run_id"], rows[0]["status"]) == (result.run_id, "success")
    assert rows[0]["step_key"] == _OP
    assert rows[0]["metadata"]["retention_days"] == 30
    assert rows[0]["metadata"]["deleted"]["integration_activity_log"] == 1
    assert rows[0]["metadata"]["deleted"]["event_failures"] == 1
    output = next(e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT")
    figures = output.step_output_data.metadata
    assert figures["total_deleted"].value == 2
    assert figures["deleted_integration_activity_log"].value == 1


def test_a_dry_run_of_the_job_deletes_and_records_nothing(store, instance):
    s = _seed(store)

    result = purge_expired_rows.execute_in_process(
        run_config={"ops": {_OP: {"config": {"retention_days": 30, "dry_run": True}}}},
        instance=instance,
        resources=_resources(store),
    )

    assert result.success
    with store.connect() as conn:
        assert remaining(conn, "integration_activity_log") == set(
            s.expected["integration_activity_log"]
        )
        assert activity_rows(conn, "_system") == []


def test_the_job_refuses_an_unusable_retention_setting(store, instance):
    result = purge_expired_rows.execute_in_process(
        run_config={"ops": {_OP: {"config": {"retention_days": 0}}}},
        instance=instance,
        resources=_resources(store),
        raise_on_error=False,
    )

    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure.cause.cls_name == "RetentionConfigError"
    assert "retention days must be a whole number >= 1, got 0" in failure.cause.message


def test_the_schedule_creates_partitions_ahead_and_requests_one_run_per_day(store, instance):
    tick = datetime(2031, 11, 5, 3, 30, tzinfo=UTC)  # months no other test creates

    with dg.build_schedule_context(
        instance=instance, resources=_resources(store), scheduled_execution_time=tick
    ) as context:
        request = retention_schedule(context)

    assert isinstance(request, dg.RunRequest)
    assert request.run_key == "retention:2031-11-05"
    if store.is_postgres:
        with store.connect() as conn:
            children = set(
                conn.execute(
                    sa.text(
                        "SELECT inhrelid::regclass::text FROM pg_inherits "
                        "WHERE inhparent = 'integration_activity_log'::regclass"
                    )
                ).scalars()
            )
        assert {
            f"integration_activity_log_p{m}" for m in ("203111", "203112", "203201")
        } <= children


def test_the_schedule_runs_daily_at_0330_utc_and_starts_running():
    assert retention_schedule.cron_schedule == "30 3 * * *"
    assert retention_schedule.execution_timezone == "UTC"
    assert retention_schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert retention_schedule.job_name == purge_expired_rows.name


def test_the_retention_objects_load_into_definitions():
    defs = dg.Definitions(
        jobs=RETENTION_JOBS, schedules=RETENTION_SCHEDULES, resources={"store": SyncStoreResource()}
    )
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("purge_expired_rows").name == "purge_expired_rows"
    assert defs.resolve_schedule_def("retention_schedule").job_name == "purge_expired_rows"
