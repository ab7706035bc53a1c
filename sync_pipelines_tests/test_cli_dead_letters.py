"""`replay`, `quarantine` and `dead-letters list|requeue` through click's runner, against a real
store (SQLite and PostgreSQL, found through SYNC_DATABASE_URL) and, for replay, a real Golioth
emulator. The commands are mounted on a group of their own here, as `cli.py` mounts them."""

from __future__ import annotations

import json
import shlex
from datetime import timedelta

import click
import pytest
from click.testing import CliRunner, Result

from sync_pipelines.cli.dead_letters import dead_letters, quarantine, replay
from sync_pipelines.clock import utc_now
from sync_pipelines.observability.activity import REPLAY
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.dead_letters import (
    DeadLetterPolicy,
    DeadLetterSelection,
    FailedRecord,
    list_dead_letters,
    record_dead_letters,
)
from sync_pipelines.store.device_changes import integration_changes
from sync_pipelines.store.devices import get_device
from sync_pipelines_tests.owners import own_integrations


@click.group()
def cli() -> None:
    """The dead-letter commands as `sync-pipelines` carries them."""


for command in (replay, quarantine, dead_letters):
    cli.add_command(command)


@pytest.fixture
def cli_store(store, monkeypatch):
    monkeypatch.setenv("SYNC_DATABASE_URL", store.url)
    return store


def _invoke(command: str) -> Result:
    return CliRunner().invoke(cli, shlex.split(command))


def _printed(result: Result) -> list[dict]:
    """The command's own JSON lines (structured log lines carry an `event`)."""
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    return [line for line in lines if "event" not in line]


def _fail(store, integration_id, *external_ids, organization_id="org-a", when=None, payloads=None):
    with store.transaction() as conn:
        own_integrations(conn, organization_id, integration_id)
        record_dead_letters(
            conn,
            organization_id=organization_id,
            integration_id=integration_id,
            provider="golioth",
            records=[
                FailedRecord(
                    stream="devices",
                    dedupe_key=e,
                    error_type="validation",
                    error_message="bad",
                    payload=(payloads or {}).get(e, {"id": e, "hardwareIds": "oops"}),
                    external_id=e,
                )
                for e in external_ids
            ],
            policy=DeadLetterPolicy(),
            run_id="run-sync",
            now=when or utc_now(),
        )
    with store.connect() as conn:
        return {
            d.external_id: d
            for d in list_dead_letters(
                conn, organization_id, DeadLetterSelection(integration_id=integration_id)
            )
        }


def _statuses(store, organization_id="org-a"):
    with store.connect() as conn:
        return {d.external_id: d.status for d in list_dead_letters(conn, organization_id)}


def test_list_prints_one_json_line_per_letter_of_the_organization_only(cli_store):
    _fail(cli_store, "golioth-a", "a1", "a2")
    _fail(cli_store, "golioth-b", "b1", organization_id="org-b")
    result = _invoke("dead-letters list --organization org-a --status pending --json")
    assert result.exit_code == 0, result.output
    printed = _printed(result)
    assert [(p["external_id"], p["status"], p["integration_id"]) for p in printed] == [
        ("a1", "pending", "golioth-a"),
        ("a2", "pending", "golioth-a"),
    ]
    assert printed[0]["payload"] == {"id": "a1", "hardwareIds": "oops"}


def test_quarantine_by_id_sets_the_letter_aside_with_an_activity_row(cli_store):
    letters = _fail(cli_store, "golioth-a", "a1", "a2")
    result = _invoke(
        f"quarantine --organization org-a --id {letters['a1'].id} --reason 'known bad firmware'"
    )
    assert result.exit_code == 0, result.output
    assert _printed(result)[-1] == {"action": "quarantined", "count": 1}
    assert _statuses(cli_store) == {"a1": "quarantined", "a2": "pending"}
    with cli_store.connect() as conn:
        [row] = activity_rows(conn, "org-a", activity_type=REPLAY)
    assert (
        row["metadata"]["action"] == "quarantine"
        and row["metadata"]["reason"] == "known bad firmware"
    )
    assert row["metadata"]["dead_letter_id"] == letters["a1"].id and row["run_id"].startswith(
        "cli-"
    )


