"""The integration page's device list (store/device_search.py) on SQLite and Postgres: a search
by id or name with LIKE's wildcards taken literally, the active / deleted / failing filters and
their counts, the newest open letter's error, keyset pages that show every device exactly once,
and nothing of another organization or integration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sync_pipelines.providers.contract import DeviceRecord
from sync_pipelines.store.dead_letters import (
    DeadLetterPolicy,
    DeadLetterSelection,
    FailedRecord,
    list_dead_letters,
    quarantine_dead_letters,
    record_dead_letters,
    resolve_dead_letters_for,
)
from sync_pipelines.store.deletions import mark_deleted
from sync_pipelines.store.device_search import count_devices_by_filter, search_devices
from sync_pipelines.store.devices import upsert_devices
from sync_pipelines.sync.records import device_row
from sync_pipelines_tests.owners import own_integrations

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
ORG, IID = "org-list", "golioth-list"
NAMES = {
    "dev-001": "Boiler room",
    "dev-002": "Roof 50%_sensor",
    "dev-003": "boiler ANNEX",
    "dev-004": "Gate",
    "dev-005": "Cold store",
    "dev_x06": "Loading bay",
}


def _seed(store) -> None:
    own_integrations(store, ORG, IID, "golioth-other")
    own_integrations(store, "org-else", "golioth-else")

    def rows(org, iid, names):
        return [
            device_row(
                DeviceRecord(external_id=e, name=n),
                organization_id=org,
                integration_id=iid,
                run_id="run-1",
                request_id=None,
                now=NOW,
            )
            for e, n in names.items()
        ]

    policy = DeadLetterPolicy(max_attempts=3)
    with store.transaction() as conn:
        upsert_devices(conn, rows(ORG, IID, NAMES))
        upsert_devices(conn, rows(ORG, "golioth-other", {"dev-001": "Boiler elsewhere"}))
        upsert_devices(conn, rows("org-else", "golioth-else", {"dev-009": "Boiler of org-else"}))
        mark_deleted(conn, ORG, IID, "dev-004", run_id="run-2", request_id=None, now=NOW)

        def fail(external_id, stream, message, at):
            record_dead_letters(
                conn,
                organization_id=ORG,
                integration_id=IID,
                provider="golioth",
                records=[FailedRecord(stream, external_id, "validation", message, {}, external_id)],
                policy=policy,
                run_id="run-1",
                now=at,
            )

        fail("dev-002", "devices", "older failure", NOW - timedelta(minutes=5))
        fail("dev-002", "device_states", "state is not JSON", NOW)
        fail("dev-003", "devices", "resolved since", NOW)
        fail("dev-005", "device_states", "kept aside", NOW)
        # refused from its first record on: no device row, only its letter knows it
        fail("dev-777", "devices", "hardwareIds must be a list", NOW)
        resolve_dead_letters_for(conn, ORG, IID, "devices", ["dev-003"], run_id="run-3", now=NOW)
        set_aside = DeadLetterSelection(integration_id=IID, stream="device_states")
        letters = [
            d.id for d in list_dead_letters(conn, ORG, set_aside) if d.external_id == "dev-005"
        ]
        quarantine_dead_letters(conn, ORG, DeadLetterSelection(ids=tuple(letters)), now=NOW)


def _ids(store, **kw) -> list[str]:
    with store.connect() as conn:
        return [d.external_id for d in search_devices(conn, ORG, IID, **kw)]


def test_filters_searches_and_counts(store):
    _seed(store)
    assert _ids(store) == sorted(NAMES)
    assert _ids(store, which="active") == ["dev-001", "dev-002", "dev-003", "dev-005", "dev_x06"]
    assert _ids(store, which="deleted") == ["dev-004"]
    # failing = an open (pending, retrying) or quarantined letter; dev-003's is resolved
    assert _ids(store, which="failing") == ["dev-002", "dev-005", "dev-777"]
    assert _ids(store, which="failing", query="777") == ["dev-777"]
    assert _ids(store, which="failing", after="dev-002", limit=1) == ["dev-005"]
    # case-insensitive substring of the id or the name
    assert _ids(store, query="BOILER") == ["dev-001", "dev-003"]
    assert _ids(store, query="x06") == ["dev_x06"]
    assert _ids(store, query="boiler", which="failing") == []
    # LIKE's wildcards are literal: `%` and `_` match only themselves
    assert _ids(store, query="50%_") == ["dev-002"]
    assert _ids(store, query="v_x") == ["dev_x06"]
    assert _ids(store, query="%") == ["dev-002"]
    with store.connect() as conn:
        assert count_devices_by_filter(conn, ORG, IID) == {
            "all": 6,
            "active": 5,
            "deleted": 1,
            "failing": 3,
        }
        # another organization asking for this integration sees nothing
        assert search_devices(conn, "org-else", IID) == []
        assert count_devices_by_filter(conn, "org-else", IID)["all"] == 0


def test_each_row_carries_status_open_letters_and_the_newest_error(store):
    _seed(store)
    with store.connect() as conn:
        found = {d.external_id: d for d in search_devices(conn, ORG, IID)}
    assert found["dev-004"].status == "deleted" and found["dev-004"].deleted_at is not None
    assert found["dev-002"].open_dead_letters == 2
    assert found["dev-002"].last_error == "validation: state is not JSON"
    assert found["dev-003"].open_dead_letters == 0 and found["dev-003"].last_error is None
    assert found["dev-005"].last_error == "validation: kept aside"
    # open means what health means by it (pending, retrying); quarantined apart
    assert (found["dev-005"].open_dead_letters, found["dev-005"].quarantined_dead_letters) == (0, 1)
    assert found["dev-002"].quarantined_dead_letters == 0
    assert found["dev-001"].updated_at is not None and found["dev-001"].last_run_id == "run-1"
    with store.connect() as conn:
        failing = {d.external_id: d for d in search_devices(conn, ORG, IID, which="failing")}
    never = failing["dev-777"]
    assert never.status == "not stored" and never.name is None and never.updated_at is None
    assert never.last_error == "validation: hardwareIds must be a list"
    assert failing["dev-002"].status is None and failing["dev-002"].name == NAMES["dev-002"]


def test_keyset_pages_show_every_device_exactly_once(store):
    _seed(store)
    seen, after = [], None
    while True:
        page = _ids(store, after=after, limit=2)
        if not page:
            break
        assert len(page) <= 2
        seen += page
        after = page[-1]
    assert seen == sorted(NAMES)
