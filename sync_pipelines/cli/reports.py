"""`sync-pipelines report`, `trace` and `export`: the integration-health report in a terminal (or
as Markdown / JSON, with a chart), the causal chain behind a device, request, webhook event or
run id, and that chain as a JSON support bundle. Always within one organization, except a report
an operator asks to cover every organization (`--all-organizations`)."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sync_pipelines.cli.context import store_session

if TYPE_CHECKING:
    from sync_pipelines.tracing.chain import TraceChain


class _TraceKind(click.Choice):
    """`tracing.chain.KINDS`, read when an option is parsed or its help shown, not when the CLI
    starts: `tracing.chain` pulls in SQLAlchemy and the monitoring queries, which no other
    command should pay for."""

    def __init__(self) -> None:
        super().__init__(())

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        from sync_pipelines.tracing.chain import KINDS

        return KINDS

    @choices.setter
    def choices(self, _value: Any) -> None:
        pass


@click.command("report")
@click.option(
    "--organization", "organization_id", default=None, help="The organization reported on."
)
@click.option(
    "--all-organizations",
    is_flag=True,
    help="Every organization's integrations (a system-level report).",
)
@click.option(
    "--hours",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="The period: the last N hours (default 24).",
)
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="The period: the last N days (7 for the weekly summary).",
)
@click.option("--markdown", "as_markdown", is_flag=True, help="Print Markdown instead of a table.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--chart",
    "chart",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also draw error rate and p95 latency over time into this PNG file.",
)
def report(
    organization_id: str | None,
    all_organizations: bool,
    hours: float | None,
    days: float | None,
    as_markdown: bool,
    as_json: bool,
    chart: Path | None,
) -> None:
    """Integration-health report: state, sync and provider-call success, latency, error-rate trend
    and top errors per integration, and how many are failed or degraded."""
    from sync_pipelines.clock import utc_now
    from sync_pipelines.reports.integration_report import (
        DEFAULT_PERIOD,
        build_integration_report,
        roll_up_for_report,
    )
    from sync_pipelines.reports.markdown import render_markdown
    from sync_pipelines.reports.terminal import render_terminal
    from sync_pipelines.store.integrations import list_integrations

    if bool(organization_id) == all_organizations:
        raise click.UsageError(
            "name the organization (--organization ORG) or ask for --all-organizations"
        )
    if hours is not None and days is not None:
        raise click.UsageError("give the period as --hours or --days, not both")
    if as_markdown and as_json:
        raise click.UsageError("--markdown and --json are exclusive")
    period = (
        timedelta(hours=hours)
        if hours is not None
        else timedelta(days=days)
        if days is not None
        else DEFAULT_PERIOD
    )
    with store_session(writes=False, organization_id=organization_id) as store:
        with store.connect() as conn:
            if organization_id and not list_integrations(conn, organization_id):
                raise click.ClickException(
                    f"organization {organization_id!r} has no integrations in {store.location} "
                    f"(see `sync-pipelines integrations list --organization {organization_id}`)"
                )
        now = utc_now()
        roll_up_for_report(store, organization_id=organization_id, now=now, period=period)
        with store.connect() as conn:
            built = build_integration_report(
                conn, organization_id=organization_id, now=now, period=period
            )
    chart_file = None
    if chart:
        from sync_pipelines.reports.chart import write_chart  # matplotlib: only when asked

        chart_file = write_chart(built, chart)
    if as_json:
        click.echo(
            json.dumps({**built.as_json(), "chart": str(chart_file) if chart_file else None})
        )
    elif as_markdown:
        click.echo(
            render_markdown(built, chart_uri=str(chart_file) if chart_file else None), nl=False
        )
    else:
        click.echo(render_terminal(built), nl=False)
        if chart_file:
            click.echo(f"chart: {chart_file}")


@click.command("trace")
@click.argument("ident", metavar="ID")
@click.option("--organization", "organization_id", required=True)
@click.option("--integration", "integration_id", default=None, help="Only within this integration.")
@click.option(
    "--kind",
    type=_TraceKind(),
    default=None,
    help="What ID is (default: detected — webhook event, run, request, then device).",
)
@click.option(
    "--call-limit",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Provider calls of a traced run shown in full (failed ones first).",
)
def trace(
    ident: str, organization_id: str, integration_id: str | None, kind: str | None, call_limit: int
) -> None:
    """Print the causal chain behind ID — a device id, a request id (X-Request-ID), a webhook
    event id (the provider's, or our inbox row id) or a run id: webhook → run → provider calls
    (every attempt) → rows written → dead letters → check results → alerts."""
    from sync_pipelines.tracing.render import render_chain

    click.echo(
        render_chain(_chain(ident, organization_id, integration_id, kind, call_limit)), nl=False
    )


@click.command("export")
@click.argument("ident", metavar="ID")
@click.option("--organization", "organization_id", required=True)
@click.option("--integration", "integration_id", default=None, help="Only within this integration.")
@click.option("--kind", type=_TraceKind(), default=None, help="What ID is (default: detected).")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the bundle here (default: stdout).",
)
@click.option(
    "--call-limit",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Provider calls of a traced run included in full (failed ones first).",
)
@click.option(
    "--dagster-logs/--no-dagster-logs",
    default=True,
    show_default=True,
    help="Include the runs' Dagster event-log lines when $DAGSTER_HOME names an instance.",
)
def export(
    ident: str,
    organization_id: str,
    integration_id: str | None,
    kind: str | None,
    output: Path | None,
    call_limit: int,
    dagster_logs: bool,
) -> None:
    """Write the chain behind ID as a JSON support bundle (secrets redacted)."""
    from sync_pipelines.tracing.bundle import support_bundle

    chain = _chain(ident, organization_id, integration_id, kind, call_limit)
    lines = _dagster_log_lines(chain) if dagster_logs else []
    text = json.dumps(support_bundle(chain, log_lines=lines), indent=2, ensure_ascii=False)
    if output is None:
        click.echo(text)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text + "\n", encoding="utf-8")
    click.echo(
        f"wrote {output}: {chain.kind} {ident}, {len(chain.activity_rows)} activity rows, "
        f"{len(chain.sync_log_rows)} sync-log rows, {len(lines)} Dagster log lines",
        err=True,
    )


def _chain(
    ident: str, organization_id: str, integration_id: str | None, kind: str | None, call_limit: int
) -> TraceChain:
    from sync_pipelines.tracing.chain import TraceNotFound, build_chain

    with (
        store_session(writes=False, organization_id=organization_id) as store,
        store.connect() as conn,
    ):
        try:
            return build_chain(
                conn,
                organization_id,
                ident,
                kind=kind,
                integration_id=integration_id,
                call_limit=call_limit,
            )
        except TraceNotFound as exc:
            raise click.ClickException(str(exc)) from None
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="ID") from None


def _dagster_log_lines(chain: TraceChain) -> list[dict[str, Any]]:
    """The runs' event-log lines from the Dagster instance $DAGSTER_HOME names (none without)."""
    if not os.environ.get("DAGSTER_HOME") or not chain.runs:
        return []
    import dagster as dg

    from sync_pipelines.tracing.run_logs import dagster_log_lines

    with dg.DagsterInstance.get() as instance:
        return dagster_log_lines(instance, [run.run_id for run in chain.runs])