def test_quarantine_by_id_range_takes_exactly_the_range(cli_store):
    letters = _fail(cli_store, "golioth-a", "a1", "a2", "a3", "a4")
    result = _invoke(
        f"quarantine --organization org-a --from-id {letters['a2'].id} --to-id {letters['a3'].id}"
    )
    assert result.exit_code == 0, result.output
    assert _statuses(cli_store) == {
        "a1": "pending",
        "a2": "quarantined",
        "a3": "quarantined",
        "a4": "pending",
    }


def test_an_unknown_or_foreign_id_is_an_error_and_changes_nothing(cli_store):
    foreign = _fail(cli_store, "golioth-b", "b1", organization_id="org-b")["b1"]
    _fail(cli_store, "golioth-a", "a1")
    result = _invoke(f"quarantine --organization org-a --id {foreign.id}")
    assert result.exit_code != 0 and "has no dead letter" in result.output
    assert _statuses(cli_store, "org-b") == {"b1": "pending"}


def test_a_command_that_names_no_letters_is_refused(cli_store):
    _fail(cli_store, "golioth-a", "a1")
    result = _invoke("replay --organization org-a")
    assert result.exit_code == 2 and "--all" in result.output
    assert _statuses(cli_store) == {"a1": "pending"}


def test_replay_by_id_resolves_the_letter_and_a_second_replay_skips_it(
    cli_store, golioth_factory, register_golioth
):
    running = golioth_factory(device_count=3)
    integ = register_golioth(cli_store, running)
    good = next(running.emulator.device_ids())
    letters = _fail(
        cli_store,
        integ.integration_id,
        good,
        "broken",
        payloads={good: running.emulator.get_device(good)},
    )

    first = _invoke(
        f"replay --organization org-a --id {letters[good].id} --id {letters['broken'].id}"
    )
    second = _invoke(f"replay --organization org-a --id {letters[good].id}")

    assert first.exit_code == 0, first.output
    summary = next(p for p in _printed(first) if "integration_id" in p and "resolved" in p)
    assert (summary["resolved"], summary["retrying"], summary["status"]) == (1, 1, "partial")
    assert _statuses(cli_store) == {good: "resolved", "broken": "retrying"}
    assert second.exit_code == 0, second.output
    assert _printed(second)[0] == {
        "action": "skipped",
        "id": letters[good].id,
        "status": "resolved",
    }
    with cli_store.connect() as conn:
        assert (
            get_device(conn, "org-a", integ.integration_id, good)["last_run_id"]
            == summary["run_id"]
        )


def test_replay_records_one_operator_row_per_letter_with_its_outcome(
    cli_store, golioth_factory, register_golioth, monkeypatch
):
    monkeypatch.setenv("SYNC_OPERATOR", "oncall@example.com")
    running = golioth_factory(device_count=3)
    integ = register_golioth(cli_store, running)
    good = next(running.emulator.device_ids())
    letters = _fail(
        cli_store,
        integ.integration_id,
        good,
        "broken",
        payloads={good: running.emulator.get_device(good)},
    )
    result = _invoke(
        f"replay --organization org-a --id {letters[good].id} --id {letters['broken'].id}"
    )
    assert result.exit_code == 0, result.output
    with cli_store.connect() as conn:
        rows = activity_rows(conn, "org-a", activity_type=REPLAY)
    actions = sorted(
        (r["metadata"]["external_id"], r["metadata"]["outcome"], r["metadata"]["by"])
        for r in rows
        if r["metadata"].get("action") == "replay"
    )
    assert actions == sorted([("broken", "retrying", "cli"), (good, "resolved", "cli")])
    assert {r["metadata"]["actor"] for r in rows if "actor" in r["metadata"]} == {
        "cli:oncall@example.com"
    }
    # the devices' history: the failed replay is a rejection by the replay's run, not the sync's
    with cli_store.connect() as conn:
        broken = [
            c
            for c in integration_changes(conn, "org-a", integ.integration_id)
            if c.device_id == "broken"
        ]
    assert [(c.kind, c.source, c.run_id) for c in broken] == [  # oldest first
        ("rejected", "sync", "run-sync"),
        ("rejected", "replay", rows[0]["run_id"]),
    ]
    assert len({r["run_id"] for r in rows}) == 1  # the replay's rows and the operator's: one run


