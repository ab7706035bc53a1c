"""The health report as a terminal table (what `sync-pipelines health` prints without --json),
rendered from the report's redacted JSON so both outputs say the same thing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sync_pipelines.text_table import shorten

_ERROR_WIDTH = 70


def render_health_text(report: dict[str, Any]) -> str:
    scope = report.get("organization_id") or "all organizations"
    lines = [
        f"Health: {report['status'].upper()} ({scope}; checked {_when(report['checked_at'])} UTC, "
        f"{report['duration_ms']:.0f} ms)",
        "",
    ]
    checks = report["checks"]
    lines += _table(
        ("CHECK", "STATUS", "DETAIL"),
        [(name, check["status"], check["detail"]) for name, check in checks.items()],
    )
    integrations = report.get("integrations") or []
    if integrations:
        lines.append("")
        rows = [
            (
                i["integration_id"],
                i["organization_id"],
                i["provider"],
                i["state"],
                _when(i.get("last_success_at")),
                _when(i.get("last_attempt_at")),
                _short(i.get("last_error")),
            )
            for i in integrations
        ]
        table = _table(
            (
                "INTEGRATION",
                "ORGANIZATION",
                "PROVIDER",
                "STATE",
                "LAST SUCCESS",
                "LAST ATTEMPT",
                "LAST ERROR",
            ),
            rows,
        )
        lines.append(table[0])
        for row_line, integration in zip(table[1:], integrations, strict=True):
            lines.append(row_line)
            # every reason whole, one per line: they are what the state means
            lines += [f"      - {reason}" for reason in integration.get("reasons") or []]
    return "\n".join(lines) + "\n"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return (
            "  " + "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        )

    return [line(headers), *(line(r) for r in rows)]


def _when(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")


def _short(text: str | None) -> str:
    return shorten(text, _ERROR_WIDTH) if text else "-"
