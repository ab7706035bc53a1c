"""A sync process killed mid-way (SIGKILL, no cleanup) loses nothing and doubles nothing:
the re-run resumes from the last committed cursor and ends with exactly N rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from sync_pipelines.store.devices import count_devices
from sync_pipelines.store.sync_state import get_cursor, sync_log_rows
from sync_pipelines.sync.inventory import sync_devices

from ..conftest import GOLIOTH_KEY_ENV


def _committed_cursor(store, integ):
    with store.connect() as conn:
        return get_cursor(conn, integ.organization_id, integ.integration_id, "devices")


def test_killed_sync_is_resumed_without_loss_or_duplicates(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=1500)
    # slow pages so the kill lands mid-scan
    running.emulator.add_faults({"kind": "latency", "path": "/devices$", "latency_ms": 60})
    integ = register_golioth(store, running, page_concurrency=1)
    env = {
        **os.environ,
        "SYNC_DATABASE_URL": store.url,
        GOLIOTH_KEY_ENV: running.api_key,
        "SYNC_LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sync_pipelines.cli",
            "sync",
            integ.integration_id,
            "--stream",
            "devices",
            "--batch-size",
            "100",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            cursor = _committed_cursor(store, integ)
            if cursor and cursor["next_page"] >= 4:
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
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
