"""`sync-pipelines devices confirm-deletions INTEGRATION`: apply the deletions the mass-deletion
guard held for an integration (sync/deletions.py), exactly once, with a `deletions_confirmed`
activity row naming the count and the scan epoch."""

from __future__ import annotations

import json

import click

from sync_pipelines.cli.context import open_store


@click.group()
def devices() -> None:
    """The store's devices: deletions held by the mass-deletion guard."""


@devices.command("confirm-deletions")
@click.argument("integration_id", metavar="INTEGRATION")
def confirm_deletions_command(integration_id: str) -> None:
    """Soft-delete the devices the last complete scan of INTEGRATION would have deleted, which
    the mass-deletion guard held (prints what was applied as JSON)."""
    from sync_pipelines.store.integrations import find_integration_owner
    from sync_pipelines.sync.deletions import confirm_deletions

    store = open_store(writes=True)
    with store.connect() as conn:
        integration = find_integration_owner(conn, integration_id)
    if integration is None:
        raise click.ClickException(
            f"no integration {integration_id!r} in {store.location} "
            "(see `sync-pipelines integrations list`)"
        )
    confirmed = confirm_deletions(store, integration)
    click.echo(
        json.dumps(
            {
                "integration_id": integration_id,
                "held": confirmed.held,
                "deleted": confirmed.deleted,
                "scan_epoch": confirmed.epoch,
                "held_at": confirmed.held_at.isoformat() if confirmed.held_at else None,
                "activity_id": confirmed.activity_id,
            }
        )
    )
    if not confirmed.held:
        click.echo(f"no deletions are held for {integration_id}: nothing applied", err=True)
