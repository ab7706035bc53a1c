"""One conformance suite for every registered provider, run against its local peer over real
sockets (Golioth and Azure emulators, moto server behind a fault proxy, a Mosquitto broker).

The assertions are the same for all four; a new provider joins by registering its module and
its peer (providers/registry.py, peers/registry.py) — nothing here names a provider.
"""

from __future__ import annotations

import pytest
from sync_pipelines_peers.launchers.contract import (
    ALL_FAULTS,
    AUTH_FAILURE,
    MALFORMED,
    RATE_LIMIT,
    SERVER_ERROR,
)

from sync_pipelines.errors import (
    AuthError,
    ConflictError,
    MalformedResponseError,
    RateLimitedError,
    TransientError,
)
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.desired import desired_changes, request_desired_change, sync_conflicts
from sync_pipelines.store.devices import count_devices
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.export import export_desired_states
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines_tests.conformance.conftest import INVENTORY_SIZE, ORG, PAGE_SIZE

# -- connection ---------------------------------------------------------------------------------


def test_connection_succeeds_with_valid_credentials(open_peer_provider):
    result = open_peer_provider().test_connection()
    assert result.ok, result.reason
    assert result.latency_ms > 0


def test_connection_fails_with_wrong_credentials_and_says_auth(open_peer_provider):
    result = open_peer_provider(wrong_secret=True).test_connection()
    assert not result.ok
    assert "auth" in (result.reason or "").lower(), result.reason


# -- inventory ----------------------------------------------------------------------------------


def test_full_listing_across_many_pages_equals_the_peer_inventory(peer, open_peer_provider):
    pages = list(open_peer_provider().list_devices())
    ids = [d.external_id for p in pages for d in p.devices]
    assert len(pages) >= INVENTORY_SIZE // PAGE_SIZE
    assert all(len(p.devices) + len(p.rejected) <= PAGE_SIZE for p in pages)
    assert len(ids) == len(set(ids)), "a device was listed twice"
    assert set(ids) == peer.inventory()
    assert [p.cursor_after is None for p in pages] == [False] * (len(pages) - 1) + [True]
    assert not [r for p in pages for r in p.rejected]


def test_a_scan_resumed_from_a_cursor_loses_nothing(peer, open_peer_provider):
    provider = open_peer_provider()
    first = []
    for page in provider.list_devices():
        first.append(page)
        if len(first) == 2:
            break
    resumed = list(open_peer_provider().list_devices(since=first[-1].cursor_after))
    ids = {d.external_id for p in first + resumed for d in p.devices}
    assert ids == peer.inventory()


def test_an_incremental_sync_after_changes_writes_only_what_changed(
    peer, store, register_peer_integration, open_session
):
    integration = register_peer_integration(store)
    with open_session(store, integration.integration_id) as session:
        first = sync_devices(session)
    assert (first.status, first.counts.created) == ("success", INVENTORY_SIZE)
    changed = sorted(peer.inventory())[:3]
    peer.change_devices(changed)
    with open_session(store, integration.integration_id) as session:
        second = sync_devices(session)
    assert second.status == "success"
    assert (second.counts.created, second.counts.updated, second.counts.failed) == (
        0,
        len(changed),
        0,
    )
    assert second.counts.unchanged == second.counts.fetched - len(changed)
    with store.connect() as conn:
        assert count_devices(conn, ORG, integration.integration_id) == INVENTORY_SIZE


# -- state --------------------------------------------------------------------------------------


def test_states_are_the_peer_documents_with_a_version(peer, open_peer_provider):
    sample = sorted(peer.inventory())[10:16]
    states, failures = open_peer_provider().get_states(sample)
    assert failures == []
    assert sorted(s.external_id for s in states) == sample
    for state in states:
        assert state.version, f"{state.external_id} has no version"
        assert state.reported == peer.reported_state(state.external_id)
        assert state.desired == peer.desired_state(state.external_id)


# -- export -------------------------------------------------------------------------------------


