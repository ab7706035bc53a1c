"""The `sync-pipelines` command, run through click's test runner against a store, a Dagster
home and (where it calls out) a Golioth emulator, all under the test's temporary directory."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import patch

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from sync_pipelines_peers.demo_drill import DRILL_INTEGRATION
from sync_pipelines_peers.launchers.registry import PEERS

from sync_pipelines.cli import main
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.database import Store
from sync_pipelines.store.devices import count_devices
from sync_pipelines.store.integrations import get_integration
from sync_pipelines.store.migrations import migrate
from sync_pipelines_tests.conftest import GOLIOTH_KEY_ENV

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli_store(tmp_path, monkeypatch) -> Iterator[Store]:
    """The store the CLI finds through the environment, with DAGSTER_HOME and SYNC_HOME beside it."""
    url = f"sqlite:///{tmp_path}/cli_store.db"
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    monkeypatch.setenv("SYNC_DATABASE_URL", url)
    monkeypatch.setenv("SYNC_HOME", str(tmp_path / "sync_home"))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    store = Store(url)
    yield store
    store.dispose()


def _invoke(command: str) -> Result:
    """Run `sync-pipelines <command>` (shell quoting) with JSON logs."""
    return CliRunner().invoke(main, ["--log-format", "json", *shlex.split(command)])


def _printed_json(result: Result) -> list[dict]:
    """The command's own JSON lines (log lines, which carry an `event`, are left out)."""
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    return [line for line in lines if "event" not in line]


def test_migrate_applies_the_schema_then_reports_up_to_date(cli_store):
    first = _invoke("migrate")
    second = _invoke("migrate")
    assert first.exit_code == 0, first.output
    assert "applied 001_core.sql" in first.output
    assert second.exit_code == 0, second.output
    assert "up to date" in second.output


def test_integrations_add_refuses_an_unknown_provider_naming_it(cli_store):
    result = _invoke("integrations add --organization org-a --id mystery-1 --provider nope")
    assert result.exit_code != 0
    assert "Error:" in result.output and "unknown provider 'nope'" in result.output
    assert "Traceback" not in result.output


def test_integrations_add_saves_nothing_for_an_unknown_provider(cli_store):
    _invoke("integrations add --organization org-a --id mystery-1 --provider nope")
    migrate(cli_store)
    with cli_store.connect() as conn:
        assert get_integration(conn, "org-a", "mystery-1") is None


def test_integrations_add_refuses_a_credential_in_a_setting(cli_store):
    result = _invoke(
        "integrations add --organization org-a --id golioth-a --provider golioth "
        "--setting api_key=sekrit-value-123"
    )
    assert result.exit_code != 0
    assert "api_key" in result.output and "secret_refs" in result.output
    assert "sekrit-value-123" not in result.output


def test_an_added_integration_is_listed_with_its_settings(cli_store):
    added = _invoke(
        "integrations add --organization org-a --id golioth-a --provider golioth --name 'Golioth A' "
        "--setting base_url=http://127.0.0.1:9 --setting project_id=p "
        "--secret-env api_key=SOME_KEY_ENV --poll-interval 120"
    )
    listed = _invoke("integrations list --organization org-a")
    assert added.exit_code == 0, added.output
    assert "saved integration golioth-a (golioth) for organization org-a" in added.output
    assert listed.exit_code == 0, listed.output
    assert "golioth-a\tgolioth\tenabled\tpoll=120s\tGolioth A" in listed.output.splitlines()
    with cli_store.connect() as conn:
        saved = get_integration(conn, "org-a", "golioth-a")
    assert saved.settings == {"base_url": "http://127.0.0.1:9", "project_id": "p"}
    assert saved.secret_refs == {"api_key": "SOME_KEY_ENV"}


def test_integrations_list_shows_only_the_given_organization(cli_store):
    for org, iid in (("org-a", "golioth-a"), ("org-b", "golioth-b")):
        added = _invoke(
            f"integrations add --organization {org} --id {iid} --provider golioth --disabled "
            "--setting base_url=http://127.0.0.1:9 --setting project_id=p"
        )
        assert added.exit_code == 0, added.output
    listed = _invoke("integrations list --organization org-b")
    assert listed.exit_code == 0, listed.output
    assert [line.split("\t")[:3] for line in listed.output.splitlines() if "\t" in line] == [
        ["golioth-b", "golioth", "disabled"]
    ]


