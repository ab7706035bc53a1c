"""`sync-pipelines activity` through click's runner over rows a real sync wrote (the Golioth
emulator; SQLite and Postgres): a table by default, the rows as JSON lines with --json."""

from __future__ import annotations

import json

from click.testing import CliRunner

from sync_pipelines.cli.activity import activity
from sync_pipelines.sync.inventory import sync_devices


def test_activity_prints_a_table_and_json_lines_with_json(
    store, golioth_factory, register_golioth, open_session, monkeypatch
):
    running = golioth_factory(device_count=3)
    integ = register_golioth(store, running)
    with open_session(store, integ.integration_id, run_id="run-activity") as session:
        sync_devices(session)
    monkeypatch.setenv("SYNC_DATABASE_URL", store.url)
    base = ["--organization", "org-a", "--run-id", "run-activity"]

    table = CliRunner().invoke(activity, base)
    as_json = CliRunner().invoke(activity, [*base, "--json"])

    assert table.exit_code == 0 and as_json.exit_code == 0, table.output + as_json.output
    lines = [line for line in table.output.splitlines() if not line.startswith("{")]
    assert lines[0].split() == [
        "TIME",
        "TYPE",
        "STATUS",
        "#",
        "CODE",
        "MS",
        "REQUEST",
        "DEVICE",
        "CALL",
        "ERROR",
    ]
    rows = [json.loads(line) for line in as_json.output.splitlines() if line.startswith("{")]
    rows = [r for r in rows if "event" not in r]  # log lines carry an event
    assert {r["activity_type"] for r in rows} >= {"import", "http_request"}
    assert all(r["run_id"] == "run-activity" for r in rows)
    # one table line per row, in the same order, each naming its type and status
    assert len(lines) == 1 + len(rows)
    for line, row in zip(lines[1:], rows, strict=True):
        assert row["activity_type"] in line and row["status"] in line
