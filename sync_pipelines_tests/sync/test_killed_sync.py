"""A sync process killed mid-way (SIGKILL, no cleanup) loses nothing and doubles nothing:
the re-run resumes from the last committed cursor and ends with exactly N rows, and closes the
killed sync's rows as `abandoned` (its process is gone: the re-run does not wait for its lease)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.devices import count_devices
from sync_pipelines.store.sync_state import get_cursor, sync_log_rows
from sync_pipelines.sync.inventory import sync_devices

from ..conftest import GOLIOTH_KEY_ENV


def _committed_cursor(store, integ):
    with store.connect() as conn:
        return get_cursor(conn, integ.organization_id, integ.integration_id, "devices")


def _cli_sync(store, running, integ) -> tuple[dict[str, str], list[str]]:
    """The environment and command of `sync-pipelines sync ID --stream devices` for a process
    of its own."""
    env = {
        **os.environ,
        "SYNC_DATABASE_URL": store.url,
        GOLIOTH_KEY_ENV: running.api_key,
        "SYNC_LOG_FORMAT": "json",
    }
    command = [sys.executable, "-m", "sync_pipelines.cli", "sync", integ.integration_id]
    return env, command + ["--stream", "devices", "--batch-size", "100"]


def _kill_cli_sync_after_pages(store, running, integ, *, pages: int):
    """Start the CLI sync and SIGKILL it (no cleanup) once `pages` pages are committed; returns
    its environment and command, to run it again."""
    env, command = _cli_sync(store, running, integ)
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            cursor = _committed_cursor(store, integ)
            if cursor and cursor["next_page"] >= pages:
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    return env, command


def test_killed_sync_is_resumed_without_loss_or_duplicates(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=1500)
    # slow pages so the kill lands mid-scan
    running.emulator.add_faults({"kind": "latency", "path": "/devices$", "latency_ms": 60})
    integ = register_golioth(store, running, page_concurrency=1)
    _kill_cli_sync_after_pages(store, running, integ, pages=4)
    with store.connect() as conn:
        stored_at_kill = count_devices(conn, integ.organization_id, integ.integration_id)
        (interrupted,) = sync_log_rows(conn, integ.organization_id, integ.integration_id)
    assert 0 < stored_at_kill < 1500
    assert interrupted["status"] == "running"  # killed: no chance to close its row

    running.emulator.clear_faults()
    with open_session(store, integ.integration_id) as session:
        result = sync_devices(session)
    assert result.status == "success"
    assert result.cursor_before["next_page"] >= 4  # resumed, not restarted
    with store.connect() as conn:
        assert count_devices(conn, integ.organization_id, integ.integration_id) == 1500
    assert _committed_cursor(store, integ) is None


def test_rerun_of_a_killed_sync_closes_it_as_abandoned(store, golioth_factory, register_golioth):
    running = golioth_factory(device_count=1000)
    running.emulator.add_faults({"kind": "latency", "path": "/devices$", "latency_ms": 60})
    integ = register_golioth(store, running, page_concurrency=1)
    env, command = _kill_cli_sync_after_pages(store, running, integ, pages=3)
    running.emulator.clear_faults()

    # the same command again: no waiting for the dead process's lease
    started = time.monotonic()
    rerun = subprocess.run(command, env=env, capture_output=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr.decode()[-3000:]
    assert time.monotonic() - started < 20

    with store.connect() as conn:
        killed, good = sync_log_rows(conn, integ.organization_id, integ.integration_id)
        assert count_devices(conn, integ.organization_id, integ.integration_id) == 1000
        imports = activity_rows(
            conn, integ.organization_id, integration_id=integ.integration_id, activity_type="import"
        )
    assert (killed["status"], good["status"]) == ("abandoned", "success")
    assert killed["completed_at"] is not None
    assert killed["error_type"] == "abandoned"
    assert killed["error_message"].startswith("process died: no heartbeat since")
    assert killed["run_id"] in killed["error_message"]
    assert not [r for r in imports if r["status"] == "started"]
    (killed_op,) = [r for r in imports if r["run_id"] == killed["run_id"]]
    assert (killed_op["status"], killed_op["error_type"]) == ("failed", "abandoned")
