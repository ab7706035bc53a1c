"""`sync-pipelines demo`: the main job of the README — every provider synced against its local
peer on the embedded default, then the fault drill (a flaky integration: failed checks, alerts
at a local sink, the health report, and the trace of one device), printed as one report."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
import warnings
from pathlib import Path
from typing import TextIO

import click

from sync_pipelines.store.database import DEFAULT_HOME, Store


@click.command()
@click.option(
    "--devices",
    "device_count",
    type=int,
    default=200,
    show_default=True,
    help="Devices seeded into each provider's local peer.",
)
@click.option(
    "--provider",
    "providers",
    multiple=True,
    help="Only these providers (repeatable; default: all four).",
)
@click.option(
    "--drill/--no-drill",
    default=True,
    show_default=True,
    help="Run the fault drill after the syncs.",
)
def demo(device_count: int, providers: tuple[str, ...], drill: bool) -> None:
    """Full demo sync of every provider against its local peer, on the embedded default."""
    from sync_pipelines.store.database import default_sqlite_path

    store = Store()
    # The structured log lines go to a file; the terminal gets a line per provider, then the report.
    log_path = default_sqlite_path().parent / "demo-logs.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    terminal = sys.stdout
    click.echo(f"Syncing each provider against its local peer (logs: {log_path})", file=terminal)
    with warnings.catch_warnings():
        import dagster as dg

        # Dagster's notes on its own beta/preview APIs (decorator parameters, the instance's
        # yaml logging) are for the code's authors, not for someone running the demo
        for category in (dg.BetaWarning, dg.PreviewWarning):
            warnings.filterwarnings("ignore", category=category)
        lines, failures = _demo(store, log_path, device_count, providers, drill, terminal)
    click.echo("\n".join(lines))
    if failures:
        raise click.ClickException(failures)


def _demo(
    store: Store,
    log_path: Path,
    device_count: int,
    providers: tuple[str, ...],
    drill: bool,
    terminal: TextIO,
) -> tuple[list[str], str | None]:
    """Run the syncs and the drill, leave the demo's integrations disabled, and return the
    report's lines and what failed (None: nothing)."""
    from sync_pipelines_peers.demo import DEMO_ORG, demo_instance, disable_integrations, run_demo
    from sync_pipelines_peers.demo_drill import DRILL_INTEGRATION

    def progress(outcome) -> None:
        result = "ok" if outcome.ok else "FAILED"
        click.echo(
            f"  {outcome.provider:<10} {result:<6} {outcome.stored_devices:>5} devices, "
            f"{len(outcome.run_ids)} run(s), {outcome.duration_s:.1f} s",
            file=terminal,
        )

    with (
        # entered, the instance is Dagster's current one (its defs-state storage included) for
        # the runs, and is disposed of at the end
        demo_instance() as instance,
        log_path.open("w") as log_file,
        contextlib.redirect_stdout(log_file),
    ):
        outcomes = run_demo(
            device_count=device_count,
            providers=providers or None,
            store=store,
            instance=instance,
            on_done=progress,
        )
        drill_lines, drill_ok = _fault_drill(store, instance, DEMO_ORG) if drill else ([], True)
        if drill:
            click.echo(f"  fault drill {'ok' if drill_ok else 'FAILED'}", file=terminal)
        ids = [o.integration_id for o in outcomes] + ([DRILL_INTEGRATION] if drill else [])
        disabled = disable_integrations(store, DEMO_ORG, ids)
    lines = ["", f"== sync_pipelines demo == {store!r}", ""] + _sync_table(outcomes)
    runs = sum(len(o.run_ids) for o in outcomes)
    lines += [
        "",
        f"Dagster runs: {runs}, of the jobs sync_<provider>_integration and export_<provider>_desired_states"
        + (" (and 1 of the fault drill, below)" if drill else ""),
    ]
    lines += drill_lines
    cli = follow_up_command(store)
    first_run = next((r for o in outcomes for r in o.run_ids), None)
    lines += [
        "",
        f"Disabled now:     {', '.join(disabled) or 'none'}",
        "                  (their peers and secrets ended with the demo: `make ui` leaves them be)",
        "Open the UI:      make ui   (then http://127.0.0.1:3000, one asset group per provider)",
        f"Health:           {cli} health --organization {DEMO_ORG}",
        f"Report:           {cli} report --organization {DEMO_ORG}",
        f"Console:          SYNC_CONSOLE_PASSWORD=<16+ characters> {cli} console",
        "                  (then http://127.0.0.1:8091/console/overview, user `operator`)",
    ]
    if first_run:
        lines.append(
            f"Follow a run:     {cli} activity --organization {DEMO_ORG} --run-id {first_run}"
        )
    lines += [f"Structured logs:  {log_path}", ""]
    failed = [o.provider for o in outcomes if not o.ok]
    if failed:
        return lines, f"demo sync failed for: {', '.join(failed)}"
    if not drill_ok:
        return lines, "the fault drill did not show what it should (see above)"
    return lines, None


