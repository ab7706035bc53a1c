"""Check on an integration's open dead letters: records it could not store and still owes."""

from __future__ import annotations

from sync_pipelines.checks.context import CheckContext
from sync_pipelines.checks.outcome import CheckOutcome, graded

DEAD_LETTERS = "dead_letters_below_threshold"


def dead_letters_below_threshold(ctx: CheckContext) -> CheckOutcome:
    """Open (pending + retrying) letters; quarantined ones wait for an operator and are not counted."""
    t = ctx.thresholds
    depth = ctx.dead_letters
    return graded(
        DEAD_LETTERS,
        depth,
        warn=t.dead_letters_warn,
        critical=t.dead_letters_critical,
        inclusive=True,
        ok=f"{depth} open dead letters (warn at {t.dead_letters_warn})",
        bad=f"{depth} open dead letters (warn at {t.dead_letters_warn}, error at {t.dead_letters_critical}); "
        f"see `sync-pipelines dead-letters list --organization {ctx.organization_id}`",
        depth=depth,
        warn_depth=t.dead_letters_warn,
        critical_depth=t.dead_letters_critical,
    )
