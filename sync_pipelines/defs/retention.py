"""Retention in Dagster: the `purge_expired_rows` job and the daily `retention_schedule`, which
keeps the activity log's partitions created ahead (Postgres) and starts the purge."""

import dagster as dg

from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.run_context import run_context_of
from sync_pipelines.defs.schedules import tick_time
from sync_pipelines.defs.sentry_hooks import SENTRY_HOOKS
from sync_pipelines.observability.activity import ActivityRecorder
from sync_pipelines.store.activity_partitions import ensure_activity_partitions
from sync_pipelines.store.retention import RetentionPolicy, purge_expired, retention_scope
from sync_pipelines.sync.activity_sink import StoreActivitySink

_OP = "purge_expired_rows_op"


class PurgeExpiredRowsConfig(dg.Config):
    """Unset days: `$SYNC_RETENTION_DAYS` / `$SYNC_TELEMETRY_RETENTION_DAYS`, else 90."""

    retention_days: int | None = None
    telemetry_retention_days: int | None = None
    dry_run: bool = False


@dg.op(
    description="Purge activity, sync, webhook, dead-letter, alert, check-result, run-failure and "
    "telemetry rows past their retention; on Postgres, drop the activity log's expired months."
)
def purge_expired_rows_op(
    context: dg.OpExecutionContext, config: PurgeExpiredRowsConfig, store: SyncStoreResource
) -> None:
    policy = RetentionPolicy.from_env(
        days=config.retention_days, telemetry_days=config.telemetry_retention_days
    )
    sync_store = store.get_store()
    run = run_context_of(context)
    recorder = ActivityRecorder(
        StoreActivitySink(sync_store),
        retention_scope(run_id=run.run_id, step_key=run.step_key, job_name=run.job_name),
    )
    report = purge_expired(sync_store, policy, dry_run=config.dry_run, recorder=recorder)
    context.add_output_metadata(
        {
            "dry_run": report.dry_run,
            "retention_days": policy.days,
            "telemetry_retention_days": policy.telemetry_days,
            "total_deleted": report.total_deleted,
            **{f"deleted_{table}": n for table, n in report.deleted.items()},
            "partitions_dropped": dg.MetadataValue.json(list(report.partitions_dropped)),
            "partitions_created": dg.MetadataValue.json(list(report.partitions_created)),
        }
    )
    verb = "would delete" if report.dry_run else "deleted"
    context.log.info(
        f"retention: {verb} {report.total_deleted} row(s): "
        + ", ".join(f"{t}={n}" for t, n in report.deleted.items() if n)
    )


@dg.job(
    description="Purge rows past their retention (config: retention_days, telemetry_retention_days, "
    "dry_run).",
    tags={"sync_pipelines/kind": "retention"},
    hooks=SENTRY_HOOKS,  # no integration session here to report a failure to Sentry
)
def purge_expired_rows() -> None:
    purge_expired_rows_op()


@dg.schedule(
    job=purge_expired_rows,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    description="Daily at 03:30 UTC: create the activity log's partitions ahead (Postgres), then "
    "purge expired rows.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def retention_schedule(
    context: dg.ScheduleEvaluationContext, store: SyncStoreResource
) -> dg.RunRequest:
    # Here as well as in the run: next month's partition exists even if runs cannot start.
    tick = tick_time(context)
    policy = RetentionPolicy.from_env()
    with store.get_store().transaction() as conn:
        created = ensure_activity_partitions(conn, now=tick, months_ahead=policy.partitions_ahead)
    if created:
        context.log.info(f"created activity partitions: {', '.join(created)}")
    return dg.RunRequest(run_key=f"retention:{tick.strftime('%Y-%m-%d')}")


#: for Definitions
RETENTION_JOBS = [purge_expired_rows]
RETENTION_SCHEDULES = [retention_schedule]
