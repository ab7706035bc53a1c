"""The Dagster event-log lines of a chain's runs, for the support bundle: what the store does not
hold (step starts and failures, asset materializations, the structured log lines Dagster
captured). Takes any `DagsterInstance`; imports nothing from Dagster itself, so tracing stays
usable where Dagster is not configured."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sync_pipelines.observability.redaction import redact_text


def dagster_log_lines(instance: Any, run_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Every event-log entry of the runs the instance knows (others are skipped: CLI runs and
    runs of another instance have no Dagster log), oldest first, messages redacted."""
    lines: list[dict[str, Any]] = []
    for run_id in sorted(set(run_ids)):
        if instance.get_run_by_id(run_id) is None:
            continue
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            error = entry.error_info
            lines.append(
                {
                    "run_id": run_id,
                    "timestamp": datetime.fromtimestamp(entry.timestamp, UTC),
                    "level": logging.getLevelName(entry.level),
                    "job": entry.job_name,
                    "step_key": entry.step_key,
                    "event_type": event.event_type_value if event is not None else None,
                    "message": redact_text(entry.user_message or "")
                    or (redact_text(event.message or "") if event is not None else ""),
                    "error": redact_text(error.to_string()) if error is not None else None,
                }
            )
    return sorted(lines, key=lambda line: (line["timestamp"], line["run_id"]))
