"""`sync-pipelines`: what isn't a Dagster run — migrate, integrations, one-off syncs, the demo,
and the emulators."""

from __future__ import annotations

import atexit
import gc
import json
import shlex
import sys

import click

from sync_pipelines.observability.logging import configure_logging
from sync_pipelines.observability.otel import configure_tracing
from sync_pipelines.observability.sentry import configure_sentry
from sync_pipelines.observability.sentry import set_tags as set_sentry_tags

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


@click.group()
@click.option(
    "--log-format",
    type=click.Choice(["json", "console"]),
    default=None,
    help="Log rendering (default: console in a terminal, JSON otherwise).",
)
def main(log_format: str | None) -> None:
    """Sync IoT device inventories into a relational store, observably."""
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


@main.command()
@click.option(
    "--database-url",
    envvar="SYNC_DATABASE_URL",
    default=None,
    help="Store URL (default: $SYNC_DATABASE_URL, else SQLite under $SYNC_HOME).",
)
def migrate(database_url: str | None) -> None:
    """Apply pending SQL migrations from sql/ (idempotent)."""
    from sync_pipelines.store.database import Store
    from sync_pipelines.store.migrations import migrate as apply

    store = Store(database_url)
    applied = apply(store)
    click.echo(f"{store}: " + (f"applied {', '.join(applied)}" if applied else "up to date"))


@main.group()
def integrations() -> None:
    """Register and list integrations."""


@integrations.command("add")
@click.option("--organization", "organization_id", required=True)
@click.option("--id", "integration_id", required=True)
@click.option("--provider", required=True)
@click.option("--name", default=None)
@click.option(
    "--setting", "settings", multiple=True, metavar="KEY=VALUE", help="Non-secret setting."
)
@click.option(
    "--secret-env",
    "secret_refs",
    multiple=True,
    metavar="SECRET=ENV_VAR",
    help="Name of the environment variable holding a secret (never the secret).",
)
@click.option("--poll-interval", "poll_interval_s", type=int, default=300, show_default=True)
@click.option("--disabled", is_flag=True)
def integrations_add(
    organization_id: str,
    integration_id: str,
    provider: str,
    name: str | None,
    settings: tuple[str, ...],
    secret_refs: tuple[str, ...],
    poll_interval_s: int,
    disabled: bool,
) -> None:
    from sync_pipelines.errors import ConfigError
    from sync_pipelines.store.database import Store
    from sync_pipelines.store.integrations import Integration
    from sync_pipelines.store.migrations import ensure_migrated
    from sync_pipelines.sync.integration_config import register_integration

    store = Store()
    ensure_migrated(store)
    try:
        register_integration(
            store,
            Integration(
                integration_id=integration_id,
                organization_id=organization_id,
                provider=provider,
                name=name or integration_id,
                settings=_pairs(settings, "--setting"),
                secret_refs=_pairs(secret_refs, "--secret-env"),
                enabled=not disabled,
                poll_interval_s=poll_interval_s,
            ),
        )
    except (ConfigError, PermissionError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"saved integration {integration_id} ({provider}) for organization {organization_id}"
    )


@integrations.command("list")
@click.option("--organization", "organization_id", required=True)
def integrations_list(organization_id: str) -> None:
    from sync_pipelines.store.database import Store
    from sync_pipelines.store.integrations import list_integrations
    from sync_pipelines.store.migrations import ensure_migrated

    store = Store()
    ensure_migrated(store)
    with store.connect() as conn:
        for i in list_integrations(conn, organization_id):
            state = "enabled" if i.enabled else "disabled"
            click.echo(
                f"{i.integration_id}\t{i.provider}\t{state}\tpoll={i.poll_interval_s}s\t{i.name}"
            )


@main.command()
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

    from sync_pipelines.store.database import Store
    from sync_pipelines.sync.device_states import sync_device_states
    from sync_pipelines.sync.inventory import sync_devices
    from sync_pipelines.sync.session import RunContext, integration_session

    run = RunContext(run_id=f"cli-{uuid.uuid4()}", step_key=f"cli_sync_{stream}", job_name="cli")
    results = []
    store = Store()
    try:
        with integration_session(store, integration_id, run) as session:
            if stream in ("devices", "all"):
                results.append(
                    sync_devices(session, **({"batch_size": batch_size} if batch_size else {}))
                )
            if stream in ("device_states", "all"):
                results.append(sync_device_states(session))
            if stream == "telemetry" or (
                stream == "all" and session.integration.provider == "mqtt"
            ):
                from sync_pipelines.sync.telemetry import sync_telemetry

                results.append(sync_telemetry(session))
            if stream == "desired_exports":
                from sync_pipelines.sync.export import export_desired_states

                results.append(export_desired_states(session))
    finally:
        store.dispose()  # the pooled connection closes now, not in interpreter teardown
    for r in results:
        click.echo(
            json.dumps(
                {"run_id": run.run_id, "stream": r.stream, "status": r.status, **r.metadata()}
            )
        )


