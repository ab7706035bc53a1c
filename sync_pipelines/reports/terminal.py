"""The integration-health report as a plain-text table for a terminal (`sync-pipelines report`)."""

from __future__ import annotations

from sync_pipelines.reports.cells import COLUMNS, error_text, headline, period_text, row_cells
from sync_pipelines.reports.integration_report import IntegrationHealthReport
from sync_pipelines.text_table import shorten

#: the widest a column may grow before its cells are cut (the top error is the long one)
_MAX_WIDTH = {"integration": 32, "top error": 60}
_RIGHT_ALIGNED = {"avg ms", "p95 ms"}


def render_terminal(report: IntegrationHealthReport) -> str:
    rows = [row_cells(r, error_limit=_MAX_WIDTH["top error"]) for r in report.integrations]
    widths = []
    for n, column in enumerate(COLUMNS):
        widest = max([len(column), *(len(cells[n]) for cells in rows)])
        widths.append(min(widest, _MAX_WIDTH.get(column, widest)))

    def line(cells: list[str]) -> str:
        out = []
        for column, cell, width in zip(COLUMNS, cells, widths, strict=True):
            cell = shorten(cell, width)
            out.append(cell.rjust(width) if column in _RIGHT_ALIGNED else cell.ljust(width))
        return "  ".join(out).rstrip()

    header = line(list(COLUMNS))
    out = [report.title, period_text(report), headline(report), "", header, "-" * len(header)]
    out += [line(cells) for cells in rows] or ["(no enabled integrations)"]
    # the why, for the integrations that are not healthy (a healthy one's top error is in the table)
    troubled = [r for r in report.integrations if r.health.reasons]
    for r in troubled:
        out += ["", f"{r.integration_id} ({r.state})"]
        out += [f"  - {reason}" for reason in r.health.reasons]
        out += [f"  ! {error_text(e, 120)}" for e in r.top_errors]
    out += ["", "trend: ↑ worse  ↓ better  → no significant change  ? too few calls"]
    return "\n".join(out) + "\n"
