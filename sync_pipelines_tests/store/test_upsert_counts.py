"""Keyed upserts report created / updated / unchanged, counted on the server (Postgres) or from
the stored hashes (SQLite): the same figures on both engines."""

from __future__ import annotations

from datetime import UTC, datetime

from sync_pipelines.providers.contract import DeviceRecord
from sync_pipelines.store.bulk import UpsertCounts
from sync_pipelines.store.devices import count_devices, get_device, upsert_devices
from sync_pipelines.sync.records import device_row

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _rows(integ, names: dict[str, str]) -> list[dict]:
    return [
        device_row(
            DeviceRecord(
                external_id=key,
                name=name,
                tags=("t1",),
                attributes={"b": 1, "a": {"z": 2, "y": None}},
            ),
            organization_id=integ.organization_id,
            integration_id=integ.integration_id,
            run_id="run-1",
            request_id="req-1",
            now=NOW,
        )
        for key, name in names.items()
    ]


def test_created_updated_unchanged_counts(store, golioth, register_golioth):
    integ = register_golioth(store, golioth)
    with store.transaction() as conn:
        first = upsert_devices(conn, _rows(integ, {"d1": "one", "d2": "two", "d3": "three"}))
    with store.transaction() as conn:
        again = upsert_devices(conn, _rows(integ, {"d1": "one", "d2": "two", "d3": "three"}))
    with store.transaction() as conn:
        mixed = upsert_devices(
            conn, _rows(integ, {"d1": "one", "d2": "TWO", "d3": "three", "d4": "four"})
        )
    assert (first, again, mixed) == (
        UpsertCounts(3, 0, 0),
        UpsertCounts(0, 0, 3),
        UpsertCounts(1, 1, 2),
    )
    with store.connect() as conn:
        assert count_devices(conn, integ.organization_id, integ.integration_id) == 4
        assert get_device(conn, integ.organization_id, integ.integration_id, "d2")["name"] == "TWO"


def test_two_upserts_in_one_transaction_count_apart(store, golioth, register_golioth):
    """The Postgres staging table is emptied between statements of one transaction."""
    integ = register_golioth(store, golioth)
    with store.transaction() as conn:
        first = upsert_devices(conn, _rows(integ, {"d1": "one", "d2": "two"}))
        second = upsert_devices(conn, _rows(integ, {"d2": "two!", "d3": "three"}))
    assert (first, second) == (UpsertCounts(2, 0, 0), UpsertCounts(1, 1, 0))
