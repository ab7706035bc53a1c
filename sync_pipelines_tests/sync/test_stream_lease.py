"""One sync per (integration, stream) at a time, fenced: a second sync waits, then fails naming
the holder's run; a sync whose lease was taken over writes nothing more and ends `fenced`; the
stale-sync sensor's `close_abandoned_syncs` closes what died."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import FencedError, LeaseHeldError
from sync_pipelines.observability.activity import IMPORT
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.store.devices import count_devices
from sync_pipelines.store.sync_leases import read_lease
from sync_pipelines.store.sync_state import start_sync_log, sync_log_rows
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.sync.stream_lease import (
    LEASE_HEARTBEAT_ENV,
    LEASE_TTL_ENV,
    LEASE_WAIT_ENV,
    close_abandoned_syncs,
)
from sync_pipelines.sync.sync_run import SyncRun

from ..conftest import GOLIOTH_KEY_ENV


def _cli_sync(store, running, integ, **env_extra):
    env = {
        **os.environ,
        "SYNC_DATABASE_URL": store.url,
        GOLIOTH_KEY_ENV: running.api_key,
        "SYNC_LOG_FORMAT": "json",
        **env_extra,
    }
    return subprocess.Popen(
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
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_two_syncs_of_one_integration_one_runs_the_other_fails_naming_it(
    store, golioth_factory, register_golioth
):
    running = golioth_factory(device_count=600)
    running.emulator.add_faults({"kind": "latency", "path": "/devices$", "latency_ms": 300})
    integ = register_golioth(store, running, page_concurrency=1)
    procs = [_cli_sync(store, running, integ, **{LEASE_WAIT_ENV: "1"}) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes[0] == 0 and codes[1] != 0, [o[1].decode()[-2000:] for o in outs]
    winner = next(o for p, o in zip(procs, outs, strict=True) if p.returncode == 0)
    loser = next(o for p, o in zip(procs, outs, strict=True) if p.returncode != 0)
    winner_run = json.loads(winner[0].decode().strip().splitlines()[-1])["run_id"]
    err = loser[1].decode()
    # the CLI's one line (the lease error's own words), not a traceback
    (last,) = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert f"another sync holds the lease (run {winner_run}, since " in last, err[-2000:]
    # (the JSON log line keeps the stack inside its string; no traceback of its own is printed)
    assert not any(line.startswith("Traceback") for line in err.splitlines()), err[-2000:]

    with store.connect() as conn:
        rows = sync_log_rows(conn, integ.organization_id, integ.integration_id)
        assert count_devices(conn, integ.organization_id, integ.integration_id) == 600
        dupes = conn.execute(
            sa.text(
                "SELECT count(*) FROM (SELECT external_id FROM devices WHERE integration_id = :i "
                "GROUP BY external_id HAVING count(*) > 1) d"
            ),
            {"i": integ.integration_id},
        ).scalar()
    assert dupes == 0
    assert [(r["run_id"], r["status"]) for r in rows] == [(winner_run, "success")]


def test_a_sync_whose_lease_was_taken_over_is_fenced_and_writes_nothing_more(
    store, golioth_factory, register_golioth, open_session, monkeypatch
):
    running = golioth_factory(device_count=500)  # five pages of 100
    # the stale sync stalls on its third page, past its (short) lease
    running.emulator.add_faults(
        {"kind": "latency", "path": "/devices$", "latency_ms": 3000, "after": 2, "times": 1}
    )
    integ = register_golioth(store, running, page_concurrency=1)
    monkeypatch.setenv(LEASE_TTL_ENV, "0.5")
    monkeypatch.setenv(LEASE_HEARTBEAT_ENV, "0")  # a stalled process: no heartbeat either
    outcome: dict[str, object] = {}

    def stale_sync() -> None:
        try:
            with open_session(store, integ.integration_id, run_id="run-stale") as session:
                outcome["result"] = sync_devices(session, batch_size=100)
        except Exception as exc:
            outcome["error"] = exc

    stale = threading.Thread(target=stale_sync)
    stale.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with store.connect() as conn:
            lease = read_lease(conn, integ.organization_id, integ.integration_id, "devices")
            stored = count_devices(conn, integ.organization_id, integ.integration_id)
        if lease is not None and stored >= 200:
            break
        time.sleep(0.02)
    monkeypatch.delenv(LEASE_TTL_ENV)
    monkeypatch.delenv(LEASE_HEARTBEAT_ENV)

    with open_session(store, integ.integration_id, run_id="run-new") as session:
        result = sync_devices(session, batch_size=100)  # waits out the stale lease, takes over
    assert result.status == "success"
    assert result.cursor_before is not None  # resumed where the stale one committed
    stale.join(timeout=30)

    assert isinstance(outcome.get("error"), FencedError), outcome
    with store.connect() as conn:
        rows = {
            r["run_id"]: r for r in sync_log_rows(conn, integ.organization_id, integ.integration_id)
        }
        assert count_devices(conn, integ.organization_id, integ.integration_id) == 500
        by_run = dict(
            conn.execute(
                sa.text(
                    "SELECT last_run_id, count(*) FROM devices WHERE integration_id = :i "
                    "GROUP BY last_run_id"
                ),
                {"i": integ.integration_id},
            ).all()
        )
        state_run = conn.execute(
            sa.text("SELECT last_run_id FROM integration_sync_state WHERE integration_id = :i"),
            {"i": integ.integration_id},
        ).scalar()
    assert rows["run-stale"]["status"] == "fenced"
    assert rows["run-stale"]["error_type"] == "fenced"
    assert rows["run-new"]["status"] == "success"
    # the stale sync's third page never committed: the new sync wrote pages 3-5, and the cursor
    assert by_run == {"run-stale": 200, "run-new": 300}
    assert state_run == "run-new"


def test_a_sync_waits_for_the_lease_then_fails_not_retryable(
    store, golioth, register_golioth, open_session, monkeypatch
):
    integ = register_golioth(store, golioth)
    monkeypatch.setenv(LEASE_WAIT_ENV, "0.3")
    with (
        open_session(store, integ.integration_id, run_id="run-holder") as holder,
        SyncRun(holder, "devices", IMPORT, log=get_logger("test")),
    ):
        started = time.monotonic()
        with (
            open_session(store, integ.integration_id, run_id="run-second") as second,
            pytest.raises(LeaseHeldError) as refused,
        ):
            sync_devices(second)
        assert 0.3 <= time.monotonic() - started < 5
    assert not refused.value.retryable
    assert refused.value.holder_run_id == "run-holder"
    assert "run run-holder, since " in str(refused.value)
    with store.connect() as conn:
        rows = sync_log_rows(conn, integ.organization_id, integ.integration_id)
    assert [r["run_id"] for r in rows] == ["run-holder"]  # the refused sync wrote nothing


def test_stale_sync_sensor_closes_a_dead_sync_and_leaves_a_live_one(
    store, golioth, register_golioth, open_session
):
    integ = register_golioth(store, golioth)
    o, i = integ.organization_id, integ.integration_id
    with store.transaction() as conn:  # a sync that died before leases existed
        dead = start_sync_log(conn, o, i, "device_states", "run-dead", None)
    with (
        open_session(store, i, run_id="run-live") as session,
        SyncRun(session, "devices", IMPORT, log=get_logger("test")) as live,
    ):
        assert close_abandoned_syncs(store) == [dead]
        with store.connect() as conn:
            rows = {r["id"]: r for r in sync_log_rows(conn, o, i)}
        assert rows[dead]["status"] == "abandoned"
        assert rows[live.sync_id]["status"] == "running"
        # an hour on, the live one's lease has expired too: it is closed, and fenced
        later = utc_now() + timedelta(hours=1)
        assert close_abandoned_syncs(store, later) == [live.sync_id]
        with pytest.raises(FencedError), store.transaction() as conn:
            live.fence(conn)
    with store.connect() as conn:
        rows = {r["id"]: r for r in sync_log_rows(conn, o, i)}
    assert rows[live.sync_id]["status"] == "fenced"  # its end says what it was: a stale writer
