"""The demo command end to end (one provider, small inventory): the sync table and the fault
drill — a failed check, alerts at the local sink, a degraded integration, a trace — and the
clean house it leaves: its integrations disabled, so what `make ui` schedules starts no run
for them and opens no incident."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import dagster as dg
from click.testing import CliRunner

from sync_pipelines.checks.integration_checks import CHECKS
from sync_pipelines.cli import main
from sync_pipelines.observability.activity import CONFIG_CHANGE
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.alerts import list_incidents
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import list_integrations

REPO = Path(__file__).resolve().parents[1]


def test_demo_syncs_and_the_fault_drill_shows_check_alert_health_and_trace(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNC_HOME", str(tmp_path))
    # the instance `make demo` and `make ui` share: this repo's dagster.yaml, in a home of its own
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.delenv("SYNC_DATABASE_URL", raising=False)
    result = CliRunner().invoke(main, ["demo", "--provider", "golioth", "--devices", "30"])
    out = result.output
    logs = tmp_path / "demo-logs.jsonl"
    assert result.exit_code == 0, out + (logs.read_text()[-4000:] if logs.exists() else "")
    # plain speech: a progress line per provider, then the report; no Dagster warning or log line
    lines = out.splitlines()
    assert len(lines) <= 100, out
    assert not [line for line in lines if "Warning" in line or " - dagster - " in line]
    assert re.search(r"^  golioth +ok +30 devices, 2 run\(s\)", out, re.MULTILINE), out[:600]
    assert "  fault drill ok" in out
    golioth_row = next(line for line in out.splitlines() if line.startswith("golioth "))
    # peer, devices, deleted, states
    assert golioth_row.split()[1:5] == ["30", "30", "0", "30"] and golioth_row.endswith("ok")
    checks = len(CHECKS)
    assert f"{checks}/{checks}" in golioth_row  # every asset check of the clean integration passed
    drill = out[out.index("== fault drill") :]
    assert "call_failure_rate_below_threshold on golioth-flaky: FAILED (ERROR)" in drill
    assert "[slack, webhook] [CRITICAL] provider_api_failures on golioth-flaky (demo-org)" in drill
    assert re.search(r"golioth-flaky +demo-org +golioth +degraded", drill)
    # the printed command runs as printed from a new shell (the CLI as reachable from here)
    printed_trace = re.search(
        r"^\$ (\S.* trace --organization demo-org --integration golioth-flaky \S+)$", drill, re.M
    )
    assert printed_trace, drill
    assert "Dead letters" in drill and "Check results" in drill and "Alerts" in drill
    # the structured logs went to the file, not into the report
    assert not any(line.startswith("{") for line in out.splitlines())
    assert (tmp_path / "demo-logs.jsonl").read_text().count('"event":"sync_completed"') >= 3
    assert re.search(r"critical provider_api_failures \[open\] .*, seen 1×", drill)

    # Run again within the cooldown: the same incidents stay open (seen twice), nothing new is
    # sent, and the demo still succeeds.
    again = CliRunner().invoke(main, ["demo", "--provider", "golioth", "--devices", "30"])
    assert again.exit_code == 0, again.output
    drill = again.output[again.output.index("== fault drill") :]
    assert "none new: the incidents (in the trace below) were already open" in drill
    assert re.search(r"critical provider_api_failures \[open\] .*, seen 2×", drill)

    # Every follow-up command the demo prints works pasted into a new shell: no environment of
    # this test's (no SYNC_HOME), the printed line alone says which store to read.
    follow_ups = {
        label: line.split(":", 1)[1].strip()
        for line in again.output.splitlines()
        for label in ("Health", "Report", "Follow a run")
        if line.startswith(f"{label}:")
    }
    assert set(follow_ups) == {"Health", "Report", "Follow a run"}, again.output[-800:]
    new_shell_env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    for label, command in follow_ups.items():
        assert "<" not in command, command  # no placeholder to fill in
        pasted = subprocess.run(
            ["bash", "-c", command], env=new_shell_env, capture_output=True, text=True, timeout=120
        )
        assert pasted.returncode == 0, f"{label}: {command}\n{pasted.stdout}\n{pasted.stderr}"
        assert "no organization" not in pasted.stdout + pasted.stderr
    assert (
        "demo-org"
        in subprocess.run(
            ["bash", "-c", follow_ups["Report"]], env=new_shell_env, capture_output=True, text=True
        ).stdout
    )

    # the console line, pasted with a password of one's own (on a free port): it serves the
    # demo's store to a browser signing in as `operator`
    (console_line,) = [
        line.split(":", 1)[1].strip()
        for line in again.output.splitlines()
        if line.startswith("Console:")
    ]
    _assert_the_console_serves_the_demo(console_line, new_shell_env)

    # the drill's trace, pasted as printed, traces the device the drill showed
    pasted_trace = subprocess.run(
        ["bash", "-c", printed_trace.group(1)], env=new_shell_env, capture_output=True, text=True
    )
    assert pasted_trace.returncode == 0, pasted_trace.stderr[-800:]
    assert "golioth-flaky" in pasted_trace.stdout and "golioth-demo" not in pasted_trace.stdout

    # and, last (its ticks are what `make ui` would do next), the house it leaves
    _assert_the_demo_left_a_clean_house(Store())


def _assert_the_console_serves_the_demo(printed: str, env: dict[str, str]) -> None:
    import signal
    import socket
    import time

    import httpx

    password = "demo-console-" + "p" * 16
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = printed.replace("<16+ characters>", password) + f" --port {port}"
    server = subprocess.Popen(
        ["bash", "-c", command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # the shell and the console it starts: one group to stop
    )
    try:
        deadline, page = time.monotonic() + 60, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                page = httpx.get(
                    f"http://127.0.0.1:{port}/console/overview", auth=("operator", password)
                )
                break
            except httpx.TransportError:
                time.sleep(0.3)
        assert page is not None, server.stderr.read().decode()[-800:] if server.stderr else ""
        assert page.status_code == 200 and "golioth-demo" in page.text
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _assert_the_demo_left_a_clean_house(store: Store) -> None:
    """Every demo integration disabled through the product's own path, its runs are the code
    location's named jobs, and a tick of every sensor and schedule `make ui` runs (over the same
    instance and store) requests no run and opens no incident."""
    from sync_pipelines.definitions import defs
    from sync_pipelines.defs.resources import SyncStoreResource

    with store.connect() as conn:
        integrations = list_integrations(conn, "demo-org")
        disabled = {
            row["integration_id"]
            for row in activity_rows(conn, "demo-org", activity_type=CONFIG_CHANGE)
            # who and why: the timeline says "disable by demo: enabled — the demo ended…"
            if row["metadata"]["action"] == "disable"
            and row["metadata"]["actor"] == "demo"
            and "the demo ended" in row["metadata"]["reason"]
        }
        incidents_before = {i.id for i in list_incidents(conn, "demo-org")}
    assert {i.integration_id for i in integrations} == {"golioth-demo", "golioth-flaky"}
    assert not any(i.enabled for i in integrations) and disabled == {
        "golioth-demo",
        "golioth-flaky",
    }

    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        # per demo: the sync and the export of golioth-demo, the drill's sync
        assert sorted(r.job_name for r in runs) == 2 * ["export_golioth_desired_states"] + 4 * [
            "sync_golioth_integration"
        ]
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        repo = defs.get_repository_def()
        resources = {"store": SyncStoreResource()}
        by_sensor, by_schedule = {}, {}
        for sensor in repo.sensor_defs:
            if isinstance(sensor, dg.RunStatusSensorDefinition):
                continue  # they act on runs finishing, and none will
            context = dg.build_sensor_context(
                instance=instance, definitions=defs, resources=resources
            )
            by_sensor[sensor.name] = sensor.evaluate_tick(context).run_requests
        for schedule in repo.schedule_defs:
            context = dg.build_schedule_context(instance=instance, resources=resources)
            by_schedule[schedule.name] = schedule.evaluate_tick(context).run_requests
    assert "dead_letter_replay_sensor" in by_sensor and "golioth_poll_schedule" in by_schedule
    assert {name: r for name, r in by_sensor.items() if r} == {}
    # the deployment's own cron jobs (reports, retention) run anyway; none for an integration
    assert [
        r
        for requests in by_schedule.values()
        for r in requests
        if r.partition_key or "golioth" in repr(r.run_config) + repr(r.tags)
    ] == []
    with store.connect() as conn:
        assert {i.id for i in list_incidents(conn, "demo-org")} == incidents_before
