"""The integration-health report in Dagster: the `integration_health_report` asset (Markdown
table, headline figures and chart in its materialization metadata), the job that materializes
it, a weekly summary schedule (Monday 08:00 UTC, last 7 days; running by default) and a daily
one (07:00 UTC, last 24 h; off by default)."""

from datetime import timedelta
from pathlib import Path

import dagster as dg
from pydantic import Field

from sync_pipelines.clock import utc_now
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.reports.chart import png_data_uri, write_chart
from sync_pipelines.reports.integration_report import (
    IntegrationHealthReport,
    build_integration_report,
)
from sync_pipelines.reports.markdown import render_markdown
from sync_pipelines.store.database import default_sqlite_path

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
    scope = report.organization_id or "all"
    stamp = report.generated_at.strftime("%Y%m%dT%H%M%SZ")
    return reports_dir() / f"integration_health_{scope}_{stamp}.png"


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
    with store.get_store().connect() as conn:
        report = build_integration_report(
            conn,
            organization_id=config.organization_id,
            now=utc_now(),
            period=timedelta(hours=config.hours),
        )
    chart = write_chart(report, chart_path(report))
    # the image travels inside the Markdown (a data: URI) because the UI cannot read our disk;
    # the file stays for anyone who wants it
    markdown = render_markdown(report, chart_uri=png_data_uri(chart))
    context.log.info(
        f"{report.title}: {report.failed_integrations} failed, {report.degraded_integrations} "
        f"degraded of {len(report.integrations)}; chart at {chart}"
    )
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.md(markdown),
            "chart": dg.MetadataValue.path(str(chart)),
            "organization_id": config.organization_id or "(all organizations)",
            "period_hours": float(config.hours),
            **report.figures(),
        }
    )


report_integration_health = dg.define_asset_job(
    "report_integration_health",
    selection=[integration_health_report],
    description="Materialize the integration-health report (config: organization_id, hours).",
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

#: for definitions.py
REPORT_ASSETS = [integration_health_report]
REPORT_JOBS = [report_integration_health]
REPORT_SCHEDULES = [weekly_integration_health_summary, daily_integration_health_report]
