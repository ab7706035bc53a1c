"""`sync-pipelines`: what isn't a Dagster run — migrate, integrations, one-off syncs, health,
reports, traces, dead letters, alerts and retention; one module per command group. The local
peers' commands (`demo`, `emulator`, `peer`, `peers`) come from the `sync_pipelines_peers`
distribution's entry points where it is installed."""

from __future__ import annotations

import atexit
import gc
from importlib.metadata import entry_points

import click

from sync_pipelines.cli.activity import activity
from sync_pipelines.cli.alerts import alerts
from sync_pipelines.cli.console import console
from sync_pipelines.cli.context import database_url_option, store_handle
from sync_pipelines.cli.dead_letters import dead_letters, quarantine, replay
from sync_pipelines.cli.desired import desired
from sync_pipelines.cli.devices import devices
from sync_pipelines.cli.health import health
from sync_pipelines.cli.integrations import integrations
from sync_pipelines.cli.migrate import migrate
from sync_pipelines.cli.receiver import receiver
from sync_pipelines.cli.reports import export, report, trace
from sync_pipelines.cli.retention import retention
from sync_pipelines.cli.sync import sync, test_connection
from sync_pipelines.observability.logging import configure_logging
from sync_pipelines.observability.otel import configure_tracing
from sync_pipelines.observability.sentry import configure_sentry
from sync_pipelines.observability.sentry import set_tags as set_sentry_tags

#: Commands the `sync_pipelines_peers` distribution provides (entry-point group below).
PEER_COMMANDS = ("demo", "emulator", "peer", "peers")
PEER_COMMAND_GROUP = "sync_pipelines.cli"
PEERS_INSTALL_HINT = (
    "pip install 'sync_pipelines[peers]' (it needs the sync_pipelines_peers package from the "
    "repository's peers/ directory; in a checkout: make install)"
)

_exit_gc_frozen = False


def freeze_gc_at_exit() -> None:
    """At exit, after the atexit handlers registered later than this one (logging's flush runs
    anyway, flushing stdout is the interpreter's own last step), move every object to the
    permanent generation: tearing the modules down then frees nothing through the cycle
    collector, which otherwise spends ~0.15 s of CPU on a sync command's ~80k objects just to
    free memory the OS reclaims anyway. Recent garbage is collected first, so finalizers of
    per-command objects (connections, files) still run."""
    gc.collect(1)
    gc.freeze()


class ProductCommands(click.Group):
    """The product's commands, plus the peers' commands looked up (and imported) only when one
    of them is asked for, so no other command pays for them."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *PEER_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in PEER_COMMANDS:
            return super().get_command(ctx, cmd_name)
        found = entry_points(group=PEER_COMMAND_GROUP, name=cmd_name)
        for entry_point in found:
            return entry_point.load()
        return _peers_not_installed(cmd_name)


def _peers_not_installed(name: str) -> click.Command:
    @click.command(
        name,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
        help="(needs the local peers: the `peers` extra)",
    )
    def missing() -> None:
        raise click.ClickException(
            f"`sync-pipelines {name}` comes with the local peers, which are not installed "
            f"here: {PEERS_INSTALL_HINT}"
        )

    return missing


@click.group(cls=ProductCommands)
@click.option(
    "--log-format",
    type=click.Choice(["json", "console"]),
    default=None,
    help="Log rendering (default: console in a terminal, JSON otherwise).",
)
@database_url_option
def main(log_format: str | None, database_url: str | None) -> None:
    """Sync IoT device inventories into a relational store, observably."""
    store_handle(database_url)  # every command's store: `sync-pipelines --database-url URL …`
    global _exit_gc_frozen
    if not _exit_gc_frozen:
        atexit.register(freeze_gc_at_exit)
        _exit_gc_frozen = True
    configure_logging(log_format)
    # Sentry reports an unhandled error of any command (the excepthook), tagged with the command;
    # both are no-ops (nothing imported) unless SENTRY_DSN / an OTLP endpoint is set
    if configure_sentry():
        set_sentry_tags(**{"cli.command": click.get_current_context().invoked_subcommand})
    configure_tracing()


for _command in (
    migrate,
    integrations,
    sync,
    test_connection,
    desired,
    devices,
    activity,
    receiver,
    console,
    replay,
    quarantine,
    dead_letters,
    retention,
    alerts,
    health,
    report,
    trace,
    export,
):
    main.add_command(_command)
