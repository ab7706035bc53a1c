"""The report and an integration's sync history as DataFrames over the fleet's real sync history
(conftest.py), on SQLite and Postgres, and the report asset's column schema derived from them."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pandas as pd
import pytest

from sync_pipelines.clock import utc_now
from sync_pipelines.defs.reports import column_schema, integration_health_report
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.reports.frames import (
    HEALTH_COLUMNS,
    SYNC_HISTORY_COLUMNS,
    health_frame,
    sync_history_frame,
)
from sync_pipelines.reports.integration_report import build_integration_report
from sync_pipelines_tests.reports.conftest import DOWN, FLAKY, OK, ORG, OTHER


def _report(fleet):
    with fleet.store.connect() as conn:
        return build_integration_report(conn, organization_id=ORG, now=utc_now())


def _history(fleet, integration_id, **options):
    with fleet.store.connect() as conn:
        return sync_history_frame(conn, ORG, integration_id, **options)


def test_the_health_frame_has_one_row_per_integration_with_the_reports_figures(fleet):
    report = _report(fleet)
    frame = health_frame(report)
    assert list(frame.columns) == list(HEALTH_COLUMNS)
    assert list(frame["integration_id"]) == [DOWN, FLAKY, OK]  # worst first, as the report
    assert list(frame["state"]) == ["unhealthy", "warning", "healthy"]
    by_id = frame.set_index("integration_id")
    for row in report.integrations:
        got = by_id.loc[row.integration_id]
        assert got["provider"] == "golioth"
        assert got["calls"] == row.calls.calls and got["calls_failed"] == row.calls.failed
        assert got["syncs_failed"] == row.syncs.failed
        assert got["open_dead_letters"] == row.health.dead_letters
    assert by_id.loc[DOWN, "call_failure_rate"] == 1.0
    assert by_id.loc[DOWN, "sync_success_rate"] == 0.0
    assert by_id.loc[DOWN, "failure_streak"] == 3
    assert "3 syncs failed in a row" in by_id.loc[DOWN, "reasons"]
    assert (
        by_id.loc[DOWN, "top_error"].startswith("transient: ")
        and "503" in by_id.loc[DOWN, "top_error"]
    )
    assert pd.isna(by_id.loc[DOWN, "last_success_at"])  # never got through
    assert by_id.loc[OK, "call_failure_rate"] == 0.0 and by_id.loc[OK, "p95_latency_ms"] > 0
    assert by_id.loc[OK, "last_success_at"] <= pd.Timestamp(utc_now())
    assert pd.isna(by_id.loc[OK, "top_error"])


def test_the_health_frame_keeps_its_dtypes_when_nothing_is_missing_or_everything_is(fleet):
    frame = health_frame(_report(fleet))
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == HEALTH_COLUMNS
    # a frame a notebook can aggregate without cleaning: the failed integration count
    assert (frame["state"] == "unhealthy").sum() == 1
    assert frame["calls"].sum() == _report(fleet).totals.calls


def test_the_sync_history_frame_lists_an_integrations_syncs_oldest_first(fleet):
    frame = _history(fleet, FLAKY)
    assert list(frame.columns) == list(SYNC_HISTORY_COLUMNS)
    # a good sync (devices, then states), then a devices sync that met the injected 503
    assert list(zip(frame["stream"], frame["status"], strict=True)) == [
        ("devices", "success"),
        ("device_states", "success"),
        ("devices", "failed"),
    ]
    assert frame["started_at"].is_monotonic_increasing
    assert (frame["completed_at"] >= frame["started_at"]).all()
    assert (frame["duration_s"] >= 0).all()
    first = frame.iloc[0]
    assert (first["fetched"], first["created"]) == (6, 6)
    failed = frame.iloc[-1]
    assert failed["error_type"] == "transient" and failed["fetched"] == 0
    assert frame["run_id"].str.startswith(f"run-{FLAKY}-").all()


def test_the_sync_history_frame_is_scoped_to_its_organization_and_period(fleet):
    assert _history(fleet, OTHER).empty  # org-b's integration, asked for as org-a
    assert _history(fleet, OK, since=utc_now() + timedelta(minutes=1)).empty
    assert len(_history(fleet, OK, since=utc_now() - timedelta(hours=1))) == 4


def test_an_empty_history_has_the_same_schema_as_a_full_one(fleet):
    empty = _history(fleet, "no-such-integration")
    assert empty.empty
    assert {name: str(dtype) for name, dtype in empty.dtypes.items()} == SYNC_HISTORY_COLUMNS


def test_the_column_schema_follows_the_frames_dtypes(fleet):
    schema = column_schema(health_frame(_report(fleet)))
    types = {column.name: column.type for column in schema.columns}
    assert list(types) == list(HEALTH_COLUMNS)
    assert types["integration_id"] == "string" and types["calls"] == "int"
    assert types["p95_latency_ms"] == "float" and types["last_success_at"] == "datetime"


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_the_report_asset_carries_the_frame_as_column_schema_table_and_csv(
    fleet, tmp_path, monkeypatch
):
    monkeypatch.setenv("SYNC_HOME", str(tmp_path))
    result = dg.materialize(
        [integration_health_report],
        resources={"store": SyncStoreResource(database_url=fleet.store.url)},
        run_config={"ops": {"integration_health_report": {"config": {"organization_id": ORG}}}},
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node("integration_health_report")
    meta = {k: v.value for k, v in materialization.metadata.items()}
    schema = meta["dagster/column_schema"]
    assert [c.name for c in schema.columns] == list(HEALTH_COLUMNS)
    assert meta["dagster/row_count"] == 3
    table = meta["health_table"]
    assert [r.data["integration_id"] for r in table.records] == [DOWN, FLAKY, OK]
    assert table.records[0].data["last_success_at"] is None
    assert isinstance(table.records[2].data["last_success_at"], str)
    csv = pd.read_csv(meta["csv"])
    assert list(csv["integration_id"]) == [DOWN, FLAKY, OK]
    assert list(csv.columns) == list(HEALTH_COLUMNS)
