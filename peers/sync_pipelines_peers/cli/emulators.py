"""`sync-pipelines emulator golioth|azure|aws` and `sync-pipelines peer PROVIDER`: serve one
provider's local peer in the foreground (registered with the product's CLI through the
`sync_pipelines.cli` entry points of this package)."""

from __future__ import annotations

import shlex

import click


@click.group()
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
@click.option(
    "--rate-limit-rps",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Meter the project's API like Golioth: a token bucket of N requests a second (burst: "
    "one second's worth) answering 429 + Retry-After beyond it. Default: unlimited.",
)
def emulator_golioth(
    host: str,
    port: int,
    device_count: int,
    seed: int,
    api_key: str,
    project_id: str,
    int64_as_string: bool,
    latency_ms: int,
    rate_limit_rps: float | None,
) -> None:
    """Serve the Golioth Management API emulator (faults: POST /_emulator/faults)."""
    from sync_pipelines_peers.emulators.golioth import GoliothEmulatorConfig, run_golioth_emulator

    limited = f", limited to {rate_limit_rps:g} req/s" if rate_limit_rps else ""
    click.echo(
        f"Golioth emulator on http://{host}:{port}/v1/projects/{project_id} with "
        f"{device_count} devices{limited}"
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
            token_bucket_rps=rate_limit_rps,
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
    from sync_pipelines_peers.emulators.azure_iot import AzureIotEmulatorConfig, run_azure_emulator

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
    from sync_pipelines_peers.launchers.aws_iot import run_aws_peer

    run_aws_peer(port=port, devices=devices, host=host)


@click.command("peer")
@click.argument("provider")
@click.option("--devices", "device_count", type=int, default=200, show_default=True)
def peer(provider: str, device_count: int) -> None:
    """Start PROVIDER's local peer (any registered provider), seed it, print how to register an
    integration against it, and serve until interrupted."""
    import time

    from sync_pipelines_peers.launchers.registry import PEERS, new_peer

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
