"""The demo command end to end (one provider, small inventory): the sync table and the fault
drill — a failed check, alerts at the local sink, a degraded integration, a trace."""

from __future__ import annotations

import os
import re
import subprocess

from click.testing import CliRunner

from sync_pipelines.cli import main


def test_demo_syncs_and_the_fault_drill_shows_check_alert_health_and_trace(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNC_HOME", str(tmp_path))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # an ephemeral instance
    monkeypatch.delenv("SYNC_DATABASE_URL", raising=False)
    result = CliRunner().invoke(main, ["demo", "--provider", "golioth", "--devices", "30"])
    out = result.output
    logs = tmp_path / "demo-logs.jsonl"
    assert result.exit_code == 0, out + (logs.read_text()[-4000:] if logs.exists() else "")
    golioth_row = next(line for line in out.splitlines() if line.startswith("golioth "))
    # peer, devices, deleted, states
    assert golioth_row.split()[1:5] == ["30", "30", "0", "30"] and golioth_row.endswith("ok")
    assert "10/10" in golioth_row  # every asset check of the clean integration passed
    drill = out[out.index("== fault drill") :]
    assert "ERROR call_failure_rate_below_threshold" in drill
    assert "[webhook] [CRITICAL] provider_api_failures on golioth-flaky (demo-org)" in drill
    assert "[slack] :rotating_light:" in drill
    assert re.search(r"golioth-flaky +demo-org +golioth +degraded", drill)
    assert "$ sync-pipelines trace --organization demo-org" in drill
    assert "Dead letters" in drill and "Check results" in drill and "Alerts" in drill
    # the structured logs went to the file, not into the report
    assert not any(line.startswith("{") for line in out.splitlines())
    assert (tmp_path / "demo-logs.jsonl").read_text().count('"event":"sync_completed"') >= 3
    assert re.search(r"critical +provider_api_failures +open since .*, seen 1x", drill)

    # Run again within the cooldown: the same incidents stay open (seen twice), nothing new is
    # sent, and the demo still succeeds.
    again = CliRunner().invoke(main, ["demo", "--provider", "golioth", "--devices", "30"])
    assert again.exit_code == 0, again.output
    drill = again.output[again.output.index("== fault drill") :]
    assert "none new: the incidents below were already open" in drill
    assert re.search(r"critical +provider_api_failures +open since .*, seen 2x", drill)

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
