"""A keyed upsert leaves an unchanged row alone, on both engines: not rewritten, not locked (a
lock is a write on Postgres: it dirties the page and logs it), counts exact. Devices and device
states share the upsert; each is checked."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from sync_pipelines.providers.contract import DeviceRecord, DeviceState
from sync_pipelines.store.bulk import UpsertCounts
from sync_pipelines.store.devices import upsert_device_states, upsert_devices
from sync_pipelines.sync.records import device_row, state_row
from sync_pipelines_tests.owners import own_integrations

FIRST = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATER = datetime(2026, 3, 1, 12, 5, tzinfo=UTC)
SCOPE = {"organization_id": "org-a", "integration_id": "golioth-a"}


def _devices(names: dict[str, str], run_id: str, now: datetime) -> list[dict]:
    return [
        device_row(
            DeviceRecord(external_id=key, name=name, tags=("t",), attributes={"fw": "1.0"}),
            **SCOPE,
            run_id=run_id,
            request_id=f"req-{run_id}",
            now=now,
        )
        for key, name in names.items()
    ]


def _states(names: dict[str, str], run_id: str, now: datetime) -> list[dict]:
    return [
        state_row(
            DeviceState(
                external_id=key, reported={"v": name}, desired=None, version="1", observed_at=now
            ),
            **SCOPE,
            run_id=run_id,
            now=now,
        )
        for key, name in names.items()
    ]


TABLES = {
    "devices": (_devices, upsert_devices),
    "device_states": (_states, upsert_device_states),
}


def _versions(conn, table: str) -> dict[str, tuple]:
    """Each row's version: what any rewrite changes (provenance, updated_at) and, on Postgres,
    the tuple's xmin / xmax / ctid (xmax moves when a row is only locked)."""
    system = "xmin::text, xmax::text, ctid::text, " if conn.dialect.name == "postgresql" else ""
    rows = conn.execute(
        sa.text(
            f"SELECT external_id, {system}last_run_id, updated_at FROM {table} "
            "WHERE integration_id = :i"
        ),
        {"i": SCOPE["integration_id"]},
    ).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def _total_changes(conn) -> int | None:
    """SQLite's count of rows this connection inserted, updated or deleted (the rows triggers
    write too: each written device's history row, sql/027)."""
    if conn.dialect.name != "sqlite":
        return None
    return conn.execute(sa.text("SELECT total_changes()")).scalar_one()


@pytest.mark.parametrize("table", TABLES)
def test_an_unchanged_batch_writes_no_row(store, table):
    make, upsert = TABLES[table]
    names = {f"d{n}": f"name-{n}" for n in range(20)}
    with store.transaction() as conn:
        own_integrations(conn, SCOPE["organization_id"], SCOPE["integration_id"])
        assert upsert(conn, make(names, "run-1", FIRST)) == UpsertCounts(20, 0, 0)
    with store.connect() as conn:
        before = _versions(conn, table)

    with store.transaction() as conn:
        changes = _total_changes(conn)
        again = upsert(conn, make(names, "run-2", LATER))
        changes_after = _total_changes(conn)
    assert again == UpsertCounts(0, 0, 20)
    assert changes_after == changes  # SQLite: no row written (None == None on Postgres)
    with store.connect() as conn:
        assert _versions(conn, table) == before


@pytest.mark.parametrize("table", TABLES)
def test_only_new_and_changed_rows_are_written(store, table):
    make, upsert = TABLES[table]
    names = {f"d{n}": f"name-{n}" for n in range(10)}
    with store.transaction() as conn:
        own_integrations(conn, SCOPE["organization_id"], SCOPE["integration_id"])
        upsert(conn, make(names, "run-1", FIRST))
    with store.connect() as conn:
        before = _versions(conn, table)

    changed = {**names, "d3": "renamed", "d10": "new"}
    with store.transaction() as conn:
        changes = _total_changes(conn)
        counts = upsert(conn, make(changed, "run-2", LATER))
        changes_after = _total_changes(conn)
    assert counts == UpsertCounts(1, 1, 9)
    if changes is not None:
        # the two rows, and their two history rows (d10 created, d3 updated)
        assert changes_after - changes == 2 + 2
    with store.connect() as conn:
        after = _versions(conn, table)
    assert {k for k in after if after[k] != before.get(k)} == {"d3", "d10"}
    assert after["d3"][-2] == "run-2"


def test_an_unchanged_row_is_not_locked_while_the_batch_commits(postgres_url):
    """Postgres: the batch's transaction still open, another session can lock the unchanged
    rows at once; the changed one it cannot (the upsert holds it)."""
    from sync_pipelines.store.database import Store

    store = Store(postgres_url)
    try:
        with store.transaction() as conn:
            conn.execute(
                sa.text("DELETE FROM devices WHERE integration_id = :integration_id"), SCOPE
            )
            own_integrations(conn, SCOPE["organization_id"], SCOPE["integration_id"])
            upsert_devices(conn, _devices({"d1": "one", "d2": "two"}, "run-1", FIRST))
        with store.transaction() as conn:
            counts = upsert_devices(conn, _devices({"d1": "one", "d2": "TWO"}, "run-2", LATER))
            assert counts == UpsertCounts(0, 1, 1)
            with store.engine.connect() as other:
                lock = sa.text(
                    "SELECT external_id FROM devices WHERE integration_id = :integration_id AND "
                    "external_id = :e FOR UPDATE NOWAIT"
                )
                assert other.execute(lock, {**SCOPE, "e": "d1"}).scalar_one() == "d1"
                other.rollback()
                with pytest.raises(sa.exc.OperationalError, match="could not obtain lock"):
                    other.execute(lock, {**SCOPE, "e": "d2"})
    finally:
        store.dispose()
