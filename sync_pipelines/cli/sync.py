"""`sync-pipelines sync` and `test-connection`: one integration, outside Dagster."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from sync_pipelines.cli.context import open_store
from sync_pipelines.errors import SyncError
from sync_pipelines.observability.sentry import capture_failure

if TYPE_CHECKING:
    from sync_pipelines.store.database import Store
    from sync_pipelines.sync.session import RunContext


@click.command()
@click.argument("integration_id")
@click.option(
    "--stream",
    type=click.Choice(["devices", "device_states", "telemetry", "desired_exports", "all"]),
    default="all",
    show_default=True,
    help="all = devices, then states (and telemetry where the provider streams it).",
)
@click.option("--batch-size", type=int, default=None)
def sync(integration_id: str, stream: str, batch_size: int | None) -> None:
    """Run one sync outside Dagster (for operators and benchmarks); prints the figures as JSON."""
    import uuid

    from sync_pipelines.sync.session import RunContext

    run = RunContext(run_id=f"cli-{uuid.uuid4()}", step_key=f"cli_sync_{stream}", job_name="cli")
    results: list[Any] = []
    store = open_store(writes=True)
    try:
        _sync_streams(store, integration_id, run, stream, batch_size, results)
        paused = _drift_pause(store, results)
    except SyncError as exc:  # recorded and logged already: the operator gets its one line
        _echo(run, results)
        _fail(exc)
    finally:
        store.dispose()  # the pooled connection closes now, not in interpreter teardown
    _echo(run, results)
    if paused:  # the data is stored, but no schedule will sync this integration again: say so
        click.echo(f"warning: {integration_id}: {paused}", err=True)


def _drift_pause(store: Store, results: list[Any]) -> str | None:
    """Why the integration is now paused for shape drift (sync/shape_drift.py), if it is."""
    from sync_pipelines.store.shapes import drift_pause

    if not results:
        return None
    org, iid = results[0].organization_id, results[0].integration_id
    with store.scoped(org).connect() as conn:
        paused = drift_pause(conn, org, iid)
    return paused.pause_reason() if paused else None


def _sync_streams(
    store: Store,
    integration_id: str,
    run: RunContext,
    stream: str,
    batch_size: int | None,
    results: list[Any],
) -> None:
    from sync_pipelines.sync.device_states import sync_device_states
    from sync_pipelines.sync.inventory import sync_devices
    from sync_pipelines.sync.session import integration_session

    with integration_session(store, integration_id, run) as session:
        if stream in ("devices", "all"):
            results.append(
                sync_devices(session, **({"batch_size": batch_size} if batch_size else {}))
            )
        if stream in ("device_states", "all"):
            results.append(sync_device_states(session))
        if stream == "telemetry" or (stream == "all" and session.integration.provider == "mqtt"):
            from sync_pipelines.sync.telemetry import sync_telemetry

            results.append(sync_telemetry(session))
        if stream == "desired_exports":
            from sync_pipelines.sync.export import export_desired_states

            results.append(export_desired_states(session))


def _fail(exc: SyncError) -> NoReturn:
    """A failed sync as one line (its stack is in the log), reported as an unhandled one would
    be (Sentry, when configured)."""
    capture_failure(exc)
    raise click.ClickException(str(exc)) from None


def _echo(run: RunContext, results: list[Any]) -> None:
    for r in results:
        click.echo(
            json.dumps(
                {"run_id": run.run_id, "stream": r.stream, "status": r.status, **r.metadata()}
            )
        )
        if r.deletions_held:  # the data is right, but an operator must decide: say so
            click.echo(
                f"warning: {r.integration_id}: the mass-deletion guard held {r.deletions_held} "
                "deletion(s) (more than the integration's max_delete_fraction of its devices); "
                "if the provider really lost them, apply them with `sync-pipelines devices "
                f"confirm-deletions {r.integration_id}`",
                err=True,
            )


@click.command("test-connection")
@click.argument("integration_id")
def test_connection(integration_id: str) -> None:
    """Test an integration's connection; exits 1 when it fails."""
    import uuid

    from sync_pipelines.sync.connection_check import check_connection
    from sync_pipelines.sync.session import RunContext, integration_session

    try:
        with integration_session(
            open_store(writes=True), integration_id, RunContext(run_id=f"cli-{uuid.uuid4()}")
        ) as session:
            result = check_connection(session)
    except SyncError as exc:  # e.g. a configuration the provider cannot even be built from
        _fail(exc)
    click.echo(
        json.dumps({"ok": result.ok, "latency_ms": result.latency_ms, "reason": result.reason})
    )
    sys.exit(0 if result.ok else 1)
