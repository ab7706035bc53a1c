"""The mass-deletion guard as an alert: `deletion_guard:<integration>` is raised when a complete
scan would delete more than the integration's `max_delete_fraction` of its inventory (the
deletions are held), and resolved when they are confirmed or a later scan supersedes them."""

from __future__ import annotations

from sync_pipelines.alerts.rules import CRITICAL, DELETION_GUARD, Condition, dedupe_key


def deletion_guard_key(integration_id: str) -> str:
    return dedupe_key(DELETION_GUARD, integration_id)


def deletion_guard_condition(
    *,
    organization_id: str,
    integration_id: str,
    run_id: str | None,
    would_delete: int,
    active: int,
    max_delete_fraction: float,
    scan_epoch: str,
) -> Condition:
    return Condition(
        organization_id=organization_id,
        integration_id=integration_id,
        rule=DELETION_GUARD,
        subject=integration_id,
        severity=CRITICAL,
        summary=(
            f"integration {integration_id}: the inventory scan would delete {would_delete} of "
            f"{active} devices (more than {max_delete_fraction:.0%}); the deletions are held. "
            "If the provider really lost them, run "
            f"`sync-pipelines devices confirm-deletions {integration_id}`; otherwise check the "
            "integration's project, filter, credentials (or the broker's retained registry)"
        ),
        details={
            "would_delete": would_delete,
            "active": active,
            "max_delete_fraction": max_delete_fraction,
            "scan_epoch": scan_epoch,
        },
        run_id=run_id,
    )
