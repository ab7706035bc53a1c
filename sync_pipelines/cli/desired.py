"""`sync-pipelines desired`: desired-state changes queued for export, and export conflicts."""

from __future__ import annotations

import json

import click

from sync_pipelines.cli.context import open_store


@click.group()
def desired() -> None:
    """Desired-state changes to export to providers (pushed by the export job)."""


@desired.command("set")
@click.option("--organization", "organization_id", required=True)
@click.option("--integration", "integration_id", required=True)
@click.option("--device", "external_id", required=True)
@click.argument("patch")
def desired_set(organization_id: str, integration_id: str, external_id: str, patch: str) -> None:
    """Queue a desired-state PATCH (a JSON object; null deletes a key) for one device."""
    from sync_pipelines.store.desired import request_desired_change
    from sync_pipelines.store.integrations import get_integration

    try:
        parsed = json.loads(patch)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="PATCH") from None
    store = open_store(writes=True, organization_id=organization_id)
    with store.transaction() as conn:
        if get_integration(conn, organization_id, integration_id) is None:
            raise click.ClickException(
                f"organization {organization_id!r} has no integration {integration_id!r} "
                f"in {store.location}"
            )
        try:
            change_id = request_desired_change(
                conn, organization_id, integration_id, external_id, parsed, requested_by="cli"
            )
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="PATCH") from None
    click.echo(json.dumps({"change_id": change_id, "status": "pending"}))


@desired.command("conflicts")
@click.option("--organization", "organization_id", required=True)
@click.option("--integration", "integration_id", required=True)
def desired_conflicts(organization_id: str, integration_id: str) -> None:
    """Print the recorded export conflicts of an integration (JSON lines)."""
    from sync_pipelines.store.desired import sync_conflicts

    with open_store(writes=False, organization_id=organization_id).connect() as conn:
        for row in sync_conflicts(conn, organization_id, integration_id):
            click.echo(json.dumps(row, default=str))
