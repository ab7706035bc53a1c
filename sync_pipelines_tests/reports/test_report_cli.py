"""`sync-pipelines report` through click's runner over the fleet (conftest.py), store found
through SYNC_DATABASE_URL."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from sync_pipelines.cli.reports import report
from sync_pipelines.reports.chart import PNG_MAGIC
from sync_pipelines_tests.reports.conftest import DOWN, ORG, OTHER


@pytest.fixture
def run_report(fleet, monkeypatch):
    monkeypatch.setenv("SYNC_DATABASE_URL", fleet.store.url)

    def run(*args: str):
        return CliRunner().invoke(report, list(args), catch_exceptions=False)

    return run


def test_report_prints_a_table_and_draws_the_chart(run_report, tmp_path):
    chart = tmp_path / "chart.png"
    result = run_report("--organization", ORG, "--chart", str(chart))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Integration health — organization {ORG} — last 24 h")
    assert DOWN in result.output and OTHER not in result.output
    assert chart.read_bytes().startswith(PNG_MAGIC) and f"chart: {chart}" in result.output


def test_report_json_over_every_organization_for_seven_days(run_report):
    result = run_report("--all-organizations", "--days", "7", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (
        data["failed_integrations"],
        data["degraded_integrations"],
        data["warning_integrations"],
    ) == (1, 0, 1)
    assert {i["integration_id"] for i in data["integrations"]} >= {DOWN, OTHER}
    assert data["bucket_s"] == 3600 and data["title"].endswith("last 7 days")
    down = next(i for i in data["integrations"] if i["integration_id"] == DOWN)
    assert down["state"] == "unhealthy" and down["top_errors"][0]["error_type"] == "transient"


def test_report_markdown_for_the_last_hours(run_report):
    result = run_report("--organization", ORG, "--hours", "2", "--markdown")
    assert result.exit_code == 0
    assert result.output.startswith(f"# Integration health — organization {ORG} — last 2 h")
    assert "| integration | provider | state |" in result.output


@pytest.mark.parametrize(
    "args, problem",
    [
        ([], "name the organization"),
        (["--organization", ORG, "--all-organizations"], "name the organization"),
        (["--organization", ORG, "--hours", "1", "--days", "1"], "--hours or --days, not both"),
        (["--organization", ORG, "--markdown", "--json"], "exclusive"),
        (["--organization", ORG, "--hours", "0"], "--hours"),
    ],
)
def test_report_refuses_bad_options_naming_them(run_report, args, problem):
    result = run_report(*args)
    assert result.exit_code == 2 and problem in result.output


def test_report_on_an_organization_without_integrations_says_so(run_report):
    result = run_report("--organization", "org-nobody")
    assert (
        result.exit_code == 1 and "organization 'org-nobody' has no integrations" in result.output
    )
