"""The integration-health report in Dagster: the `integration_health_report` asset (Markdown
table, headline figures, chart, and the report as a DataFrame — its `dagster/column_schema`, a
table and a CSV file — in its materialization metadata), the job that materializes it, a weekly summary schedule (Monday 08:00 UTC, last 7 days; running by default) and a daily
one (07:00 UTC, last 24 h; off by default)."""

from datetime import timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field

from sync_pipelines.clock import utc_now
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.sentry_hooks import SENTRY_HOOKS
from sync_pipelines.reports.chart import png_data_uri, write_chart
from sync_pipelines.reports.frames import health_frame
from sync_pipelines.reports.integration_report import (
    IntegrationHealthReport,
    build_integration_report,
    roll_up_for_report,
)
from sync_pipelines.reports.markdown import render_markdown
from sync_pipelines.store.call_hours import roll_up_organizations
from sync_pipelines.store.database import default_sqlite_path
from sync_pipelines.store.integrations import list_enabled_integrations

ASSET_NAME = "integration_health_report"


class IntegrationHealthReportConfig(dg.Config):
    organization_id: str | None = Field(
        default=None,
        description="Report on this organization only; unset: every organization (system-level).",
    )
    hours: float = Field(default=24.0, gt=0, description="The period: the last N hours.")


def reports_dir() -> Path:
    """Where report files go: `reports/` under SYNC_HOME (the embedded store's directory)."""
    return default_sqlite_path().parent / "reports"


def chart_path(report: IntegrationHealthReport) -> Path:
    return _report_file(report, "png")


def csv_path(report: IntegrationHealthReport) -> Path:
    return _report_file(report, "csv")


def _report_file(report: IntegrationHealthReport, suffix: str) -> Path:
    scope = report.organization_id or "all"
    stamp = report.generated_at.strftime("%Y%m%dT%H%M%SZ")
    return reports_dir() / f"integration_health_{scope}_{stamp}.{suffix}"


#: pandas dtype kind → the column type Dagster shows (TableColumn.type)
_COLUMN_TYPES = {"i": "int", "u": "int", "f": "float", "b": "bool", "M": "datetime"}


def column_schema(frame: pd.DataFrame) -> dg.TableSchema:
    """The frame's columns and their types, as Dagster's `dagster/column_schema` takes them."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=str(name), type=_COLUMN_TYPES.get(dtype.kind, "string"))
            for name, dtype in frame.dtypes.items()
        ]
    )


def table_records(frame: pd.DataFrame) -> list[dg.TableRecord]:
    """The frame's rows as Dagster table records (missing values None, times ISO-8601)."""
    records = []
    for row in frame.to_dict(orient="records"):
        records.append(
            dg.TableRecord(
                {
                    str(k): None
                    if pd.isna(v)
                    else v.isoformat()
                    if isinstance(v, pd.Timestamp)
                    else v
                    for k, v in row.items()
                }
            )
        )
    return records


@dg.asset(
    name=ASSET_NAME,
    group_name="monitoring",
    kinds={"python", "markdown"},
    owners=["team:data-platform"],
    description="Integration-health report: per integration its state, sync and provider-call success "
    "rate, avg/p95 latency, error-rate trend and top errors over the period, and how many are "
    "failed or degraded; with a chart of error rate and p95 latency over time.",
)
def integration_health_report(
    context: dg.AssetExecutionContext,
    config: IntegrationHealthReportConfig,
    store: SyncStoreResource,
) -> dg.MaterializeResult:
    sync_store, now, period = store.get_store(), utc_now(), timedelta(hours=config.hours)
    roll_up_for_report(sync_store, organization_id=config.organization_id, now=now, period=period)
    with sync_store.connect() as conn:
        report = build_integration_report(
            conn, organization_id=config.organization_id, now=now, period=period
        )
    chart = write_chart(report, chart_path(report))
    frame = health_frame(report)
    csv = csv_path(report)
    frame.to_csv(csv, index=False)
    # the image travels inside the Markdown (a data: URI) because the UI cannot read our disk;
    # the file stays for anyone who wants it
    markdown = render_markdown(report, chart_uri=png_data_uri(chart))
    context.log.info(
        f"{report.title}: {report.failed_integrations} failed, {report.degraded_integrations} "
        f"degraded, {report.count('warning')} warning of {len(report.integrations)}; chart at {chart}"
    )
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.md(markdown),
            "chart": dg.MetadataValue.path(str(chart)),
            "csv": dg.MetadataValue.path(str(csv)),
            "health_table": dg.MetadataValue.table(
                table_records(frame), schema=column_schema(frame)
            ),
            "dagster/column_schema": column_schema(frame),
            "dagster/row_count": len(frame),
            "organization_id": config.organization_id or "(all organizations)",
            "period_hours": float(config.hours),
            **report.figures(),
        }
    )


report_integration_health = dg.define_asset_job(
    "report_integration_health",
    selection=[integration_health_report],
    description="Materialize the integration-health report (config: organization_id, hours).",
    hooks=SENTRY_HOOKS,  # no integration session here to report a failure to Sentry
)


def _report_schedule(
    name: str, cron: str, hours: float, status: dg.DefaultScheduleStatus, description: str
) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name=name,
        job=report_integration_health,
        cron_schedule=cron,
        execution_timezone="UTC",
        # every organization: the operators' summary (a system-level report)
        run_config=dg.RunConfig(ops={ASSET_NAME: IntegrationHealthReportConfig(hours=hours)}),
        default_status=status,
        description=description,
    )


weekly_integration_health_summary = _report_schedule(
    "weekly_integration_health_summary",
    "0 8 * * 1",
    7 * 24,
    dg.DefaultScheduleStatus.RUNNING,
    "Mondays 08:00 UTC: the integration-health report over the last 7 days, every organization.",
)
daily_integration_health_report = _report_schedule(
    "daily_integration_health_report",
    "0 7 * * *",
    24,
    dg.DefaultScheduleStatus.STOPPED,
    "Daily 07:00 UTC: the integration-health report over the last 24 h, every organization.",
)


@dg.op(
    description="Roll the provider calls of every organization with enabled integrations up into "
    "hours (provider_call_hours), which reports over more than two days read."
)
def roll_up_provider_call_hours_op(
    context: dg.OpExecutionContext, store: SyncStoreResource
) -> dg.Output[int]:
    sync_store = store.get_store()
    with sync_store.connect() as conn:
        organizations = [i.organization_id for i in list_enabled_integrations(conn)]
    written = roll_up_organizations(sync_store, organizations, now=utc_now())
    context.log.info(f"rolled up {sum(written.values())} hour rows: {written}")
    return dg.Output(
        sum(written.values()),
        metadata={"organizations": len(written), "hour_rows_written": sum(written.values())},
    )


@dg.job(
    description="Roll provider calls up into hours for the long reports (hourly schedule).",
    hooks=SENTRY_HOOKS,
)
def roll_up_provider_call_hours() -> None:
    roll_up_provider_call_hours_op()


provider_call_hours_schedule = dg.ScheduleDefinition(
    name="provider_call_hours_schedule",
    job=roll_up_provider_call_hours,
    cron_schedule="15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly at :15 UTC: roll the last hours' provider calls up (provider_call_hours), "
    "so a weekly report reads a few thousand hour rows instead of every call.",
)

#: for definitions.py
REPORT_ASSETS = [integration_health_report]
REPORT_JOBS = [report_integration_health, roll_up_provider_call_hours]
REPORT_SCHEDULES = [
    weekly_integration_health_summary,
    daily_integration_health_report,
    provider_call_hours_schedule,
]
