"""Check that the shape of what the provider sends is the one known: `device_shape_stable` fails
while a shape change a sync found (sync/shape_drift.py) is not acknowledged.

Severity follows the integration's `shape_drift_policy` at the time of the change: WARN under
`alert` (data flows; the mapping downstream may be wrong), ERROR under `pause` (the integration
is stopped until an operator resumes it). A change under `ignore` is accepted by the policy, so
the check passes. The description lists the differences (paths added, removed, changed); the
metadata counts them, per the Dagster UI's numeric figures. Accepting the change —
`sync-pipelines integrations accept-shape`, or `integrations enable` after a pause — makes it
pass again.
"""

from __future__ import annotations

from sync_pipelines.checks.context import CheckContext
from sync_pipelines.checks.outcome import ERROR, WARN, CheckOutcome, failed, passed
from sync_pipelines.store.shapes import integration_shapes
from sync_pipelines.sync.shapes import ShapeDiff

DEVICE_SHAPE_STABLE = "device_shape_stable"


def device_shape_stable(ctx: CheckContext) -> CheckOutcome:
    shapes = integration_shapes(ctx.conn, ctx.organization_id, ctx.integration_id)
    figures: dict[str, int] = {"streams_known": len(shapes)}
    figures.update({f"{s.stream}_paths": s.paths for s in shapes})
    pending = [s for s in shapes if s.unacknowledged]
    if not pending:
        known = ", ".join(f"{s.stream} {s.paths} paths" for s in shapes) or "no shape recorded yet"
        return passed(
            DEVICE_SHAPE_STABLE,
            f"no unacknowledged shape change ({known})",
            **figures,
            paths_added=0,
            paths_removed=0,
            paths_changed=0,
        )
    diffs = [(s, ShapeDiff.from_json(s.change)) for s in pending]
    severity = ERROR if any(s.change_policy == "pause" for s in pending) else WARN
    counts = {
        k: sum(len(getattr(d, k)) for _s, d in diffs) for k in ("added", "removed", "changed")
    }
    what = "; ".join(
        f"{s.stream} changed at {s.change_at:%Y-%m-%d %H:%M:%S} UTC: {d.summary(10)}"
        for s, d in diffs
    )
    accept = (
        f"sync-pipelines integrations accept-shape --organization {ctx.organization_id} "
        f"--id {ctx.integration_id}"
    )
    if severity == ERROR:
        accept = (
            f"sync-pipelines integrations enable --organization {ctx.organization_id} "
            f"--id {ctx.integration_id}"
        )
    return failed(
        DEVICE_SHAPE_STABLE,
        severity,
        f"{what}. Once the change is understood, run `{accept}`",
        **figures,
        paths_added=counts["added"],
        paths_removed=counts["removed"],
        paths_changed=counts["changed"],
    )