def follow_up_command(store: Store) -> str:
    """How to call this CLI again from a new shell in the current directory so that it reads
    this store: the executable as it is reachable from here, and the store named only when a
    plain shell here would resolve another one."""
    executable = os.path.abspath(sys.argv[0])
    on_path = shutil.which("sync-pipelines")
    if on_path and os.path.samefile(on_path, executable):
        command = "sync-pipelines"
    elif os.path.exists(executable) and os.path.basename(executable) == "sync-pipelines":
        relative = os.path.relpath(executable)
        command = relative if not relative.startswith("..") else executable
    else:
        command = f"{shlex.quote(sys.executable)} -m sync_pipelines.cli"
    plain_shell_default = f"sqlite:///{Path(DEFAULT_HOME).resolve() / 'sync_store.db'}"
    if store.url != plain_shell_default:  # (a URL with a password prints it masked)
        command = f"SYNC_DATABASE_URL={shlex.quote(store.location)} {command}"
    return command


def _sync_table(outcomes: list) -> list[str]:
    header = (
        f"{'provider':<10} {'peer':>6} {'devices':>8} {'deleted':>7} {'states':>7} {'telemetry':>9} "
        f"{'exported':>8} "
        f"{'conflicts':>9} {'calls':>6} {'p95 ms':>7} {'checks':>7} {'time s':>7}  result"
    )
    lines = [header, "-" * len(header)]
    for o in outcomes:
        a = o.activity
        lines.append(
            f"{o.provider:<10} {o.peer_devices:>6} {o.stored_devices:>8} {o.deleted_devices:>7} "
            f"{o.stored_states:>7} "
            f"{'-' if o.telemetry_messages is None else o.telemetry_messages:>9} {o.exported:>8} "
            f"{o.conflicts:>9} {a.calls if a else 0:>6} "
            f"{(a.p95_latency_ms or 0) if a else 0:>7.1f} {o.checks_summary:>7} {o.duration_s:>7.1f}  "
            + ("ok" if o.ok else f"FAILED {o.error or 'devices missing'}")
        )
    return lines


def _fault_drill(store, instance, organization_id: str) -> tuple[list[str], bool]:
    """Run the drill and render it; False when it failed to show a failed check, an alert, a
    degraded integration or a trace."""
    from sync_pipelines_peers.demo_drill import (
        alert_lines,
        drill_health,
        drill_trace,
        run_fault_drill,
    )

    outcome = run_fault_drill(store, instance, organization_id)
    lines = [
        "",
        f"== fault drill: {outcome.integration_id} (503 on 35 % of state reads, one poisoned record) ==",
    ]
    if outcome.error:
        return lines + [f"FAILED: {outcome.error}"], False
    lines.append(
        f"run {outcome.run_id}: {'succeeded' if outcome.run_success else 'failed'} "
        "(retries absorbed most errors; the rest are dead letters)"
    )
    # its failed checks are in the trace below ("Check results")
    lines += ["", "Alerts received by the local sink:"] + (
        alert_lines(outcome.alerts)
        or [
            "  none new: the incidents (in the trace below) were already open (one alert per"
            " incident; a repeat is sent only after the cooldown)"
        ]
    )
    health_text, state = drill_health(store, organization_id, outcome.integration_id)
    lines += ["", health_text.rstrip()]
    trace_text = drill_trace(store, organization_id, outcome.traced_device)
    lines += [
        "",
        f"$ {follow_up_command(store)} trace --organization {organization_id} "
        f"--integration {outcome.integration_id} {outcome.traced_device}",
        "  (shown here with its failed checks only; the command lists the passed ones too)",
        trace_text.rstrip(),
    ]
    ok = (
        bool(outcome.failed_checks)
        and bool(outcome.open_incidents)
        and state in ("degraded", "unhealthy")
        and bool(trace_text.strip())
    )
    return lines, ok
