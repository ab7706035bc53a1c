"""`sync-pipelines demo`: the main job of the README — every provider synced against its local
peer on the embedded default, then the fault drill (a flaky integration: failed checks, alerts
at a local sink, the health report, and the trace of one device), printed as one report."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
from pathlib import Path

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
    from sync_pipelines_peers.demo import DEMO_ORG, demo_instance, run_demo

    store = Store()
    # The structured log lines go to a file, so the report below stays readable.
    log_path = default_sqlite_path().parent / "demo-logs.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with (
        # entered, the instance is Dagster's current one (its defs-state storage included) for
        # the runs, and is disposed of at the end
        demo_instance() as instance,
        log_path.open("w") as log_file,
        contextlib.redirect_stdout(log_file),
    ):
        outcomes = run_demo(
            device_count=device_count, providers=providers or None, store=store, instance=instance
        )
        drill_lines, drill_ok = _fault_drill(store, instance, DEMO_ORG) if drill else ([], True)
    lines = ["", "== sync_pipelines demo ==", f"store: {store!r}", ""] + _sync_table(outcomes)
    lines += ["", "Dagster runs:"]
    lines += [f"  {o.provider:<10} {' '.join(o.run_ids)}" for o in outcomes]
    lines += drill_lines
    cli = follow_up_command(store)
    first_run = next((r for o in outcomes for r in o.run_ids), None)
    lines += [
        "",
        "Open the UI:      make ui   (then http://127.0.0.1:3000, one asset group per provider)",
        f"Health:           {cli} health --organization {DEMO_ORG}",
        f"Report:           {cli} report --organization {DEMO_ORG}",
    ]
    if first_run:
        lines.append(
            f"Follow a run:     {cli} activity --organization {DEMO_ORG} --run-id {first_run}"
        )
    lines += [f"Structured logs:  {log_path}", ""]
    click.echo("\n".join(lines))
    failed = [o.provider for o in outcomes if not o.ok]
    if failed:
        raise click.ClickException(f"demo sync failed for: {', '.join(failed)}")
    if not drill_ok:
        raise click.ClickException("the fault drill did not show what it should (see above)")


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
        incident_lines,
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
    lines += ["", "Failed asset checks:"]
    lines += [f"  {r.severity:<5} {r.check_name}: {r.description}" for r in outcome.failed_checks]
    lines += ["", "Alerts received by the local sink:"] + (
        alert_lines(outcome.alerts)
        or [
            "  none new: the incidents below were already open (one alert per incident; a repeat"
            " is sent only after the cooldown)"
        ]
    )
    lines += ["", "Open incidents:"] + incident_lines(outcome.open_incidents)
    health_text, state = drill_health(store, organization_id, outcome.integration_id)
    lines += ["", health_text.rstrip()]
    trace_text = drill_trace(store, organization_id, outcome.traced_device)
    lines += [
        "",
        f"$ sync-pipelines trace --organization {organization_id} {outcome.traced_device}",
        trace_text.rstrip(),
    ]
    ok = (
        bool(outcome.failed_checks)
        and bool(outcome.open_incidents)
        and state in ("degraded", "unhealthy")
        and bool(trace_text.strip())
    )
    return lines, ok