def test_sync_prints_one_json_line_per_stream_with_its_counts(
    cli_store, golioth_factory, register_golioth
):
    running = golioth_factory(device_count=25)
    migrate(cli_store)
    integ = register_golioth(cli_store, running, per_page=10)
    result = _invoke(f"sync {integ.integration_id}")
    assert result.exit_code == 0, result.output
    printed = _printed_json(result)
    assert [(p["stream"], p["status"], p["fetched"]) for p in printed] == [
        ("devices", "success", 25),
        ("device_states", "success", 25),
    ]
    assert printed[0]["created"] == 25
    assert printed[0]["run_id"] == printed[1]["run_id"] and printed[0]["run_id"].startswith("cli-")
    with cli_store.connect() as conn:
        assert count_devices(conn, integ.organization_id, integ.integration_id) == 25


def test_sync_of_one_stream_prints_only_that_stream(cli_store, golioth_factory, register_golioth):
    running = golioth_factory(device_count=5)
    migrate(cli_store)
    integ = register_golioth(cli_store, running)
    result = _invoke(f"sync {integ.integration_id} --stream devices")
    assert result.exit_code == 0, result.output
    assert [p["stream"] for p in _printed_json(result)] == ["devices"]


def test_a_sync_whose_deletions_the_guard_held_says_so_and_how_to_apply_them(
    cli_store, golioth_factory, register_golioth
):
    running = golioth_factory(device_count=20)
    migrate(cli_store)
    integ = register_golioth(cli_store, running, max_delete_fraction=0.1)
    assert _invoke(f"sync {integ.integration_id} --stream devices").exit_code == 0
    for external_id in list(running.emulator.device_ids())[:5]:  # 25 % > 10 %
        running.emulator.delete_device(external_id)
    result = _invoke(f"sync {integ.integration_id} --stream devices")
    assert result.exit_code == 0, result.output
    (printed,) = _printed_json(result)
    assert (printed["deleted"], printed["deletions_held"]) == (0, 5)
    assert "held 5 deletion(s)" in result.stderr
    assert f"sync-pipelines devices confirm-deletions {integ.integration_id}" in result.stderr


def test_test_connection_exits_0_when_the_provider_accepts_the_key(
    cli_store, golioth_factory, register_golioth
):
    running = golioth_factory(device_count=5)
    migrate(cli_store)
    integ = register_golioth(cli_store, running)
    result = _invoke(f"test-connection {integ.integration_id}")
    assert result.exit_code == 0, result.output
    (printed,) = _printed_json(result)
    assert printed["ok"] is True and printed["reason"] is None


def test_test_connection_exits_1_when_the_provider_refuses_the_key(
    cli_store, golioth_factory, register_golioth, monkeypatch
):
    running = golioth_factory(device_count=5)
    migrate(cli_store)
    integ = register_golioth(cli_store, running)
    monkeypatch.setenv(GOLIOTH_KEY_ENV, "not-the-key")
    result = _invoke(f"test-connection {integ.integration_id}")
    assert result.exit_code == 1, result.output
    (printed,) = _printed_json(result)
    assert printed["ok"] is False and "authentication failed" in printed["reason"]


def test_demo_syncs_every_provider_through_dagster_runs(cli_store):
    with patch.dict(os.environ):  # the demo puts its peers' secrets in the environment
        result = _invoke("demo --devices 30")
    assert result.exit_code == 0, result.output
    table = result.output.split("Dagster runs:")[0]
    rows = {
        line.split()[0]: line.split()
        for line in table.splitlines()
        if line.split() and line.split()[0] in PEERS
    }
    assert set(rows) == set(PEERS)
    for provider, cells in rows.items():
        # peer, devices, deleted, states
        assert cells[1:5] == ["30", "30", "0", "30"], f"{provider}: {cells}"
        assert cells[6:8] == ["1", "1"], (
            f"{provider}: one change pushed, one conflict (provider wins)"
        )
        assert int(cells[8]) > 0, f"{provider}: its provider calls are in the activity log"
        assert cells[-1] == "ok", result.output
    announced = int(re.search(r"^Dagster runs: (\d+),", result.output, re.MULTILINE).group(1))
    with dg.DagsterInstance.get() as instance:  # the one under the test's DAGSTER_HOME
        every = instance.get_runs()
    # every run the demo announced is there (the fault drill's are its own), succeeded, and is
    # one of the named jobs
    runs = [r for r in every if r.tags.get("dagster/partition") != DRILL_INTEGRATION]
    assert len(runs) == announced >= 2 * len(PEERS)
    assert all(run.is_success for run in runs)
    assert {run.job_name for run in every} <= {
        f"{kind}_{provider}_{what}"
        for provider in PEERS
        for kind, what in (("sync", "integration"), ("export", "desired_states"))
    }


