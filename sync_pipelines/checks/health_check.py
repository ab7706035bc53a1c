"""The `integration_health` check: the health model's verdict on the integration
(`monitoring/health.py`), so the Dagster UI shows the same state and reasons as `/health`, the
CLI, the console, the report and the metric. It summarizes the other checks and signals, so it
raises no alert of its own (the failing check or signal under it does)."""

from __future__ import annotations

from sync_pipelines.checks.context import CheckContext
from sync_pipelines.checks.outcome import ERROR, WARN, CheckOutcome, failed, passed
from sync_pipelines.monitoring.health import (
    DEGRADED,
    UNHEALTHY,
    WARNING,
    health_in,
    rank,
)

INTEGRATION_HEALTH = "integration_health"
#: health state -> the check's severity; healthy and unknown pass
_SEVERITY = {WARNING: WARN, DEGRADED: ERROR, UNHEALTHY: ERROR}


def integration_health_check(ctx: CheckContext) -> CheckOutcome:
    health = health_in(ctx)
    figures = dict(state_rank=rank(health.state), signals=len(health.signals))
    # the state, then one reason per line (a reason may hold "; " itself)
    summary = "\n- ".join([health.state, *health.reasons])
    severity = _SEVERITY.get(health.state)
    if severity is None:
        return passed(INTEGRATION_HEALTH, summary, **figures)
    return failed(INTEGRATION_HEALTH, severity, summary, **figures)
