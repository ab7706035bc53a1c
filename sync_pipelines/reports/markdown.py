"""The integration-health report as Markdown: the Dagster UI's metadata and `report --markdown`."""

from __future__ import annotations

from sync_pipelines.reports.cells import COLUMNS, error_text, headline, period_text, row_cells
from sync_pipelines.reports.integration_report import IntegrationHealthReport


def table_cell(text: str) -> str:
    """Text safe inside a Markdown table cell: no pipes, no line breaks."""
    return " ".join(text.split()).replace("|", "\\|")


def render_markdown(report: IntegrationHealthReport, *, chart_uri: str | None = None) -> str:
    """The report; `chart_uri` (a file path or a data: URI) is embedded as an image."""
    lines = [
        f"# {report.title}",
        "",
        f"{period_text(report)}",
        "",
        f"**{headline(report)}**",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for row in report.integrations:
        lines.append("| " + " | ".join(table_cell(c) for c in row_cells(row)) + " |")
    if not report.integrations:
        lines.append(
            "| " + " | ".join(["(no enabled integrations)"] + [""] * (len(COLUMNS) - 1)) + " |"
        )
    troubled = [r for r in report.integrations if r.health.reasons]
    if troubled:
        lines += ["", "## Why", ""]
        lines += [
            f"- **{r.integration_id}** ({r.state}): {'; '.join(r.health.reasons)}" for r in troubled
        ]
    with_errors = [r for r in report.integrations if r.top_errors]
    if with_errors:
        lines += [
            "",
            "## Top errors",
            "",
            "| integration | error | count | last seen |",
            "|---|---|---|---|",
        ]
        for r in with_errors:
            for e in r.top_errors:
                last = e.last_seen_at.strftime("%Y-%m-%d %H:%M:%S") if e.last_seen_at else "–"
                lines.append(
                    f"| {table_cell(r.integration_id)} | {table_cell(error_text(e, 200, with_count=False))} "
                    f"| {e.count} | {last} |"
                )
    lines += [
        "",
        "Trend: the error rate of the period's last window against the windows before it — "
        "↑ significantly worse, ↓ significantly better, → no significant change, ? too few calls.",
    ]
    if chart_uri:
        lines += [
            "",
            "## Error rate and p95 latency",
            "",
            f"![error rate and p95 latency]({chart_uri})",
        ]
    return "\n".join(lines) + "\n"
