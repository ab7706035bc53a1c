"""The `integration_health_report` asset materialized in-process over the fleet (conftest.py),
its job run with the weekly schedule's config, and the chart it draws."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from sync_pipelines.clock import utc_now
from sync_pipelines.defs.reports import (
    REPORT_ASSETS,
    REPORT_JOBS,
    REPORT_SCHEDULES,
    integration_health_report,
    weekly_integration_health_summary,
)
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.reports.chart import PNG_MAGIC, png_data_uri, write_chart
from sync_pipelines.reports.integration_report import build_integration_report
from sync_pipelines_tests.reports.conftest import ORG


def _metadata(result: dg.ExecuteInJobResult) -> dict[str, object]:
    (materialization,) = result.asset_materializations_for_node("integration_health_report")
    return {k: v.value for k, v in materialization.metadata.items()}


def test_the_report_asset_materializes_with_its_table_figures_and_chart(
    fleet, tmp_path, monkeypatch
):
    monkeypatch.setenv("SYNC_HOME", str(tmp_path))
    result = dg.materialize(
        [integration_health_report],
        resources={"store": SyncStoreResource(database_url=fleet.store.url)},
        run_config={"ops": {"integration_health_report": {"config": {"organization_id": ORG}}}},
    )
    assert result.success
    meta = _metadata(result)
    assert (
        meta["failed_integrations"],
        meta["degraded_integrations"],
        meta["warning_integrations"],
        meta["integrations"],
    ) == (1, 0, 1, 3)
    assert meta["period_hours"] == 24.0 and meta["organization_id"] == ORG
    assert 0 < meta["success_rate"] < 1 and 0 < meta["call_success_rate"] < 1 and meta["p95_ms"] > 0
    chart = Path(meta["chart"])
    assert chart.parent == tmp_path / "reports" and chart.read_bytes().startswith(PNG_MAGIC)
    report = meta["report"]
    assert "| integration | provider | state |" in report and "| golioth-down" in report
    embedded = report.split("(data:image/png;base64,", 1)[1].split(")", 1)[0]
    assert base64.b64decode(embedded) == chart.read_bytes()


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_the_weekly_schedule_runs_the_report_job_over_seven_days(fleet, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNC_HOME", str(tmp_path))
    monkeypatch.setenv("SYNC_DATABASE_URL", fleet.store.url)
    defs = dg.Definitions(
        assets=REPORT_ASSETS,
        jobs=REPORT_JOBS,
        schedules=REPORT_SCHEDULES,
        resources={"store": SyncStoreResource()},
    )
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
        )
        (request,) = weekly_integration_health_summary.evaluate_tick(context).run_requests
        job = defs.resolve_job_def(weekly_integration_health_summary.job_name)
        result = job.execute_in_process(run_config=request.run_config, instance=instance)
    meta = _metadata(result)
    assert meta["period_hours"] == 168.0
    assert meta["organization_id"] == "(all organizations)" and meta["integrations"] == 4
    assert "last 7 days" in meta["report"]


def test_the_chart_is_a_png_matplotlib_drew(fleet, tmp_path):
    with fleet.store.connect() as conn:
        report = build_integration_report(conn, organization_id=ORG, now=utc_now())
    path = write_chart(report, tmp_path / "nested" / "chart.png")
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and b"Matplotlib" in data  # the Software text chunk
    assert png_data_uri(path) == "data:image/png;base64," + base64.b64encode(data).decode()
    (tmp_path / "not.png").write_text("hello")
    with pytest.raises(ValueError, match="not a PNG"):
        png_data_uri(tmp_path / "not.png")
