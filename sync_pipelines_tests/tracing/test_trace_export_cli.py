"""`sync-pipelines trace` and `export` through click's runner over the real chain of conftest.py
(store found through SYNC_DATABASE_URL, SQLite and Postgres), mounted on a group of their own
as `cli.py` mounts them."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from sync_pipelines.cli.reports import export, trace
from sync_pipelines.tracing.bundle import SCHEMA_VERSION
from sync_pipelines_tests.tracing.conftest import ORG


@click.group()
def cli() -> None:
    """The tracing commands as `sync-pipelines` carries them."""


cli.add_command(trace)
cli.add_command(export)


@pytest.fixture
def run_cli(traced, monkeypatch):
    monkeypatch.setenv("SYNC_DATABASE_URL", traced.store.url)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)

    def run(*args: str):
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    return run


def test_trace_of_a_device_prints_webhook_runs_calls_and_rows(traced, run_cli):
    result = run_cli("trace", traced.device_id, "--organization", ORG)
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"Trace of device {traced.device_id} in organization {ORG}" in out
    order = [
        "Webhook",
        f"event {traced.event_id}",
        f"delivery {traced.event_id}: POST",
        f"Run {traced.webhook_run}",
        f"Run {traced.sync_run}",
        f"[request {traced.state_request_id}]",
        "Rows written",
    ]
    positions = [out.index(text) for text in order]
    assert positions == sorted(positions)
    assert "#1 503 retrying" in out and "#2 200 success" in out
    assert f"last written by run {traced.sync_run}, request {traced.page_request_id}" in out


def test_trace_by_each_kind_names_it(traced, run_cli):
    for ident, label in [
        (traced.event_id, "webhook event"),
        (traced.sync_run, "run"),
        (traced.state_request_id, "request"),
    ]:
        result = run_cli("trace", ident, "--organization", ORG)
        assert result.exit_code == 0 and f"Trace of {label} {ident}" in result.output


def test_trace_of_an_unknown_id_fails_naming_it(traced, run_cli):
    result = run_cli("trace", "no-such-id", "--organization", ORG)
    assert result.exit_code == 1
    assert "no webhook event, run, request or device 'no-such-id'" in result.output


def test_export_writes_a_redacted_json_bundle_of_the_chain(traced, run_cli, tmp_path):
    out = tmp_path / "bundle.json"
    result = run_cli("export", traced.device_id, "--organization", ORG, "--output", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text()
    bundle = json.loads(text)
    assert (bundle["schema_version"], bundle["id"], bundle["kind"]) == (
        SCHEMA_VERSION,
        traced.device_id,
        "device",
    )
    activity = bundle["activity_rows"]
    assert {r["activity_type"] for r in activity} >= {
        "webhook_received",
        "webhook_processing",
        "import",
        "state_import",
        "http_request",
    }
    retried = [r for r in activity if r["request_id"] == traced.state_request_id]
    assert [(r["attempt"], r["status_code"]) for r in retried] == [(1, 503), (2, 200)]
    assert {r["run_id"] for r in bundle["sync_log_rows"]} == {traced.webhook_run, traced.sync_run}
    (event,) = bundle["webhook_events"]
    assert event["event_id"] == traced.event_id
    assert event["headers"]["webhook-signature"] == "[REDACTED]"
    assert [d["external_id"] for d in bundle["chain"]["devices"]] == [traced.device_id]
    assert [r["run_id"] for r in bundle["chain"]["runs"]] == [traced.webhook_run, traced.sync_run]
    # no secret of the integration, in any shape
    assert traced.api_key not in text
    assert traced.webhook_secret not in text
    assert traced.webhook_secret.removeprefix("whsec_") not in text


def test_export_of_a_run_to_stdout_carries_its_dead_letter(traced, run_cli):
    result = run_cli("export", traced.sync_run, "--organization", ORG)
    assert result.exit_code == 0
    bundle = json.loads(result.output)
    assert bundle["kind"] == "run"
    assert [d["external_id"] for d in bundle["dead_letters"]] == [traced.poisoned_device_id]
    assert traced.api_key not in result.output
