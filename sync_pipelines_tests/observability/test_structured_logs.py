"""Structured logs: JSON lines with the correlation fields, on stdout and in Dagster's event log."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import dagster as dg
import pytest
import yaml

from sync_pipelines.defs.provider_assets import PROVIDER_DEFS
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.observability.logging import configure_logging

golioth_devices = PROVIDER_DEFS["golioth"].devices


@pytest.fixture(autouse=True)
def _debug_json_logs():
    """These tests read debug lines: the level they need, whatever an earlier test in this
    worker left behind (Dagster's managed python loggers set the `sync_pipelines` logger's
    level for a run and keep it)."""
    configure_logging("json", "DEBUG", force=True)


def _json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
    return lines


def _run(instance, sqlite_store, integ):
    instance.add_dynamic_partitions("golioth_integrations", [integ.integration_id])
    return dg.materialize(
        [golioth_devices],
        partition_key=integ.integration_id,
        instance=instance,
        resources={"store": SyncStoreResource(database_url=sqlite_store.url)},
    )


def _run_failing(sqlite_store, golioth, integ) -> None:
    """The devices asset, with the device list answering a body that is not JSON."""
    golioth.emulator.add_faults({"kind": "malformed_json", "path": "/devices$"})
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("golioth_integrations", [integ.integration_id])
        dg.materialize(
            [golioth_devices],
            partition_key=integ.integration_id,
            instance=instance,
            resources={"store": SyncStoreResource(database_url=sqlite_store.url)},
            raise_on_error=False,
        )


def test_sync_lines_on_stdout_are_json_with_run_and_integration_fields(
    sqlite_store, golioth, register_golioth, capfd
):
    integ = register_golioth(sqlite_store, golioth)
    with dg.instance_for_test() as instance:
        result = _run(instance, sqlite_store, integ)
    lines = _json_lines(capfd.readouterr().out)
    (completed,) = [line for line in lines if line.get("event") == "sync_completed"]
    assert completed["run_id"] == result.run_id
    assert completed["step"] == "golioth_devices"
    assert completed["job"] == result.dagster_run.job_name
    assert completed["organization_id"] == "org-a" and completed["integration_id"] == "golioth-a"
    assert completed["service"] == "sync_pipelines" and completed["component"] == "sync.inventory"
    assert completed["level"] == "info" and completed["timestamp"].endswith("Z")
    assert completed["fetched"] == 250 and isinstance(completed["duration_ms"], float)


def test_http_lines_carry_the_request_id(sqlite_store, golioth, register_golioth, capfd):
    integ = register_golioth(sqlite_store, golioth)
    with dg.instance_for_test() as instance:
        _run(instance, sqlite_store, integ)
    http = [
        line
        for line in _json_lines(capfd.readouterr().out)
        if line.get("event") == "http_request_completed"
    ]
    received = {r.request_id for r in golioth.emulator.requests() if r.path.startswith("/v1/")}
    assert http and {line["request_id"] for line in http} == received
    assert all(isinstance(line["duration_ms"], float) and line["attempt"] == 1 for line in http)


def test_sync_lines_reach_the_dagster_event_log(sqlite_store, golioth, register_golioth):
    integ = register_golioth(sqlite_store, golioth)
    overrides = {
        "python_logs": {"managed_python_loggers": ["sync_pipelines"], "python_log_level": "INFO"}
    }
    with dg.instance_for_test(overrides=overrides) as instance:
        result = _run(instance, sqlite_store, integ)
        messages = [e.user_message for e in instance.all_logs(result.run_id)]
    ours = [json.loads(m) for m in messages if m.startswith("{")]
    events = {line["event"] for line in ours}
    assert {"sync_started", "sync_completed"} <= events
    assert all(line["run_id"] == result.run_id for line in ours)


def test_failures_log_a_structured_error_with_type_message_and_stack(
    sqlite_store, golioth, register_golioth, capfd
):
    _run_failing(sqlite_store, golioth, register_golioth(sqlite_store, golioth))
    (failed,) = [
        line for line in _json_lines(capfd.readouterr().out) if line.get("event") == "sync_failed"
    ]
    assert failed["level"] == "error" and failed["error_type"] == "validation"
    assert failed["error"]["type"] == "MalformedResponseError"
    assert "not valid JSON" in failed["error"]["message"]
    assert "Traceback" in failed["error"]["stack"]


def test_a_failed_sync_logs_its_failure_once_with_its_stack(
    sqlite_store, golioth, register_golioth, capfd
):
    _run_failing(sqlite_store, golioth, register_golioth(sqlite_store, golioth))
    lines = _json_lines(capfd.readouterr().out)
    with_stack = [
        line for line in lines if isinstance(line.get("error"), dict) and line["error"].get("stack")
    ]
    assert [line["event"] for line in with_stack] == ["sync_failed"]
    assert [line["event"] for line in lines if line.get("level") == "error"] == ["sync_failed"]


def test_with_the_lines_left_to_dagster_each_line_of_a_run_prints_once(
    sqlite_store, golioth, register_golioth, capfd, monkeypatch
):
    """`make ui` (SYNC_LOG_IN_RUNS=dagster) under the local dagster.yaml: a run's line reaches
    the terminal once, from the run's console, and is still in its event log; no JSON copy of
    ours or of Dagster's lines is printed beside it."""
    integ = register_golioth(sqlite_store, golioth)
    local_yaml = Path(__file__).resolve().parents[2] / "dagster.yaml"
    python_logs = yaml.safe_load(local_yaml.read_text())["python_logs"]
    monkeypatch.setenv("SYNC_LOG_IN_RUNS", "dagster")
    with dg.instance_for_test(overrides={"python_logs": python_logs}) as instance:
        result = _run(instance, sqlite_store, integ)
        messages = [e.user_message for e in instance.all_logs(result.run_id)]
    out, err = capfd.readouterr()
    completed = [line for line in (out + err).splitlines() if '"event":"sync_completed"' in line]
    assert len(completed) == 1 and " - dagster - INFO - " in completed[0], completed
    assert not _json_lines(out)
    assert any('"event":"sync_completed"' in m for m in messages)
