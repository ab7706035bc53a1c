"""`sync-pipelines health`: the service's health (store, Dagster, integrations, backlogs) as a
table or JSON; exits 1 when unhealthy, 0 when healthy or degraded, 2 on bad input."""

from __future__ import annotations

import json
import sys

import click

from sync_pipelines.cli.context import database_url_option, store_handle


@click.command("health")
@click.option(
    "--organization",
    "organization_id",
    default=None,
    help="Check this organization's integrations and backlogs (default: all organizations, "
    "a system-level scan).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@database_url_option
@click.option(
    "--dagster-home",
    envvar="DAGSTER_HOME",
    default=None,
    help="Dagster instance to check (default: $DAGSTER_HOME; unset: not checked).",
)
@click.option(
    "--require-daemon/--no-require-daemon",
    default=None,
    help="A Dagster daemon that is not running is unhealthy, not degraded "
    "(default: $SYNC_HEALTH_REQUIRE_DAEMON).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0.1, max=60),
    default=2.0,
    show_default=True,
    help="Seconds the store may take to answer.",
)
def health(
    organization_id: str | None,
    as_json: bool,
    database_url: str | None,
    dagster_home: str | None,
    require_daemon: bool | None,
    timeout_s: float,
) -> None:
    """Check the store, the Dagster instance, every enabled integration and the backlogs."""
    from sync_pipelines.monitoring.health import UNHEALTHY
    from sync_pipelines.monitoring.health_report_text import render_health_text
    from sync_pipelines.monitoring.service_health import (
        HealthOptions,
        UnknownOrganization,
        check_service_health,
    )
    from sync_pipelines.store.database import Store, StoreConfigError

    overrides: dict[str, object] = {"dagster_home": dagster_home, "store_timeout_s": timeout_s}
    if require_daemon is not None:
        overrides["require_daemon"] = require_daemon
    try:
        options = HealthOptions.from_env(**overrides)
    except (ValueError, StoreConfigError) as exc:
        raise click.UsageError(str(exc)) from exc
    # Not migrated or checked here: the store's own health (reachable, answering, migrated) is
    # what this command reports. It never creates one.
    handle = store_handle(database_url)
    try:
        store = Store(handle.database_url, must_exist=True)
    except StoreConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        report = check_service_health(store, options, organization_id=organization_id)
    except UnknownOrganization as exc:
        raise click.BadParameter(str(exc), param_hint="--organization") from exc
    finally:
        store.dispose()
    body = report.as_json()
    if as_json:
        click.echo(json.dumps(body, indent=2, default=str))
    else:
        click.echo(render_health_text(body), nl=False)
    sys.exit(1 if report.status == UNHEALTHY else 0)
