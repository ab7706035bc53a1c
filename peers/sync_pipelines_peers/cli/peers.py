"""`sync-pipelines peers up`: every provider's local peer, seeded and registered in the store,
so `make ui` (dagster dev) has integrations whose schedules, sensors and partitions sync
something real.

Peers listen on free ports chosen at each start, so each start re-registers the integrations
(register_integration upserts) with the new addresses. The store keeps only the NAMES of the
secret environment variables; their values go to an env file the shell that starts dagster dev
sources (`set -a; . FILE`), because the run workers resolve secrets from their environment.
The file appears only once every peer is up and registered, so its existence is the readiness
signal; it is removed, and the integrations disabled, when the peers stop.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import time
from pathlib import Path

import click

from sync_pipelines.store.database import Store, default_sqlite_path
from sync_pipelines.store.integrations import Integration
from sync_pipelines_peers.launchers.contract import ProviderPeer

LOCAL_ORG = "local"
ENV_FILE_NAME = "local-peers.env"


def local_integration_id(provider: str) -> str:
    return f"{provider.replace('_', '-')}-local"


def default_env_file() -> Path:
    """$SYNC_HOME/local-peers.env: beside the embedded store (same SYNC_HOME/DAGSTER_HOME rule)."""
    return default_sqlite_path().parent / ENV_FILE_NAME


@click.group()
def peers() -> None:
    """Run every provider's local peer for the Dagster UI."""


@peers.command("up")
@click.option(
    "--devices",
    "device_count",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Devices seeded in each peer.",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Where the peers' secrets are written (default: $SYNC_HOME/{ENV_FILE_NAME}).",
)
@click.option(
    "--poll-interval",
    "poll_interval_s",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="Poll interval of the registered integrations.",
)
def peers_up(device_count: int, env_file: Path | None, poll_interval_s: int) -> None:
    """Start, seed and register every provider's local peer (organization `local`), write the
    secrets' env file, and serve until SIGTERM/SIGINT; then stop the peers, remove the file and
    disable the integrations."""
    from sync_pipelines.outbound import ALLOW_ENV, LOOPBACK_ALLOWANCE
    from sync_pipelines.store.migrations import ensure_migrated
    from sync_pipelines_peers.launchers.registry import PEERS, new_peer

    env_file = env_file or default_env_file()
    env_file.unlink(missing_ok=True)  # a stale file would announce peers that are not up
    # a supervisor's SIGTERM (make ui's trap) must stop the peers' own processes (moto, broker)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # even when started in the background with it ignored
    # the peers listen on loopback, which the service calls only where allowed (outbound.py):
    # here, and in the syncing processes that read the env file
    os.environ.setdefault(ALLOW_ENV, LOOPBACK_ALLOWANCE)
    store = Store()
    started: list[ProviderPeer] = []
    registered: list[Integration] = []
    try:
        ensure_migrated(store)
        env: dict[str, str] = {ALLOW_ENV: os.environ[ALLOW_ENV]}
        for provider in PEERS:
            peer = new_peer(provider)
            started.append(peer)  # before start(): a half-started peer is stopped too
            peer.start()
            peer.seed(device_count)
            integration, peer_env = _register(store, peer, poll_interval_s)
            registered.append(integration)
            env.update(peer_env)
        _write_env_file(env_file, env)
        click.echo(f"local peers serving {device_count} devices each, organization {LOCAL_ORG!r}:")
        for integration in registered:
            click.echo(f"  {integration.integration_id}\t{_address(integration.settings)}")
        click.echo(f"secrets for the syncing processes: {env_file}\nSIGTERM or Ctrl-C stops them.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        env_file.unlink(missing_ok=True)
        for peer in reversed(started):
            peer.stop()
        _disable(store, registered)
        store.dispose()


def _register(
    store: Store, peer: ProviderPeer, poll_interval_s: int
) -> tuple[Integration, dict[str, str]]:
    from sync_pipelines.sync.integration_config import register_integration

    secret_refs, env = peer.secret_env(f"LOCAL_{peer.provider.upper()}")
    integration = Integration(
        integration_id=local_integration_id(peer.provider),
        organization_id=LOCAL_ORG,
        provider=peer.provider,
        name=f"{peer.provider} (local peer)",
        settings=peer.integration_settings(),
        secret_refs=secret_refs,
        poll_interval_s=poll_interval_s,
    )
    register_integration(store, integration)  # upsert: this start's ports replace the last ones
    return integration, env


def _write_env_file(path: Path, env: dict[str, str]) -> None:
    """KEY=VALUE lines (shell-quoted) readable by the owner only, written to a temporary name
    and renamed, so whoever waits for the file never reads half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "# Throwaway credentials of the local peers started by `sync-pipelines peers up` (the\n"
        "# emulators, moto and the MQTT broker on this machine): not real cloud credentials.\n"
        "# Rewritten at each start; removed when the peers stop.\n"
        + "".join(f"{name}={shlex.quote(value)}\n" for name, value in sorted(env.items()))
    )
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _disable(store: Store, integrations: list[Integration]) -> None:
    """Stopped peers: the schedules and sensors leave their integrations alone until next start."""
    from sync_pipelines.sync.integration_config import register_integration

    for integration in integrations:
        register_integration(store, dataclasses.replace(integration, enabled=False))


def _address(settings: dict) -> str:
    if "host" in settings:
        return f"{settings['host']}:{settings['port']}"
    return str(settings.get("base_url") or settings.get("endpoint_url"))


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt
