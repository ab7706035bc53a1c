"""The sync streams' tables as described for the catalogue match the migrated schema, and an
integration's row count is scoped to its organization and integration, on SQLite and Postgres."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from sync_pipelines.providers.contract import DeviceRecord
from sync_pipelines.store.devices import upsert_devices
from sync_pipelines.store.stream_tables import (
    DEVICES,
    STREAM_TABLES,
    StreamTable,
    count_integration_rows,
)
from sync_pipelines.sync.records import device_row
from sync_pipelines_tests.owners import own_integrations

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _devices(organization_id: str, integration_id: str, count: int) -> list[dict]:
    return [
        device_row(
            DeviceRecord(external_id=f"d{n}", name=f"device {n}"),
            organization_id=organization_id,
            integration_id=integration_id,
            run_id="run-1",
            request_id="req-1",
            now=NOW,
        )
        for n in range(count)
    ]


@pytest.mark.parametrize("stream", sorted(STREAM_TABLES))
def test_described_columns_are_the_migrated_tables_columns(store, stream):
    table = STREAM_TABLES[stream]
    migrated = [c["name"] for c in sa.inspect(store.engine).get_columns(table.name)]
    assert sorted(table.column_names) == sorted(migrated)


def test_an_integrations_row_count_leaves_out_other_integrations_and_tenants(store):
    with store.transaction() as conn:
        own_integrations(conn, "org-a", "int-a", "int-b")
        own_integrations(conn, "org-b", "int-c")
        upsert_devices(conn, _devices("org-a", "int-a", 3))
        upsert_devices(conn, _devices("org-a", "int-b", 1))
        upsert_devices(conn, _devices("org-b", "int-c", 5))
    with store.connect() as conn:
        assert count_integration_rows(conn, DEVICES, "org-a", "int-a") == 3
        assert count_integration_rows(conn, DEVICES, "org-b", "int-a") == 0


def test_only_a_sync_streams_table_is_counted(store):
    with store.connect() as conn, pytest.raises(ValueError, match="not a sync stream"):
        count_integration_rows(conn, StreamTable("integrations; --", ()), "org-a", "int-a")
