"""The report's chart: error rate and p95 latency over time, one line per integration, as a PNG.

Drawn on matplotlib's Agg canvas through the object API (no pyplot, no display, no global
figure state), so it is safe in a Dagster step, a thread or a headless server.
"""

from __future__ import annotations

import base64
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from sync_pipelines.reports.integration_report import IntegrationHealthReport

#: lines drawn at most (the report orders integrations worst first, so these are the worst)
MAX_LINES = 10
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_chart(report: IntegrationHealthReport, path: Path | str, *, dpi: int = 100) -> Path:
    """Draw the chart into `path` (parent directories created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(11, 6.5), layout="constrained")
    FigureCanvasAgg(figure)
    rate_axes, latency_axes = figure.subplots(2, 1, sharex=True)
    shown = [r for r in report.integrations if any(p.calls for p in r.series)][:MAX_LINES]
    for row in shown:
        # buckets without calls are left out, so an integration polled every few hours is a line
        # through its syncs rather than scattered dots between gaps
        points = [p for p in row.series if p.calls]
        times = [p.start + report.bucket / 2 for p in points]
        label = f"{row.integration_id} ({row.state})"
        rates = [p.failed / p.calls * 100 for p in points]
        p95 = [p.p95_latency_ms if p.p95_latency_ms is not None else float("nan") for p in points]
        (line,) = rate_axes.plot(times, rates, marker=".", linewidth=1.2, label=label)
        latency_axes.plot(times, p95, marker=".", linewidth=1.2, color=line.get_color())
    hidden = sum(1 for r in report.integrations if any(p.calls for p in r.series)) - len(shown)
    title = f"{report.title} (buckets of {_bucket_label(report)})"
    if hidden > 0:
        title += f" — {len(shown)} worst shown, {hidden} more not drawn"
    figure.suptitle(title, fontsize=10)
    rate_axes.set_ylabel("provider error rate (%)")
    rate_axes.set_ylim(bottom=0)
    latency_axes.set_ylabel("p95 latency (ms)")
    latency_axes.set_xlabel("time (UTC)")
    latency_axes.set_ylim(bottom=0)
    latency_axes.set_xlim(report.period_start, report.period_end)
    locator = AutoDateLocator()
    latency_axes.xaxis.set_major_locator(locator)
    latency_axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    for axes in (rate_axes, latency_axes):
        axes.grid(True, alpha=0.3)
    if shown:
        rate_axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        rate_axes.text(
            0.5,
            0.5,
            "no provider calls in this period",
            ha="center",
            va="center",
            transform=rate_axes.transAxes,
        )
    figure.savefig(path, format="png", dpi=dpi)
    return path


def png_data_uri(path: Path | str) -> str:
    """The PNG as a `data:` URI, for Markdown that must carry its image (the Dagster UI)."""
    data = Path(path).read_bytes()
    if not data.startswith(PNG_MAGIC):
        raise ValueError(f"{path} is not a PNG file")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _bucket_label(report: IntegrationHealthReport) -> str:
    minutes = report.bucket.total_seconds() / 60
    return f"{minutes:g} min" if minutes < 60 else f"{minutes / 60:g} h"
