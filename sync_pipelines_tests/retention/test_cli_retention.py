"""`sync-pipelines retention` through click's runner against the real store (found through
SYNC_DATABASE_URL), mounted on a group of its own as `cli.py` mounts it."""

from __future__ import annotations

import json
import shlex
from datetime import timedelta

import click
import pytest
from click.testing import CliRunner, Result

from sync_pipelines.cli.retention import retention
from sync_pipelines.clock import utc_now
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.retention import RETENTION, RULES
from sync_pipelines_tests.retention.seeding import Seeded, remaining


@click.group()
def cli() -> None:
    """`retention` as `sync-pipelines` carries it."""


cli.add_command(retention)


@pytest.fixture
def cli_store(store, monkeypatch):
    monkeypatch.setenv("SYNC_DATABASE_URL", store.url)
    monkeypatch.delenv("SYNC_RETENTION_DAYS", raising=False)
    monkeypatch.delenv("SYNC_TELEMETRY_RETENTION_DAYS", raising=False)
    return store


def _invoke(command: str) -> Result:
    return CliRunner().invoke(cli, shlex.split(command))


def _report(result: Result) -> dict:
    """The command's JSON object (structured log lines carry an `event`)."""
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    (report,) = [line for line in lines if "event" not in line]
    return report


def _seed(store) -> Seeded:
    now = utc_now()
    with store.transaction() as conn:
        s = Seeded(conn)
        s.activity(now - timedelta(days=3), kept=False)
        s.activity(now - timedelta(hours=1), kept=True)
        s.webhook_event(now - timedelta(days=5), "processed", kept=True)  # 7 days at least
        s.webhook_event(now - timedelta(days=10), "processed", kept=False)
        s.webhook_event(now - timedelta(days=10), "pending", kept=True)
        s.dead_letter(now - timedelta(days=10), "pending", kept=True)
    return s


def test_retention_with_days_purges_and_prints_the_counts_as_json(cli_store):
    s = _seed(cli_store)

    result = _invoke("retention --days 1 --json")

    assert result.exit_code == 0, result.output
    report = _report(result)
    assert report["dry_run"] is False
    assert report["retention_days"] == 1
    assert set(report["deleted"]) == {rule.table for rule in RULES}
    assert report["deleted"]["integration_activity_log"] == 1
    assert report["deleted"]["webhook_events"] == 1
    assert report["deleted"]["dead_letters"] == 0
    assert report["total_deleted"] == 2
    with cli_store.connect() as conn:
        assert remaining(conn, "webhook_events") == s.kept("webhook_events")
        assert remaining(conn, "dead_letters") == s.kept("dead_letters")
        (row,) = activity_rows(conn, "_system", activity_type=RETENTION)
    assert row["run_id"].startswith("cli-")
    assert row["metadata"]["total_deleted"] == 2


def test_a_dry_run_prints_a_table_of_what_would_go_and_changes_nothing(cli_store):
    s = _seed(cli_store)

    result = _invoke("retention --days 1 --dry-run")

    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.output.splitlines() if line.strip()}
    assert lines["table"][1:3] == ["would", "delete"]
    assert lines["integration_activity_log"][1] == "1"
    assert lines["webhook_events"][1] == "1"
    assert lines["total"][1] == "2"
    with cli_store.connect() as conn:
        assert remaining(conn, "webhook_events") == set(s.expected["webhook_events"])
        assert activity_rows(conn, "_system") == []


def test_the_environment_sets_the_days_when_no_option_does(cli_store, monkeypatch):
    _seed(cli_store)
    monkeypatch.setenv("SYNC_RETENTION_DAYS", "2")

    report = _report(_invoke("retention --dry-run --json"))

    assert report["retention_days"] == 2
    assert report["deleted"]["integration_activity_log"] == 1


def test_an_unusable_environment_value_is_refused_naming_the_variable(cli_store, monkeypatch):
    monkeypatch.setenv("SYNC_RETENTION_DAYS", "soon")

    result = _invoke("retention --dry-run")

    assert result.exit_code != 0
    assert "SYNC_RETENTION_DAYS must be a whole number of days >= 1, got 'soon'" in result.output


def test_days_below_one_are_refused(cli_store):
    result = _invoke("retention --days 0")

    assert result.exit_code == 2
    assert "--days" in result.output
