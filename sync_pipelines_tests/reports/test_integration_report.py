"""The integration-health report built from real sync history (conftest.py) on SQLite and
Postgres: states, success rates, top errors, series, trend, and its Markdown and terminal forms."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from sync_pipelines.clock import utc_now
from sync_pipelines.reports.integration_report import build_integration_report
from sync_pipelines.reports.markdown import render_markdown
from sync_pipelines.reports.period_stats import call_series
from sync_pipelines.reports.terminal import render_terminal
from sync_pipelines.store.activity import insert_activity_rows
from sync_pipelines.store.integrations import Integration
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines_tests.activity_rows import provider_call_row
from sync_pipelines_tests.reports.conftest import DOWN, FLAKY, OK, ORG, OTHER


def _report(fleet, organization_id=ORG, **options):
    with fleet.store.connect() as conn:
        return build_integration_report(
            conn, organization_id=organization_id, now=utc_now(), **options
        )


def _rows(report):
    return {row.integration_id: row for row in report.integrations}


def test_the_failing_integration_is_failed_and_the_flaky_one_a_warning(fleet):
    report = _report(fleet)
    assert [r.integration_id for r in report.integrations] == [DOWN, FLAKY, OK]  # worst first
    assert [r.state for r in report.integrations] == ["unhealthy", "warning", "healthy"]
    figures = report.figures()
    assert (
        figures["integrations"],
        figures["failed_integrations"],
        figures["degraded_integrations"],
        figures["warning_integrations"],
    ) == (3, 1, 0, 1)
    rows = _rows(report)
    assert rows[DOWN].health.reasons[0].startswith("3 syncs failed in a row; last error transient")
    (flaky_reason,) = rows[FLAKY].health.reasons
    assert flaky_reason.startswith("the last sync failed (transient: ") and "503" in flaky_reason


def test_the_failing_integration_shows_its_top_error_and_success_rates(fleet):
    rows = _rows(_report(fleet))
    down, ok = rows[DOWN], rows[OK]
    top = down.top_errors[0]
    assert top.error_type == "transient" and "503" in top.message
    assert top.count == down.calls.failed == down.calls.calls == 6  # 3 syncs × 2 attempts
    assert (down.syncs.syncs, down.syncs.failed, down.syncs.success_rate) == (3, 3, 0.0)
    assert down.call_success_rate == 0.0
    assert (ok.syncs.failed, ok.syncs.success_rate, ok.call_success_rate) == (0, 1.0, 1.0)
    assert ok.top_errors == () and ok.calls.p95_latency_ms > 0 and ok.calls.avg_latency_ms > 0
    flaky = rows[FLAKY]
    assert flaky.syncs.success_rate == pytest.approx(
        2 / 3
    )  # devices + states ok, then devices failed


def test_the_headline_rates_add_up_over_the_organization(fleet):
    report = _report(fleet)
    rows = report.integrations
    assert report.totals.calls == sum(r.calls.calls for r in rows)
    assert report.totals.failed == sum(r.calls.failed for r in rows)
    succeeded = sum(r.syncs.succeeded for r in rows)
    assert report.sync_success_rate == succeeded / sum(r.syncs.finished for r in rows)
    # a pooled p95 lies between the integrations' own p95s
    p95s = [r.calls.p95_latency_ms for r in rows if r.calls.p95_latency_ms is not None]
    assert min(p95s) <= report.figures()["p95_ms"] <= max(p95s)


def test_an_organization_report_shows_only_its_integrations_and_all_organizations_shows_every_one(
    fleet,
):
    assert OTHER not in _rows(_report(fleet))
    everything = _report(fleet, organization_id=None)
    assert set(_rows(everything)) == {OK, FLAKY, DOWN, OTHER}
    assert everything.title.endswith("all organizations — last 24 h")
    assert everything.totals.calls == sum(r.calls.calls for r in everything.integrations)


def test_the_series_has_every_bucket_and_adds_up_to_the_period(fleet):
    report = _report(fleet)
    for row in report.integrations:
        assert len(row.series) == 24  # hourly over 24 h
        assert sum(p.calls for p in row.series) == row.calls.calls
        assert sum(p.failed for p in row.series) == row.calls.failed
    assert _rows(report)[DOWN].series[-1].failure_rate == 1.0


def test_a_weekly_period_buckets_by_hour_and_a_short_one_by_five_minutes(fleet):
    assert len(_report(fleet, period=timedelta(days=7)).integrations[0].series) == 168
    assert len(_report(fleet, period=timedelta(hours=1)).integrations[0].series) == 12


def _calls(org, integration_id, when, *, count, failed):
    return [
        provider_call_row(
            org,
            integration_id,
            when,
            status="failed" if n < failed else "success",
            error_message="HTTP 503",
            ms=10.0 + n,
        )
        for n in range(count)
    ]


@pytest.mark.parametrize(
    "last_window_failures, arrow",
    [(30, "↑"), (2, "→"), (None, "?")],
    ids=["worse", "same", "quiet"],
)
def test_the_trend_arrow_compares_the_last_window_with_the_ones_before(
    store, last_window_failures, arrow
):
    register_integration(
        store,
        Integration(
            integration_id="seeded",
            organization_id="org-t",
            provider="golioth",
            name="seeded",
            settings={"base_url": "http://127.0.0.1:9", "project_id": "p"},
            secret_refs={"api_key": "UNSET_KEY"},
        ),
    )
    now = utc_now()
    window = timedelta(hours=24) / 7  # a 24 h report: seven windows
    rows = []
    for k in range(1, 7):  # six quiet windows before the last one: 40 calls, 2 failed each
        rows += _calls("org-t", "seeded", now - window * k - window / 2, count=40, failed=2)
    if last_window_failures is not None:
        rows += _calls("org-t", "seeded", now - window / 2, count=40, failed=last_window_failures)
    with store.transaction() as conn:
        insert_activity_rows(conn, rows)
        report = build_integration_report(conn, organization_id="org-t", now=now)
    assert report.integrations[0].trend_arrow == arrow


def test_bad_periods_and_buckets_are_refused(store):
    with store.connect() as conn:
        with pytest.raises(ValueError, match="period must be positive"):
            build_integration_report(conn, organization_id="x", now=utc_now(), period=timedelta(0))
        with pytest.raises(ValueError, match="bucket must be positive"):
            call_series(conn, "x", "y", utc_now(), utc_now(), bucket=timedelta(0))


def _table(markdown: str) -> list[list[str]]:
    """The first Markdown table's rows, cells split on unescaped pipes."""
    lines = markdown.split("\n\n## ")[0].splitlines()
    rows = [line for line in lines if line.startswith("|")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def test_the_markdown_table_has_one_row_per_integration_and_every_column(fleet):
    markdown = render_markdown(_report(fleet))
    header, separator, *body = _table(markdown)
    assert header == [
        "integration",
        "provider",
        "state",
        "syncs ok (of finished)",
        "calls ok",
        "avg ms",
        "p95 ms",
        "trend",
        "top error",
    ]
    assert separator == ["---"] * 9
    assert [(r[0].split()[0], r[2]) for r in body] == [
        (DOWN, "unhealthy"),
        (FLAKY, "warning"),
        (OK, "healthy"),
    ]
    assert all(len(r) == 9 for r in body)
    down = body[0]
    assert down[3] == "0/3 (0.0%), 3 failed" and down[4] == "0/6 (0.0%)"
    assert down[8].startswith("transient: HTTP 503") and down[8].endswith("(×6)")
    assert "**1 failed (unhealthy) · 0 degraded · 1 warning · 3 integrations" in markdown
    assert "## Why" in markdown and f"**{DOWN}** (unhealthy): 3 syncs failed in a row" in markdown
    assert "## Top errors" in markdown


def test_a_pipe_in_an_error_message_does_not_break_the_table(store):
    register_integration(
        store,
        Integration(
            integration_id="piped",
            organization_id="org-p",
            provider="golioth",
            name="a | b",
            settings={"base_url": "http://127.0.0.1:9", "project_id": "p"},
            secret_refs={"api_key": "UNSET_KEY"},
        ),
    )
    rows = _calls("org-p", "piped", utc_now() - timedelta(minutes=1), count=1, failed=1)
    rows[0]["error_message"] = "bad | worse\nand a new line"
    with store.transaction() as conn:
        insert_activity_rows(conn, rows)
        report = build_integration_report(conn, organization_id="org-p", now=utc_now())
    (_, _, row) = _table(render_markdown(report))
    assert len(row) == 9 and row[0] == "piped (a \\| b)"
    assert row[8] == "transient: bad \\| worse and a new line (×1)"


def test_the_terminal_table_lists_the_integrations_worst_first_with_their_errors(fleet):
    text = render_terminal(_report(fleet))
    lines = text.splitlines()
    header = next(n for n, line in enumerate(lines) if line.startswith("integration"))
    assert set(lines[header + 1]) == {"-"}
    assert [lines[header + 2 + k].split()[0] for k in range(3)] == [DOWN, FLAKY, OK]
    assert "1 failed (unhealthy) · 0 degraded · 1 warning" in lines[2]
    assert f"{DOWN} (unhealthy)" in text and "! transient: HTTP 503" in text