def test_peer_serves_a_seeded_peer_and_prints_how_to_register_it(tmp_path):
    import signal
    import subprocess
    import sys

    cli = Path(sys.executable).with_name("sync-pipelines")
    proc = subprocess.Popen(
        [str(cli), "--log-format", "json", "peer", "golioth", "--devices", "7"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SYNC_HOME": str(tmp_path)},
    )
    try:
        lines = []
        while not any("Ctrl-C" in line for line in lines):
            line = proc.stdout.readline()
            assert line, f"peer exited early: {proc.stderr.read()}"
            lines.append(line)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    text = "".join(lines)
    assert "golioth peer serving 7 devices" in text
    (add,) = [line for line in lines if "integrations add" in line]
    assert "--provider golioth" in add and "--setting base_url=http://127.0.0.1:" in add
    assert "--secret-env api_key=PEER_GOLIOTH_GOLIOTH_API_KEY" in add
    assert proc.returncode == 0


def test_peer_stopped_with_sigterm_stops_what_it_started(tmp_path):
    import signal
    import subprocess
    import sys

    cli = Path(sys.executable).with_name("sync-pipelines")
    proc = subprocess.Popen(
        [str(cli), "--log-format", "json", "peer", "mqtt", "--devices", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SYNC_HOME": str(tmp_path)},
    )
    lines = []
    while not any("Ctrl-C" in line for line in lines):
        line = proc.stdout.readline()
        assert line, f"peer exited early: {proc.stderr.read()}"
        lines.append(line)
    (add,) = [line for line in lines if "integrations add" in line]
    port = int(add.split("--setting port=")[1].split()[0])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    with pytest.raises(OSError):  # its broker is gone with it
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# -- typed settings at `integrations add` -------------------------------------------------

_GOLIOTH_ADD = (
    "integrations add --organization org-a --id golioth-a --provider golioth "
    "--secret-env api_key=GOLIOTH_A_KEY"
)
_GOOD = {"base_url": "http://127.0.0.1:9", "project_id": "p"}
PASTED_KEY = "gk-live-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def _add(*settings: str, extra: str = "", base: str = _GOLIOTH_ADD) -> Result:
    given = dict(_GOOD)
    for item in settings:
        key, _, value = item.partition("=")
        given.pop(key.removeprefix("-"), None)
        if not key.startswith("-"):
            given[key] = value
    options = " ".join(f"--setting {shlex.quote(f'{k}={v}')}" for k, v in given.items())
    return _invoke(f"{base} {options} {extra}")


def _integration_count(store: Store) -> int:
    migrate(store)
    with store.connect() as conn:
        return conn.execute(sa.text("SELECT COUNT(*) FROM integrations")).scalar_one()


@pytest.mark.parametrize(
    ("settings", "extra", "named"),
    [
        (["page_size=-5"], "", "setting 'page_size': must be an integer ≥ 1 (got '-5')"),
        (["page_size=lots"], "", "setting 'page_size': must be an integer ≥ 1 (got 'lots')"),
        (["page_sise=50"], "", "unknown setting 'page_sise' (did you mean 'page_size'?)"),
        (["base_url=not-a-url"], "", "setting 'base_url': must be an http(s) URL"),
        (["-project_id"], "", "missing required setting 'project_id' for provider golioth"),
        (["request_timeout_s=soon"], "", "setting 'request_timeout_s': must be a number > 0"),
        ([], "--poll-interval -300", "poll interval must be a whole number of seconds ≥ 1"),
    ],
    ids=[
        "negative_page_size",
        "page_size_lots",
        "page_sise_typo",
        "base_url_not_a_url",
        "missing_project_id",
        "request_timeout_soon",
        "negative_poll_interval",
    ],
)
def test_integrations_add_refuses_a_bad_input_naming_it_and_writes_nothing(
    cli_store, settings, extra, named
):
    result = _add(*settings, extra=extra)
    assert result.exit_code != 0
    assert named in result.output, result.output
    assert "Traceback" not in result.output
    assert _integration_count(cli_store) == 0


def test_integrations_add_refuses_an_empty_organization_id(cli_store):
    result = _add(
        base=_GOLIOTH_ADD.replace("--organization org-a", "--organization ''"),
    )
    assert result.exit_code != 0
    assert "organization id must not be empty" in result.output
    assert _integration_count(cli_store) == 0


def test_the_readme_monitoring_example_is_stored_as_an_object(cli_store):
    result = _add('monitoring={"error_rate_warn": 0.02, "freshness_sla_s": 900}')
    assert result.exit_code == 0, result.output
    with cli_store.connect() as conn:
        saved = get_integration(conn, "org-a", "golioth-a")
    assert saved.settings["monitoring"] == {"error_rate_warn": 0.02, "freshness_sla_s": 900}


def test_a_pasted_key_as_secret_env_is_refused_and_appears_nowhere(cli_store):
    result = _add(base=_GOLIOTH_ADD.replace("api_key=GOLIOTH_A_KEY", f"api_key={PASTED_KEY}"))
    assert result.exit_code != 0
    assert "secret reference for 'api_key' must be an environment-variable name" in result.output
    assert PASTED_KEY not in result.output
    migrate(cli_store)
    with cli_store.connect() as conn:
        tables = sa.inspect(conn).get_table_names()
        dumped = "\n".join(
            str(row) for t in tables for row in conn.execute(sa.text(f'SELECT * FROM "{t}"'))
        )
    assert PASTED_KEY not in dumped
    assert _integration_count(cli_store) == 0


def test_a_secret_env_without_a_name_is_refused_without_echoing_it(cli_store):
    result = _add(base=_GOLIOTH_ADD.replace("api_key=GOLIOTH_A_KEY", PASTED_KEY))
    assert result.exit_code != 0 and "SECRET=ENV_VAR" in result.output
    assert PASTED_KEY not in result.output


def test_integrations_add_of_an_existing_id_is_refused_unless_replace(cli_store):
    assert _add().exit_code == 0
    again = _add("page_size=20")
    replaced = _add("page_size=20", extra="--replace")
    assert again.exit_code != 0 and "already exists" in again.output
    assert replaced.exit_code == 0, replaced.output
    with cli_store.connect() as conn:
        assert get_integration(conn, "org-a", "golioth-a").settings["page_size"] == 20


def test_integrations_update_changes_settings_checked_like_add(cli_store):
    assert _add().exit_code == 0
    updated = _invoke(
        "integrations update --organization org-a --id golioth-a --setting page_size=25 "
        "--poll-interval 60"
    )
    refused = _invoke(
        "integrations update --organization org-a --id golioth-a --setting page_sise=30"
    )
    assert updated.exit_code == 0, updated.output
    assert refused.exit_code != 0 and "unknown setting 'page_sise'" in refused.output
    with cli_store.connect() as conn:
        saved = get_integration(conn, "org-a", "golioth-a")
    assert (saved.settings["page_size"], saved.poll_interval_s) == (25, 60)


def test_integrations_disable_and_enable(cli_store, monkeypatch):
    assert _add().exit_code == 0
    monkeypatch.setenv("SYNC_OPERATOR", "alice@example.com")
    disabled = _invoke("integrations disable --organization org-a --id golioth-a")
    listed = _invoke("integrations list --organization org-a")
    enabled = _invoke("integrations enable --organization org-a --id golioth-a")
    assert disabled.exit_code == 0 and enabled.exit_code == 0, disabled.output + enabled.output
    assert "golioth-a\tgolioth\tdisabled" in listed.output
    with cli_store.connect() as conn:
        assert get_integration(conn, "org-a", "golioth-a").enabled
        changes = activity_rows(conn, "org-a", integration_id="golioth-a")
    # who changed it: the login user without SYNC_OPERATOR, the named operator with it
    who = {r["metadata"]["action"]: r["metadata"]["actor"] for r in changes}
    assert who["add"].startswith("cli:") and who["add"] != "cli:alice@example.com"
    assert who["disable"] == who["enable"] == "cli:alice@example.com"


def test_integrations_remove_asks_for_yes_and_keeps_the_history(cli_store):
    assert _add().exit_code == 0
    unconfirmed = _invoke("integrations remove --organization org-a --id golioth-a")
    assert unconfirmed.exit_code != 0 and "--yes" in unconfirmed.output
    assert _integration_count(cli_store) == 1
    removed = _invoke("integrations remove --organization org-a --id golioth-a --yes")
    assert removed.exit_code == 0, removed.output
    assert _integration_count(cli_store) == 0
    with cli_store.connect() as conn:
        kept = activity_rows(conn, "org-a", integration_id="golioth-a")
    assert [r["metadata"]["action"] for r in kept] == ["add", "remove"]
