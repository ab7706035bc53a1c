"""Shape drift as an alert: `shape_drift:<integration>` is raised by a sync that found the shape
of the devices' attributes or state changed, under the `alert` policy (warning) or the `pause`
policy (critical: the integration is disabled), and resolved when an operator accepts the change
(`integrations accept-shape`, or `integrations enable` after a pause). A change while the
incident is open counts an occurrence of it (sync/shape_drift.py)."""

from __future__ import annotations

from sync_pipelines.alerts.rules import CRITICAL, SHAPE_DRIFT, WARNING, Condition, dedupe_key
from sync_pipelines.store.integrations import Integration
from sync_pipelines.sync.shapes import ShapeDiff


def shape_drift_key(integration_id: str) -> str:
    return dedupe_key(SHAPE_DRIFT, integration_id)


def shape_drift_condition(
    integration: Integration,
    *,
    run_id: str | None,
    stream: str,
    diff: ShapeDiff,
    paused: bool,
    activity_id: str,
    accept: str,
) -> Condition:
    iid = integration.integration_id
    then = "the integration is paused; " if paused else ""
    return Condition(
        organization_id=integration.organization_id,
        integration_id=iid,
        rule=SHAPE_DRIFT,
        subject=iid,
        severity=CRITICAL if paused else WARNING,
        summary=(
            f"integration {iid}: the shape of {stream} changed ({diff.summary(4)}); {then}"
            f"once the change is understood, run `{accept}`"
        ),
        details={
            "stream": stream,
            "added": len(diff.added),
            "removed": len(diff.removed),
            "changed": len(diff.changed),
            "differences": diff.lines()[:50],
            "paused": paused,
            "shape_changed_id": activity_id,
        },
        run_id=run_id,
    )
