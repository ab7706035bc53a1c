"""`sync-pipelines peers up` as `make ui` runs it: a real background process that starts every
provider's peer, registers them in the embedded store and writes the secrets' env file; the
integrations then connect with only that file's variables, and SIGTERM takes everything down."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from sync_pipelines_peers.cli.peers import ENV_FILE_NAME, LOCAL_ORG, local_integration_id
from sync_pipelines_peers.launchers.registry import PEERS

from sync_pipelines.cli import main
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import get_integration

START_TIMEOUT_S = 60  # moto and the broker start in a few seconds; a loaded CI machine needs slack


def _read_env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = shlex.split(line)[0].partition("=")
            pairs[name] = value
    return pairs


def _port(settings: dict) -> int:
    if "port" in settings:
        return int(settings["port"])
    return urlsplit(settings.get("base_url") or settings["endpoint_url"]).port


def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not path.exists():
        assert proc.poll() is None, f"peers up exited early: {proc.communicate()[1]}"
        assert time.monotonic() < deadline, f"no {path.name} after {START_TIMEOUT_S} s"
        time.sleep(0.2)


def test_peers_up_registers_reachable_integrations_and_sigterm_stops_them(tmp_path, monkeypatch):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "SYNC_DATABASE_URL"}  # the embedded default
    env.update(SYNC_HOME=str(home), DAGSTER_HOME=str(home))
    cli = Path(sys.executable).with_name("sync-pipelines")
    proc = subprocess.Popen(
        [str(cli), "--log-format", "json", "peers", "up", "--devices", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    env_file = home / ENV_FILE_NAME
    try:
        _wait_for(env_file, proc)
        assert env_file.stat().st_mode & 0o777 == 0o600
        secrets = _read_env_file(env_file)

        # the store as the process resolved it: SQLite under SYNC_HOME
        monkeypatch.delenv("SYNC_DATABASE_URL", raising=False)
        monkeypatch.setenv("SYNC_HOME", str(home))
        store = Store()
        with store.connect() as conn:
            registered = {
                p: get_integration(conn, LOCAL_ORG, local_integration_id(p)) for p in PEERS
            }
        assert all(i is not None and i.enabled for i in registered.values()), registered
        # the store holds only the names of the secrets; the env file gives every one a value
        assert {ref for i in registered.values() for ref in i.secret_refs.values()} <= set(secrets)

        for name, value in secrets.items():
            monkeypatch.setenv(name, value)
        for provider, integration in registered.items():
            result = CliRunner().invoke(
                main, ["--log-format", "json", "test-connection", integration.integration_id]
            )
            assert result.exit_code == 0, f"{provider}: {result.output}"
            assert '"ok": true' in result.output
    finally:
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(timeout=30)
    assert returncode == 0, proc.stderr.read()

    assert not env_file.exists()
    with store.connect() as conn:
        stopped = [get_integration(conn, LOCAL_ORG, local_integration_id(p)) for p in PEERS]
    store.dispose()
    assert not any(i.enabled for i in stopped)  # schedules leave them alone until the next start
    for integration in registered.values():
        with pytest.raises(OSError):  # every peer's socket is closed
            socket.create_connection(("127.0.0.1", _port(integration.settings)), timeout=2).close()
