"""`alerts list|evaluate|test|health` through click's runner, against a real store (found through
SYNC_DATABASE_URL) and channels configured in the environment at the real local sink. The group
is mounted on a group of its own here, as `cli.py` mounts it."""

from __future__ import annotations

import json
import shlex
from datetime import timedelta

import click
import pytest
from click.testing import CliRunner, Result

from sync_pipelines.alerts.heartbeat import send_heartbeat
from sync_pipelines.alerts.incidents import clear, raise_alert
from sync_pipelines.alerts.rules import WARNING, Condition
from sync_pipelines.alerts.settings import AlertSettings
from sync_pipelines.cli.alerts import alerts
from sync_pipelines.clock import utc_now
from sync_pipelines_tests.owners import own_integrations

from .alert_data import add_calls, add_integration, closed_port
from .conftest import T0


@click.group()
def cli() -> None:
    """`sync-pipelines` with the alerts group only."""


cli.add_command(alerts)


@pytest.fixture
def cli_env(sqlite_store, sink, monkeypatch):
    """The store and one channel, configured as an operator's shell would (the store queries
    themselves run on both engines in the other tests)."""
    monkeypatch.setenv("SYNC_DATABASE_URL", sqlite_store.url)
    monkeypatch.setenv("SYNC_ALERT_WEBHOOK_URL", sink.webhook_url)
    monkeypatch.setenv("SYNC_ALERT_MAX_ATTEMPTS", "1")
    return sqlite_store


def _invoke(command: str) -> Result:
    return CliRunner().invoke(cli, shlex.split(command))


def _printed(result: Result) -> list[dict]:
    """The command's own JSON lines (structured log lines carry an `event`)."""
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    return [line for line in lines if "event" not in line]


def _raise(store, organization_id: str, subject: str) -> None:
    own_integrations(store, organization_id, subject)  # a registered organization's alert
    condition = Condition(
        organization_id, subject, "inbox_backlog", subject, WARNING, f"backlog of {subject}"
    )
    raise_alert(store, condition, AlertSettings(), now=T0)


def test_list_shows_incidents_filtered_by_organization_and_status(cli_env):
    _raise(cli_env, "org-a", "golioth-a")
    _raise(cli_env, "org-b", "golioth-b")
    with cli_env.transaction() as conn:
        clear(
            conn,
            "org-b",
            "inbox_backlog:golioth-b",
            now=T0,
            reason="cleared",
            settings=AlertSettings(),
        )

    everything = _invoke("alerts list --json")
    assert everything.exit_code == 0, everything.output
    assert sorted(i["organization_id"] for i in _printed(everything)) == ["org-a", "org-b"]
    open_b = _invoke("alerts list --organization org-b --open --json")
    assert _printed(open_b) == []
    table = _invoke("alerts list --organization org-a")
    assert (
        "inbox_backlog" in table.output
        and "golioth-a" in table.output
        and "org-b" not in table.output
    )


def test_list_with_nothing_says_so(cli_env):
    assert _invoke("alerts list").output.strip().endswith("no incidents")


def test_evaluate_runs_one_pass_and_prints_its_summary(cli_env, sink):
    integration = add_integration(cli_env)
    now = utc_now()
    add_calls(cli_env, integration, 30, start=now - timedelta(seconds=60), end=now, status_code=500)
    result = _invoke("alerts evaluate")
    assert result.exit_code == 0, result.output
    [summary] = _printed(result)
    assert summary["integrations"] == 1 and summary["notified"] == {"firing": 1}
    assert [m["kind"] for m in sink.accepted()] == ["firing"]


def test_test_sends_a_test_notification_to_every_channel(cli_env, sink):
    result = _invoke("alerts test")
    assert result.exit_code == 0, result.output
    assert _printed(result) == [
        {"channel": "webhook", "status": "sent", "status_code": 200, "attempts": 1, "error": None}
    ]
    [message] = sink.accepted()
    assert message["kind"] == "test"


def test_test_exits_1_when_a_channel_fails(cli_env, sink, monkeypatch):
    monkeypatch.setenv(
        "SYNC_ALERT_SLACK_WEBHOOK_URL", f"http://127.0.0.1:{closed_port()}/services/T/B/x"
    )
    result = _invoke("alerts test")
    assert result.exit_code == 1
    assert [line["status"] for line in _printed(result)] == ["sent", "failed"]


def test_test_without_channels_is_an_error_naming_the_variables(cli_env, monkeypatch):
    monkeypatch.delenv("SYNC_ALERT_WEBHOOK_URL")
    result = _invoke("alerts test")
    assert result.exit_code == 1
    assert "SYNC_ALERT_WEBHOOK_URL" in result.output


def test_a_bad_setting_is_an_error_naming_the_variable(cli_env, monkeypatch):
    monkeypatch.setenv("SYNC_ALERT_COOLDOWN_S", "soon")
    result = _invoke("alerts evaluate")
    assert result.exit_code == 1
    assert "SYNC_ALERT_COOLDOWN_S must be a number, got 'soon'" in result.output


def test_health_reports_the_alert_path(cli_env, sink):
    assert _printed(_invoke("alerts health"))[0]["state"] == "unknown"  # no heartbeat yet
    sink.fail(500)
    _invoke("alerts test")  # not a heartbeat: health judges heartbeats only
    send_heartbeat(cli_env, AlertSettings.from_env(), now=utc_now())
    result = _invoke("alerts health")
    assert result.exit_code == 1
    assert _printed(result)[0]["state"] == "unhealthy"
