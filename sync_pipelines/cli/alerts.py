"""`sync-pipelines alerts list|evaluate|test|health`: the operator's view of alert incidents, one
evaluation pass on demand, a test notification to every configured channel, and the alert
path's health. Channels come from the environment (SYNC_ALERT_WEBHOOK_URL,
SYNC_ALERT_SLACK_WEBHOOK_URL); the store from SYNC_DATABASE_URL."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from sync_pipelines.cli.context import store_session

if TYPE_CHECKING:
    from sync_pipelines.alerts.settings import AlertSettings


@click.group()
def alerts() -> None:
    """Alert incidents and the alert channels."""


@alerts.command("list")
@click.option(
    "--organization",
    "organization_id",
    default=None,
    help="One organization (default: every organization — an operator's view).",
)
@click.option("--open", "open_only", is_flag=True, help="Only incidents still open.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
def list_alerts(organization_id: str | None, open_only: bool, as_json: bool, limit: int) -> None:
    """Incidents, newest first."""
    from sync_pipelines.store.alerts import list_incidents

    with (
        store_session(writes=False, organization_id=organization_id) as store,
        store.connect() as conn,
    ):
        incidents = list_incidents(conn, organization_id, open_only=open_only, limit=limit)
    if as_json:
        for incident in incidents:
            click.echo(json.dumps(incident.as_json(), default=str))
        return
    if not incidents:
        click.echo("no incidents")
        return
    from sync_pipelines.text_table import render_table

    lines = render_table(
        (
            "STATUS",
            "SEVERITY",
            "RULE",
            "ORGANIZATION",
            "INTEGRATION",
            "SEEN",
            "FIRST SEEN",
            "SUMMARY",
        ),
        [
            (
                i.status,
                i.severity,
                i.rule,
                i.organization_id,
                i.integration_id,
                i.occurrences,
                i.first_seen_at.strftime("%Y-%m-%d %H:%M:%S"),
                i.summary,
            )
            for i in incidents
        ],
        max_widths={"SUMMARY": 100},
        right_aligned=("SEEN",),
    )
    click.echo("\n".join(lines))


@alerts.command("evaluate")
def evaluate() -> None:
    """Run one evaluation pass over every enabled integration (what the alert sensor does every
    minute) and print its summary as JSON."""
    from sync_pipelines.alerts.evaluation import evaluate_alerts

    settings = _settings()
    with store_session(writes=True) as store:
        summary = evaluate_alerts(store, settings)
    click.echo(json.dumps(summary.as_json()))


@alerts.command("test")
def test_channels() -> None:
    """Send a test notification to every configured channel; exits 1 if one fails or none is
    configured."""
    from sync_pipelines.alerts.messages import TEST, AlertMessage
    from sync_pipelines.alerts.notify import send_message
    from sync_pipelines.clock import utc_now

    settings = _settings()
    if not settings.channels:
        raise click.ClickException(
            "no alert channel configured: set SYNC_ALERT_WEBHOOK_URL and/or SYNC_ALERT_SLACK_WEBHOOK_URL"
        )
    now = utc_now()
    with store_session(writes=True) as store:
        deliveries = send_message(store, AlertMessage(TEST, now), settings, now=now)
    for d in deliveries:
        click.echo(
            json.dumps(
                {
                    "channel": d.channel,
                    "status": d.status,
                    "status_code": d.status_code,
                    "attempts": d.attempts,
                    "error": d.error_message,
                }
            )
        )
    if not all(d.ok for d in deliveries):
        raise SystemExit(1)


@alerts.command("health")
def health() -> None:
    """The alert path's health from the recent heartbeats (JSON); exits 1 when unhealthy."""
    from sync_pipelines.alerts.heartbeat import UNHEALTHY, alert_path_health
    from sync_pipelines.clock import utc_now

    with store_session(writes=False) as store, store.connect() as conn:
        report = alert_path_health(conn, utc_now())
    click.echo(json.dumps(report))
    if report["state"] == UNHEALTHY:
        raise SystemExit(1)


def _settings() -> AlertSettings:
    from sync_pipelines.alerts.settings import AlertSettings

    try:
        return AlertSettings.from_env()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
