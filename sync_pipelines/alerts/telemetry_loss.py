"""Telemetry loss as an alert: `telemetry_loss:<integration>` is raised by a drain that ended
`partial` because its broker reported dropped messages or its persistent session was gone
(sync/telemetry_loss.py), and resolved by the next drain that sees no such loss. A lost session
is critical (everything published meanwhile is gone, count unknown); dropped messages warn (the
broker's counter is broker-wide, so they may be another client's)."""

from __future__ import annotations

from sync_pipelines.alerts.rules import CRITICAL, TELEMETRY_LOSS, WARNING, Condition, dedupe_key


def telemetry_loss_key(integration_id: str) -> str:
    return dedupe_key(TELEMETRY_LOSS, integration_id)


def telemetry_loss_condition(
    *,
    organization_id: str,
    integration_id: str,
    run_id: str | None,
    sync_id: str,
    dropped: int,
    session_lost: bool,
    reasons: list[str],
) -> Condition:
    return Condition(
        organization_id=organization_id,
        integration_id=integration_id,
        rule=TELEMETRY_LOSS,
        subject=integration_id,
        severity=CRITICAL if session_lost else WARNING,
        summary=f"integration {integration_id}: telemetry lost — " + "; ".join(reasons),
        details={"dropped": dropped, "session_lost": session_lost, "sync_id": sync_id},
        run_id=run_id,
    )
