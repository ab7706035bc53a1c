"""How the report's figures read as text: shared by the Markdown and terminal renderers so the
two always agree on what a cell says."""

from __future__ import annotations

from sync_pipelines.reports.integration_report import IntegrationHealthReport, IntegrationReportRow
from sync_pipelines.reports.period_stats import ErrorCount
from sync_pipelines.text_table import shorten

COLUMNS = (
    "integration",
    "provider",
    "state",
    "syncs ok (of finished)",
    "calls ok",
    "avg ms",
    "p95 ms",
    "trend",
    "top error",
)


def percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.1%}"


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def share(good: int, total: int, rate: float | None) -> str:
    """ "3/5 (60.0 %)"; a dash when there was nothing to count."""
    return "–" if not total else f"{good}/{total} ({percent(rate)})"


def error_text(error: ErrorCount, limit: int = 80, *, with_count: bool = True) -> str:
    message = shorten(error.message or "", limit)
    text = f"{error.error_type}: {message}" if message else error.error_type
    return f"{text} (×{error.count})" if with_count else text


def sync_cell(row: IntegrationReportRow) -> str:
    """ "3/5 (60.0 %), 1 partial, 1 failed": clean successes of finished syncs, and what the
    others were."""
    s = row.syncs
    text = share(s.succeeded, s.finished, s.success_rate)
    others = [f"{n} {what}" for n, what in ((s.partial, "partial"), (s.failed, "failed")) if n]
    return ", ".join([text, *others]) if s.finished else text


def row_cells(row: IntegrationReportRow, *, error_limit: int = 80) -> list[str]:
    name = row.integration_id
    if row.integration.name and row.integration.name != row.integration_id:
        name += f" ({row.integration.name})"
    return [
        name,
        row.integration.provider,
        row.state,
        sync_cell(row),
        share(row.calls.calls - row.calls.failed, row.calls.calls, row.call_success_rate),
        ms(row.calls.avg_latency_ms),
        ms(row.calls.p95_latency_ms),
        row.trend_arrow,
        error_text(row.top_errors[0], error_limit) if row.top_errors else "–",
    ]


def headline(report: IntegrationHealthReport) -> str:
    f = report.figures()
    return (
        f"{f['failed_integrations']} failed (unhealthy) · {f['degraded_integrations']} degraded · "
        f"{f['warning_integrations']} warning · "
        f"{f['integrations']} integration{'' if f['integrations'] == 1 else 's'} · syncs ok {percent(report.sync_success_rate)} "
        f"({f['syncs_partial']} partial, {f['syncs_failed']} failed) · "
        f"provider calls ok {percent(report.call_success_rate)} ({f['calls']:,} calls) · "
        f"avg {ms(report.totals.avg_latency_ms)} ms · p95 {ms(report.totals.p95_latency_ms)} ms"
    )


def period_text(report: IntegrationHealthReport) -> str:
    fmt = "%Y-%m-%d %H:%M UTC"
    return f"{report.period_start.strftime(fmt)} → {report.period_end.strftime(fmt)}"