@main.command("test-connection")
@click.argument("integration_id")
def test_connection(integration_id: str) -> None:
    """Test an integration's connection; exits 1 when it fails."""
    import uuid

    from sync_pipelines.store.database import Store
    from sync_pipelines.sync.connection_check import check_connection
    from sync_pipelines.sync.session import RunContext, integration_session

    with integration_session(
        Store(), integration_id, RunContext(run_id=f"cli-{uuid.uuid4()}")
    ) as session:
        result = check_connection(session)
    click.echo(
        json.dumps({"ok": result.ok, "latency_ms": result.latency_ms, "reason": result.reason})
    )
    sys.exit(0 if result.ok else 1)


@main.group()
def desired() -> None:
    """Desired-state changes to export to providers (pushed by the export job)."""


@desired.command("set")
@click.option("--organization", "organization_id", required=True)
@click.option("--integration", "integration_id", required=True)
@click.option("--device", "external_id", required=True)
@click.argument("patch")
def desired_set(organization_id: str, integration_id: str, external_id: str, patch: str) -> None:
    """Queue a desired-state PATCH (a JSON object; null deletes a key) for one device."""
    from sync_pipelines.store.database import Store
    from sync_pipelines.store.desired import request_desired_change
    from sync_pipelines.store.integrations import get_integration
    from sync_pipelines.store.migrations import ensure_migrated

    try:
        parsed = json.loads(patch)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="PATCH") from None
    store = Store()
    ensure_migrated(store)
    with store.transaction() as conn:
        if get_integration(conn, organization_id, integration_id) is None:
            raise click.ClickException(
                f"organization {organization_id!r} has no integration {integration_id!r}"
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
    from sync_pipelines.store.database import Store
    from sync_pipelines.store.desired import sync_conflicts

    with Store().connect() as conn:
        for row in sync_conflicts(conn, organization_id, integration_id):
            click.echo(json.dumps(row, default=str))


@main.command()
@click.option("--organization", "organization_id", required=True)
@click.option("--run-id", default=None)
@click.option("--request-id", default=None)
@click.option("--integration", "integration_id", default=None)
@click.option("--limit", type=int, default=200, show_default=True)
def activity(
    organization_id: str,
    run_id: str | None,
    request_id: str | None,
    integration_id: str | None,
    limit: int,
) -> None:
    """Print activity-log rows (JSON lines) for a run, a request or an integration."""
    from sync_pipelines.store.activity import activity_rows
    from sync_pipelines.store.database import Store

    with Store().connect() as conn:
        for row in activity_rows(
            conn,
            organization_id,
            run_id=run_id,
            request_id=request_id,
            integration_id=integration_id,
            limit=limit,
        ):
            click.echo(json.dumps(row, default=str))


@main.group()
def emulator() -> None:
    """Local peers for providers that can't be reached from here."""


@emulator.command("golioth")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8787, show_default=True)
@click.option("--devices", "device_count", type=int, default=500, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--api-key",
    envvar="GOLIOTH_DEMO_API_KEY",
    default="demo-emulator-key-0c5e",
    show_default=False,
    help="Key the emulator accepts (default: $GOLIOTH_DEMO_API_KEY or the demo key).",
)
@click.option("--project-id", default="demo-project", show_default=True)
@click.option(
    "--int64-as-string", is_flag=True, help="Encode page/perPage/total as strings (protojson)."
)
@click.option("--latency-ms", type=int, default=0, show_default=True)
def emulator_golioth(
    host: str,
    port: int,
    device_count: int,
    seed: int,
    api_key: str,
    project_id: str,
    int64_as_string: bool,
    latency_ms: int,
) -> None:
    """Serve the Golioth Management API emulator (faults: POST /_emulator/faults)."""
    from sync_pipelines.emulators.golioth import GoliothEmulatorConfig, run_golioth_emulator

    click.echo(
        f"Golioth emulator on http://{host}:{port}/v1/projects/{project_id} with {device_count} devices"
    )
    run_golioth_emulator(
        host,
        port,
        GoliothEmulatorConfig(
            project_id=project_id,
            api_key=api_key,
            device_count=device_count,
            seed=seed,
            int64_as_string=int64_as_string,
            latency_ms=latency_ms,
        ),
    )


