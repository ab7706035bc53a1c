"""Check on the size of an integration's inventory: a sync that "succeeded" with 0 devices, or with
far fewer than the last good full inventory, is more likely a wrong project, filter or credential
scope than thousands of devices deleted at once."""

from __future__ import annotations

from dataclasses import dataclass

from sync_pipelines.checks.context import CheckContext
from sync_pipelines.checks.outcome import ERROR, CheckOutcome, failed, passed
from sync_pipelines.store.deletions import held_deletions
from sync_pipelines.store.sync_state import GOOD_SYNC_STATUSES, finished_stream_syncs

INVENTORY_VOLUME = "inventory_volume_as_expected"
INVENTORY_STREAM = "devices"
#: how far back to look for the previous good full inventory
_LOOKBACK = 50


@dataclass(frozen=True, slots=True)
class _Inventory:
    status: str
    fetched: int
    #: the scan started from scratch; a resumed one (after a killed sync) fetches only the rest
    full: bool


def _recent_inventories(ctx: CheckContext) -> list[_Inventory]:
    """Finished inventory syncs, newest first."""
    rows = finished_stream_syncs(
        ctx.conn, ctx.organization_id, ctx.integration_id, INVENTORY_STREAM, limit=_LOOKBACK
    )
    return [_Inventory(status, fetched, full) for status, fetched, full in rows]


def inventory_volume_as_expected(ctx: CheckContext) -> CheckOutcome:
    """No deletions are held by the mass-deletion guard, and the newest good full inventory
    fetched at least `volume_drop_ratio` of the good full one before it. A failed or resumed scan
    is not judged (the failure-streak check covers failures)."""
    held = held_deletions(ctx.conn, ctx.organization_id, ctx.integration_id)
    if held.count:
        return failed(
            INVENTORY_VOLUME,
            ERROR,
            f"the last complete scan would have deleted {held.count} devices, more than the "
            "integration's max_delete_fraction: the deletions are held. If the provider really "
            f"lost them, run `sync-pipelines devices confirm-deletions {ctx.integration_id}`; "
            "otherwise check the integration's project, filter and credentials",
            held_deletions=held.count,
        )
    ratio_limit = ctx.thresholds.volume_drop_ratio
    inventories = _recent_inventories(ctx)
    good_full = [i for i in inventories if i.status in GOOD_SYNC_STATUSES and i.full]
    latest = inventories[0] if inventories else None
    figures = dict(
        fetched=latest.fetched if latest else None,
        previous_fetched=None,
        ratio=None,
        drop_ratio=ratio_limit,
        held_deletions=0,
    )
    if latest is None:
        return passed(INVENTORY_VOLUME, "no inventory sync has finished yet", **figures)
    if latest.status not in GOOD_SYNC_STATUSES or not latest.full:
        why = "failed" if latest.status not in GOOD_SYNC_STATUSES else "resumed an interrupted scan"
        return passed(
            INVENTORY_VOLUME, f"the last inventory sync {why}: volume not judged", **figures
        )
    if len(good_full) < 2 or good_full[1].fetched == 0:
        return passed(
            INVENTORY_VOLUME,
            f"{latest.fetched} devices fetched; no earlier non-empty inventory to compare with",
            **figures,
        )
    previous = good_full[1].fetched
    ratio = latest.fetched / previous
    figures.update(previous_fetched=previous, ratio=ratio)
    summary = (
        f"{latest.fetched} devices fetched, {previous} by the good inventory before ({ratio:.0%})"
    )
    if ratio < ratio_limit:
        return failed(
            INVENTORY_VOLUME,
            ERROR,
            f"{summary}: below {ratio_limit:.0%} of it; check the integration's project, filter and "
            "credentials before trusting this inventory",
            **figures,
        )
    return passed(INVENTORY_VOLUME, summary, **figures)
