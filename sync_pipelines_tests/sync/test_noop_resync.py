"""A poll where nothing changed writes no device row (Golioth emulator, SQLite and PostgreSQL):
counts exact, every row as the first sync left it (provenance, updated_at, and on Postgres the
tuple's xmin / xmax: not even locked). A changed device is still updated, a device gone from a
complete scan still soft-deleted, a reappearing one restored, and none of that rewrites the
others (deletion detection keeps its seen ids apart, in device_scan_seen)."""

from __future__ import annotations

import sqlalchemy as sa

from sync_pipelines.store.devices import get_device
from sync_pipelines.sync.inventory import sync_devices


def _sync(open_session, store, integ):
    with open_session(store, integ.integration_id) as session:
        result = sync_devices(session)
    assert result.status == "success"
    c = result.counts
    return (c.created, c.updated, c.unchanged, c.deleted)


def _versions(store, integ) -> dict[str, tuple]:
    system = "xmin::text, xmax::text, " if store.is_postgres else ""
    with store.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT external_id, {system}last_run_id, updated_at FROM devices "
                "WHERE integration_id = :i"
            ),
            {"i": integ.integration_id},
        ).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def _rewritten(before: dict[str, tuple], after: dict[str, tuple]) -> set[str]:
    return {k for k in after if after[k] != before.get(k)}


def test_an_unchanged_resync_writes_no_device_row(store, golioth, register_golioth, open_session):
    integ = register_golioth(store, golioth)
    assert _sync(open_session, store, integ) == (250, 0, 0, 0)
    before = _versions(store, integ)
    assert _sync(open_session, store, integ) == (0, 0, 250, 0)
    assert _sync(open_session, store, integ) == (0, 0, 250, 0)
    assert _versions(store, integ) == before


def test_changes_deletions_and_restores_write_only_their_rows(
    store, golioth, register_golioth, open_session
):
    integ = register_golioth(store, golioth)
    _sync(open_session, store, integ)
    ids = list(golioth.emulator.device_ids())
    renamed, gone = ids[5], ids[130:132]
    golioth.emulator.patch_device(renamed, {"name": "renamed"})
    for external_id in gone:
        golioth.emulator.delete_device(external_id)
    before = _versions(store, integ)

    assert _sync(open_session, store, integ) == (0, 1, 247, 2)
    after_delete = _versions(store, integ)
    assert _rewritten(before, after_delete) == {renamed, *gone}
    o, i = integ.organization_id, integ.integration_id
    with store.connect() as conn:
        assert get_device(conn, o, i, renamed)["name"] == "renamed"
        assert all(get_device(conn, o, i, e)["deleted_at"] is not None for e in gone)

    golioth.emulator.restore_device(gone[0])
    assert _sync(open_session, store, integ) == (0, 1, 248, 0)
    assert _rewritten(after_delete, _versions(store, integ)) == {gone[0]}
    with store.connect() as conn:
        restored = get_device(conn, o, i, gone[0])
        assert restored["deleted_at"] is None and restored["status"] != "deleted"
        assert get_device(conn, o, i, gone[1])["deleted_at"] is not None