@emulator.command("azure")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8788, show_default=True)
@click.option("--devices", "device_count", type=int, default=500, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--hub",
    "host_name",
    default="emulated-hub.azure-devices.net",
    show_default=True,
    help="HostName the clients sign (the connection string's).",
)
@click.option("--latency-ms", type=int, default=0, show_default=True)
def emulator_azure(
    host: str, port: int, device_count: int, seed: int, host_name: str, latency_ms: int
) -> None:
    """Serve the Azure IoT Hub service API emulator (faults: POST /_emulator/faults)."""
    from sync_pipelines.emulators.azure_iot import AzureIotEmulatorConfig, run_azure_emulator

    config = AzureIotEmulatorConfig(
        host_name=host_name, device_count=device_count, seed=seed, latency_ms=latency_ms
    )
    click.echo(f"Azure IoT Hub emulator on http://{host}:{port} with {device_count} devices")
    click.echo(f"connection string: {config.connection_string()}")
    run_azure_emulator(host, port, device_count, seed, host_name=host_name, latency_ms=latency_ms)


@emulator.command("aws")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8090, show_default=True)
@click.option("--devices", type=int, default=100, show_default=True)
def emulator_aws(host: str, port: int, devices: int) -> None:
    """Serve moto server behind the AWS-shaped fault proxy, seeded with things and shadows."""
    from sync_pipelines.peers.aws_iot import run_aws_peer

    run_aws_peer(port=port, devices=devices, host=host)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8090, show_default=True)
@click.option(
    "--database-url",
    envvar="SYNC_DATABASE_URL",
    default=None,
    help="The store (default: $SYNC_DATABASE_URL, else SQLite under $SYNC_HOME).",
)
def receiver(host: str, port: int, database_url: str | None) -> None:
    """Serve the webhook receiver: POST /webhooks/{provider}/{integration_id}, GET /health,
    GET /metrics."""
    from sync_pipelines.webhooks.app import run_receiver  # starlette/uvicorn only for this command

    run_receiver(host, port, database_url=database_url)


@main.command("peer")
@click.argument("provider")
@click.option("--devices", "device_count", type=int, default=200, show_default=True)
def peer(provider: str, device_count: int) -> None:
    """Start PROVIDER's local peer (any registered provider), seed it, print how to register an
    integration against it, and serve until interrupted."""
    import time

    from sync_pipelines.peers.registry import PEERS, new_peer

    if provider not in PEERS:
        raise click.BadParameter(
            f"unknown provider {provider!r} (known: {', '.join(sorted(PEERS))})",
            param_hint="PROVIDER",
        )
    import signal

    # SIGTERM (a benchmark or a supervisor stopping us) must stop the peer's own processes too
    signal.signal(signal.SIGTERM, _interrupt)
    local = new_peer(provider)
    local.start()
    try:
        local.seed(device_count)
        secret_refs, env = local.secret_env(f"PEER_{provider.upper()}")
        settings = " ".join(
            f"--setting {k}={v}"
            for k, v in local.integration_settings().items()
            if not isinstance(v, dict | list)
        )
        secrets = " ".join(f"--secret-env {k}={v}" for k, v in secret_refs.items())
        click.echo(f"{provider} peer serving {device_count} devices. In another shell:\n")
        for name, value in env.items():  # the peer's own test credentials, not real ones
            click.echo(f"  export {name}={shlex.quote(value)}")
        click.echo(
            f"  sync-pipelines integrations add --organization demo --id {provider}-local "
            f"--provider {provider} {settings} {secrets}\n\nCtrl-C stops it."
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        local.stop()


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        pairs[key] = value
    return pairs


from sync_pipelines.cli_alerts import alerts  # noqa: E402
from sync_pipelines.cli_dead_letters import dead_letters, quarantine, replay  # noqa: E402
from sync_pipelines.cli_demo import demo  # noqa: E402
from sync_pipelines.cli_health import health  # noqa: E402
from sync_pipelines.cli_peers import peers  # noqa: E402
from sync_pipelines.cli_reports import export, report, trace  # noqa: E402
from sync_pipelines.cli_retention import retention  # noqa: E402

for _command in (
    demo,
    replay,
    quarantine,
    dead_letters,
    retention,
    alerts,
    health,
    report,
    trace,
    export,
    peers,
):
    main.add_command(_command)


if __name__ == "__main__":
    main()
