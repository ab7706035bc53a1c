"""A device's own story: its state reads failed three times against the Golioth emulator (a 500
each attempt, one call), and `sync-pipelines trace DEVICE` shows those attempts and the dead
letter with the request id that failed — on SQLite and Postgres, through click's runner — and
the console's search and trace page show them too."""

from __future__ import annotations

import click
import httpx
import pytest
from click.testing import CliRunner
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.cli.reports import trace
from sync_pipelines.console.server import create_console_server
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.dead_letters import list_dead_letters
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.tracing.chain import build_chain
from sync_pipelines_tests.console.conftest import CONSOLE_ENV

ORG = "org-a"


@click.group()
def cli() -> None:
    """`trace` as `sync-pipelines` carries it."""


cli.add_command(trace)


@pytest.fixture
def failed_reads(store, golioth_factory, register_golioth, open_session, monkeypatch):
    """A device whose state read failed on all three attempts; the others' were fine."""
    running = golioth_factory(device_count=5)
    integ = register_golioth(
        store,
        running,
        state_source="device",  # the story is one device's per-device read
        retry_max_attempts=3,
        retry_base_backoff_s=0,
        retry_jitter_s=0,
    )
    device = sorted(running.emulator.device_ids())[2]
    with open_session(store, integ.integration_id) as session:
        sync_devices(session)
        # the device's state path only, more often than the call is tried
        running.emulator.add_faults(
            {"kind": "server_error", "status": 500, "path": f"/{device}/data$", "times": 3}
        )
        result = sync_device_states(session)
    assert (result.status, result.counts.failed) == ("partial", 1)
    monkeypatch.setenv("SYNC_DATABASE_URL", store.url)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return store, device


def test_every_attempt_of_a_state_read_names_its_device(failed_reads):
    store, device = failed_reads
    with store.connect() as conn:
        calls = [
            r
            for r in activity_rows(conn, ORG, activity_type="http_request")
            if r["endpoint"] and f"/{device}/data" in r["endpoint"]
        ]
        (letter,) = list_dead_letters(conn, ORG)
    assert [(r["attempt"], r["status_code"], r["external_id"]) for r in calls] == [
        (1, 500, device),
        (2, 500, device),
        (3, 500, device),
    ]
    # the dead letter holds the failed call's request id in its own field
    assert letter.external_id == device and letter.request_id == calls[0]["request_id"]


def test_trace_of_the_device_shows_its_three_failed_attempts_and_its_dead_letter(failed_reads):
    store, device = failed_reads
    with store.connect() as conn:
        (letter,) = list_dead_letters(conn, ORG)
        chain = build_chain(conn, ORG, device)
    (failed_call,) = [c for c in chain.calls if c.failed]
    assert failed_call.request_id == letter.request_id
    assert [(a["attempt"], a["status"]) for a in failed_call.attempts] == [
        (1, "retrying"),
        (2, "retrying"),
        (3, "failed"),
    ]

    result = CliRunner().invoke(cli, ["trace", device, "--organization", ORG])

    assert result.exit_code == 0, result.output
    out = result.output
    assert f"[request {letter.request_id}]" in out
    for attempt in ("#1 500 retrying", "#2 500 retrying", "#3 500 failed"):
        assert attempt in out
    (letter_line,) = [line for line in out.splitlines() if line.startswith(f"  {letter.id}")]
    assert f"device {device}" in letter_line and f"request {letter.request_id})" in letter_line
    # the listing call that wrote the device row is there too, and the rejected record
    assert "record_rejected" in out


def test_the_console_search_and_trace_of_the_device_show_its_failed_reads(failed_reads):
    store, device = failed_reads
    with store.connect() as conn:
        (letter,) = list_dead_letters(conn, ORG)
    admin = {"authorization": f"Bearer {CONSOLE_ENV['SYNC_CONSOLE_TOKEN']}"}
    with (
        EmulatorServer(create_console_server(store, environ=CONSOLE_ENV)) as server,
        httpx.Client(base_url=f"{server.url}/console", headers=admin, timeout=30) as console,
    ):
        found = console.get("/api/activity", params={"q": device, "limit": 500})
        page = console.get("/trace", params={"id": device, "organization": ORG})
    assert found.status_code == 200 and page.status_code == 200, found.text + page.text
    attempts = [
        (r["attempt"], r["status"])
        for r in found.json()["rows"]
        if r["request_id"] == letter.request_id and r["activity_type"] == "http_request"
    ]
    assert sorted(attempts) == [(1, "retrying"), (2, "retrying"), (3, "failed")]
    assert f"request {letter.request_id})" in page.text  # the dead letter, in the chain's text
    assert page.text.count(letter.request_id) >= 4  # each attempt's row names the call


def test_trace_of_the_device_shows_its_history_newest_first(failed_reads):
    """The device's history (store/device_changes.py) as a timeline: its state read refused,
    then (older) its creation by the listing sync."""
    store, device = failed_reads
    with store.connect() as conn:
        (letter,) = list_dead_letters(conn, ORG)
    result = CliRunner().invoke(cli, ["trace", device, "--organization", ORG])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("  history of "))
    assert device in lines[start] and "newest first" in lines[start]
    history = [line for line in lines[start + 1 :] if line.startswith("    ")]
    assert len(history) == 2
    rejected, created = history
    assert " rejected " in rejected and f"request {letter.request_id}:" in rejected
    assert (letter.error_message or "")[:40] in rejected
    assert " created " in created and " sync " in created and "name null → " in created
