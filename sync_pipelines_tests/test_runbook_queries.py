"""The runbook queries in the top-level `sql/` run on a migrated store — SQLite and PostgreSQL —
with their parameters bound, and find what an on-call engineer would look for: a device's rows
and dead letter, a stuck sync, an integration's error rate. So they keep up with the schema."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from sync_pipelines.clock import utc_now
from sync_pipelines.store.activity import insert_activity_rows
from sync_pipelines.store.database import Store, format_timestamp
from sync_pipelines.store.dead_letters import DeadLetterPolicy, FailedRecord, record_dead_letters
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.sync_state import start_sync_log
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines_tests.activity_rows import provider_call_row

RUNBOOK = Path(__file__).resolve().parents[1] / "sql"
ORG, INTEGRATION, DEVICE = "org-runbook", "golioth-runbook", "dev-1"


def _queries(dialect: str) -> list[Path]:
    """The files that run on this engine: the shared ones and its own `*.<engine>.sql`."""
    other = {"sqlite": "postgres", "postgresql": "sqlite"}[dialect]
    return sorted(p for p in RUNBOOK.glob("*.sql") if not p.name.endswith(f".{other}.sql"))


def _statements(path: Path) -> list[str]:
    text = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def _run(store: Store, path: Path, **params) -> list[list[dict]]:
    with store.connect() as conn:
        results = []
        for statement in _statements(path):
            names = set(re.findall(r"(?<!:):([a-z_]+)", statement))
            missing = names - params.keys()
            assert not missing, f"{path.name} needs parameters {missing} the test does not bind"
            rows = conn.execute(sa.text(statement), {n: params[n] for n in names})
            results.append([dict(r) for r in rows.mappings()])
        return results


@pytest.fixture
def seeded(store: Store) -> Store:
    """One integration with a device written by a failed-then-retried call, a dead letter for
    it, a sync still running from two hours ago and a finished one."""
    register_integration(
        store,
        Integration(
            integration_id=INTEGRATION,
            organization_id=ORG,
            provider="golioth",
            name="runbook",
            settings={"base_url": "http://127.0.0.1:9", "project_id": "p"},
            secret_refs={"api_key": "UNSET_RUNBOOK_KEY"},
        ),
    )
    now = utc_now()
    request_id = str(uuid.uuid4())
    with store.transaction() as conn:
        insert_activity_rows(
            conn,
            [
                provider_call_row(
                    ORG,
                    INTEGRATION,
                    now - timedelta(minutes=5),
                    status="retrying",
                    error_message="HTTP 503",
                    request_id=request_id,
                    run_id="run-1",
                ),
                provider_call_row(
                    ORG,
                    INTEGRATION,
                    now - timedelta(minutes=4),
                    request_id=request_id,
                    run_id="run-1",
                    attempt=2,
                ),
            ],
        )
        conn.execute(
            sa.text(
                "INSERT INTO devices (organization_id, integration_id, external_id, name, "
                "hardware_ids, tags, attributes, content_hash, last_run_id, last_request_id, "
                "created_at, updated_at) VALUES (:o, :i, :d, 'Device 1', '[]', '[]', '{}', 'h', "
                "'run-1', :r, :t, :t)"
            ),
            {"o": ORG, "i": INTEGRATION, "d": DEVICE, "r": request_id, "t": now},
        )
        record_dead_letters(
            conn,
            organization_id=ORG,
            integration_id=INTEGRATION,
            provider="golioth",
            records=[
                FailedRecord(
                    stream="device_states",
                    dedupe_key=DEVICE,
                    error_type="validation",
                    error_message="state is not a JSON object",
                    external_id=DEVICE,
                )
            ],
            policy=DeadLetterPolicy.from_settings({}),
            run_id="run-1",
            now=now,
        )
        start_sync_log(conn, ORG, INTEGRATION, "devices", "run-1", None)
        stuck = start_sync_log(conn, ORG, INTEGRATION, "device_states", "run-0", None)
        conn.execute(
            sa.text("UPDATE integration_sync_log SET started_at = :t WHERE id = :id"),
            {"t": now - timedelta(hours=2), "id": stuck},
        )
    return store


def _since(store: Store, ago: timedelta):
    when = utc_now() - ago
    return format_timestamp(when) if store.engine.dialect.name == "sqlite" else when


def test_every_runbook_query_runs_on_a_migrated_store(seeded):
    queries = _queries(seeded.engine.dialect.name)
    assert len(queries) >= 4
    params = {
        "organization_id": ORG,
        "external_id": DEVICE,
        "since": _since(seeded, timedelta(hours=1)),
        "stale_after_s": 3600,
    }
    for path in queries:
        assert path.read_text().startswith("-- "), f"{path.name} opens with its comment header"
        _run(seeded, path, **params)


def test_why_is_a_device_not_updating_shows_its_rows_calls_letters_and_syncs(seeded):
    device, state, calls, letters, syncs = _run(
        seeded,
        RUNBOOK / "why_is_device_not_updating.sql",
        organization_id=ORG,
        external_id=DEVICE,
    )
    assert [(d["integration_id"], d["last_run_id"]) for d in device] == [(INTEGRATION, "run-1")]
    assert state == []
    assert [c["attempt"] for c in calls] == [2, 1]  # the writing request's attempts, newest first
    assert [(d["stream"], d["status"]) for d in letters] == [("device_states", "pending")]
    assert {s["stream"] for s in syncs} == {"devices", "device_states"}


def test_another_organization_sees_nothing_of_the_device(seeded):
    results = _run(
        seeded,
        RUNBOOK / "why_is_device_not_updating.sql",
        organization_id="org-else",
        external_id=DEVICE,
    )
    assert results == [[], [], [], [], []]


def test_open_dead_letters_are_counted_per_integration_and_stream(seeded):
    (rows,) = _run(seeded, RUNBOOK / "open_dead_letters_by_integration.sql", organization_id=ORG)
    assert [(r["integration_id"], r["stream"], r["status"], r["letters"]) for r in rows] == [
        (INTEGRATION, "device_states", "pending", 1)
    ]


def test_running_syncs_are_listed_oldest_first_and_the_dead_one_is_stale(seeded):
    dialect = "postgres" if seeded.engine.dialect.name == "postgresql" else "sqlite"
    (rows,) = _run(
        seeded, RUNBOOK / f"running_syncs.{dialect}.sql", organization_id=ORG, stale_after_s=3600
    )
    assert [(r["stream"], bool(r["stale"])) for r in rows] == [
        ("device_states", True),
        ("devices", False),
    ]
    assert 7000 < float(rows[0]["age_s"]) < 7300 and float(rows[1]["age_s"]) < 300


def test_the_call_failure_rate_counts_retried_attempts_as_failures(seeded):
    (rows,) = _run(
        seeded,
        RUNBOOK / "call_failure_rate_by_integration.sql",
        organization_id=ORG,
        since=_since(seeded, timedelta(hours=1)),
    )
    assert [(r["integration_id"], r["calls"], r["failed"]) for r in rows] == [(INTEGRATION, 2, 1)]
    assert float(rows[0]["call_failure_rate"]) == 0.5
    (later,) = _run(
        seeded,
        RUNBOOK / "call_failure_rate_by_integration.sql",
        organization_id=ORG,
        since=_since(seeded, timedelta(minutes=1)),
    )
    assert later == []