def test_replay_by_time_range_with_dry_run_changes_nothing_then_replays_the_window(
    cli_store, golioth_factory, register_golioth
):
    running = golioth_factory(device_count=3)
    integ = register_golioth(cli_store, running)
    ids = list(running.emulator.device_ids())
    now = utc_now().replace(microsecond=0)
    wires = {i: running.emulator.get_device(i) for i in ids}
    _fail(cli_store, integ.integration_id, ids[0], when=now - timedelta(hours=3), payloads=wires)
    _fail(cli_store, integ.integration_id, ids[1], when=now - timedelta(hours=1), payloads=wires)
    window = (
        f"--since '{(now - timedelta(hours=2)):%Y-%m-%d %H:%M:%S}' "
        f"--until '{(now - timedelta(minutes=30)):%Y-%m-%d %H:%M:%S}'"
    )

    dry = _invoke(f"replay --organization org-a {window} --dry-run")
    assert dry.exit_code == 0, dry.output
    assert [p.get("external_id") for p in _printed(dry)] == [ids[1], None]
    assert _statuses(cli_store) == {ids[0]: "pending", ids[1]: "pending"}

    real = _invoke(f"replay --organization org-a --integration {integ.integration_id} {window}")
    assert real.exit_code == 0, real.output
    assert _statuses(cli_store) == {ids[0]: "pending", ids[1]: "resolved"}


def test_requeue_puts_a_quarantined_letter_back_in_line(cli_store):
    letters = _fail(cli_store, "golioth-a", "a1")
    _invoke(f"quarantine --organization org-a --id {letters['a1'].id}")
    result = _invoke(f"dead-letters requeue --organization org-a --id {letters['a1'].id}")
    assert result.exit_code == 0, result.output
    [printed, summary] = _printed(result)
    assert (printed["status"], printed["attempts"], summary["count"]) == ("pending", 0, 1)


def test_list_prints_a_table_with_the_failed_request_and_errors_cut_between_words(cli_store):
    long_error = "golioth GET /devices/a1/data -> HTTP 500: " + "upstream unavailable " * 10
    with cli_store.transaction() as conn:
        own_integrations(conn, "org-a", "golioth-a")
        record_dead_letters(
            conn,
            organization_id="org-a",
            integration_id="golioth-a",
            provider="golioth",
            records=[
                FailedRecord(
                    stream="device_states",
                    dedupe_key="a1",
                    error_type="transient",
                    error_message=long_error,
                    payload={"external_id": "a1"},
                    external_id="a1",
                    request_id="req-0001",
                )
            ],
            policy=DeadLetterPolicy(),
            run_id="run-sync",
            now=utc_now(),
        )
    result = _invoke("dead-letters list --organization org-a")
    assert result.exit_code == 0, result.output
    header, row = [line for line in result.output.splitlines() if not line.startswith("{")]
    assert header.split() == [
        "ID",
        "INTEGRATION",
        "STREAM",
        "DEVICE",
        "STATUS",
        "ATTEMPTS",
        "LAST",
        "FAILED",
        "REQUEST",
        "ERROR",
    ]
    # each column starts where its header does (widths from the content)
    for name, value in [("DEVICE", "a1"), ("REQUEST", "req-0001"), ("ATTEMPTS", "0/5")]:
        assert row[header.index(name) :].startswith(value)
    error = row[header.index("ERROR") :]
    assert error.startswith("transient: golioth GET /devices/a1/data -> HTTP 500: upstream")
    assert error.endswith("unavailable …") and len(error) <= 80