def test_push_desired_is_conditional_on_the_version(peer, open_peer_provider):
    provider = open_peer_provider()
    if not provider.supports_desired:
        pytest.fail(
            f"{peer.provider} declares no desired state; every provider of the product must export"
        )
    device = sorted(peer.inventory())[20]
    (before,), _ = provider.get_states([device])
    pushed = provider.push_desired(
        device, {"conformance_interval_s": 42}, expected_version=before.version
    )
    assert pushed.version and pushed.version != before.version
    assert peer.desired_state(device)["conformance_interval_s"] == 42
    with pytest.raises(ConflictError) as stale:
        provider.push_desired(
            device, {"conformance_interval_s": 43}, expected_version=before.version
        )
    assert device in str(stale.value)
    peer.write_desired_remotely(device, {"conformance_remote": True})
    with pytest.raises(ConflictError):
        provider.push_desired(
            device, {"conformance_interval_s": 44}, expected_version=pushed.version
        )
    assert peer.desired_state(device)["conformance_interval_s"] == 42


@pytest.mark.parametrize("rule", ["provider_wins", "local_wins"])
def test_export_detects_and_records_conflicts_and_applies_the_rule(
    peer, sqlite_store, register_peer_integration, open_session, rule
):
    store = sqlite_store
    integration = register_peer_integration(
        store, f"{peer.provider}-export-{rule}".replace("_", "-"), conflict_resolution=rule
    )
    iid = integration.integration_id
    with open_session(store, iid) as session:
        sync_devices(session)
        sync_device_states(session)
    quiet, contested = sorted(peer.inventory())[30:32]
    with store.transaction() as conn:
        request_desired_change(conn, ORG, iid, quiet, {"export_quiet": rule})
        request_desired_change(conn, ORG, iid, contested, {"export_contested": f"ours-{rule}"})
    peer.write_desired_remotely(contested, {"export_contested": f"theirs-{rule}"})

    with open_session(store, iid) as session:
        result = export_desired_states(session)

    assert (result.counts.updated, result.counts.conflicts, result.counts.failed) == (
        1 + (rule == "local_wins"),
        1,
        0,
    )
    assert peer.desired_state(quiet)["export_quiet"] == rule
    expected = f"ours-{rule}" if rule == "local_wins" else f"theirs-{rule}"
    assert peer.desired_state(contested)["export_contested"] == expected
    with store.connect() as conn:
        (conflict,) = sync_conflicts(conn, ORG, iid)
        statuses = {c["external_id"]: c["status"] for c in desired_changes(conn, ORG, iid)}
        rows = activity_rows(conn, ORG, integration_id=iid)
    assert (conflict["external_id"], conflict["resolution"]) == (contested, rule)
    assert conflict["local_patch"] == {"export_contested": f"ours-{rule}"}
    assert statuses == {
        quiet: "pushed",
        contested: "pushed" if rule == "local_wins" else "conflict",
    }
    conflict_rows = [r for r in rows if r["activity_type"] == "conflict"]
    assert len(conflict_rows) == 1 and contested in conflict_rows[0]["error_message"]


# -- error taxonomy -----------------------------------------------------------------------------

_EXPECTED = {AUTH_FAILURE: AuthError, RATE_LIMIT: RateLimitedError, SERVER_ERROR: TransientError}


@pytest.mark.parametrize("fault", ALL_FAULTS)
def test_injected_faults_map_onto_the_error_taxonomy(peer, open_peer_provider, fault):
    if fault not in peer.supported_faults:
        reason = peer.unsupported_reasons.get(fault, "")
        assert len(reason) > 20, f"{peer.provider} cannot produce {fault} and must say why"
        return
    # 50 faults outlast the retries; a budget shorter than the peer's Retry-After stops at once
    provider = open_peer_provider(retry_max_total_s=1)
    peer.inject_fault(fault, times=50)
    if fault == MALFORMED:
        try:
            pages = list(provider.list_devices())
        except MalformedResponseError as exc:
            assert exc.category == "validation"
        else:
            rejected = [r for p in pages for r in p.rejected]
            assert rejected and all(r.error_type == "validation" for r in rejected)
        return
    with pytest.raises(_EXPECTED[fault]) as raised:
        list(provider.list_devices())
    if fault == RATE_LIMIT:
        assert raised.value.retry_after_s == pytest.approx(peer.rate_limit_retry_after_s, abs=1.0)
    if fault == AUTH_FAILURE:
        assert not provider.test_connection().ok
