"""`sync-pipelines retention`: purge rows past their retention now (what the daily Dagster job
does) and print how many went per table; `--dry-run` only counts."""

from __future__ import annotations

import json
import uuid

import click

from sync_pipelines.cli.context import open_store


@click.command("retention")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=None,
    help="Keep logs this many days (default: $SYNC_RETENTION_DAYS, else 90).",
)
@click.option(
    "--telemetry-days",
    type=click.IntRange(min=0),
    default=None,
    help="Keep telemetry this many days, 0 forever (default: $SYNC_TELEMETRY_RETENTION_DAYS, else 90).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be purged; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def retention(days: int | None, telemetry_days: int | None, dry_run: bool, as_json: bool) -> None:
    """Purge activity, sync, webhook, dead-letter, alert, check-result, run-failure and telemetry
    rows past their retention (webhook events stay 7 days at least; open work is never purged)."""
    from sync_pipelines.observability.activity import ActivityRecorder
    from sync_pipelines.store.retention import (
        RetentionConfigError,
        RetentionPolicy,
        purge_expired,
        retention_scope,
    )
    from sync_pipelines.sync.activity_sink import StoreActivitySink

    try:
        policy = RetentionPolicy.from_env(days=days, telemetry_days=telemetry_days)
    except RetentionConfigError as exc:
        raise click.ClickException(str(exc)) from None
    store = open_store(writes=True)
    recorder = ActivityRecorder(
        StoreActivitySink(store),
        retention_scope(run_id=f"cli-{uuid.uuid4()}", step_key="cli_retention", job_name="cli"),
    )
    report = purge_expired(store, policy, dry_run=dry_run, recorder=recorder)
    if as_json:
        click.echo(json.dumps(report.as_json()))
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{'table':<28} {verb:>12}  cutoff")
    for table in report.tables:
        cutoff = table.cutoff.isoformat(timespec="seconds") if table.cutoff else "kept forever"
        click.echo(f"{table.table:<28} {table.deleted:>12}  {cutoff}")
    click.echo(f"{'total':<28} {report.total_deleted:>12}")
    if report.partitions_dropped:
        dropped = "would drop" if dry_run else "dropped"
        click.echo(f"partitions {dropped}: {', '.join(report.partitions_dropped)}")
    if report.partitions_created:
        click.echo(f"partitions created: {', '.join(report.partitions_created)}")
