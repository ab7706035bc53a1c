"""The MQTT provider against its peer (a real Mosquitto with a password file), without a store:
retained topics → typed records, optimistic desired writes, and broker failures → the taxonomy."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest
from sync_pipelines_peers.launchers.contract import AUTH_FAILURE, MALFORMED, SERVER_ERROR
from sync_pipelines_peers.launchers.mqtt import MALFORMED_DEVICE, MqttPeer

from sync_pipelines.errors import AuthError, ConflictError, TransientError
from sync_pipelines.observability.activity import ActivityRecorder, ActivityScope, MemorySink
from sync_pipelines.providers.contract import IntegrationConfig
from sync_pipelines.sync.integration_config import open_provider

#: the client's CONNECT retries with short backoffs
FAST_RETRIES = {"retry_base_backoff_s": 0.01, "retry_max_backoff_s": 0.05, "retry_jitter_s": 0.01}


@pytest.fixture(scope="module")
def peer():
    running = MqttPeer()
    running.start()
    running.seed(60)
    yield running
    running.stop()


@pytest.fixture
def recorder() -> ActivityRecorder:
    return ActivityRecorder(
        MemorySink(), ActivityScope(organization_id="org-p", integration_id="m-p")
    )


def _config(peer: MqttPeer, password: str | None = None, **settings) -> IntegrationConfig:
    return IntegrationConfig(
        integration_id="m-p",
        organization_id="org-p",
        provider="mqtt",
        settings={**peer.integration_settings(), **FAST_RETRIES, **settings},
        secrets={"username": peer.username, "password": password or peer.password},
    )


def _provider(peer, recorder, password=None, **settings):
    return open_provider(_config(peer, password, **settings), recorder, timeout_s=5)


def _listed(pages):
    return [d.external_id for p in pages for d in p.devices]


def test_listing_pages_the_retained_inventory_in_id_order(peer, recorder):
    with _provider(peer, recorder, page_size=25) as provider:
        pages = list(provider.list_devices())
    assert [len(p.devices) for p in pages] == [25, 25, 10]
    assert _listed(pages) == sorted(peer.inventory())
    assert [p.total for p in pages] == [60, 60, 60]
    assert [p.cursor_after for p in pages] == [
        {"after_id": _listed(pages)[24]},
        {"after_id": _listed(pages)[49]},
        None,
    ]
    device = pages[0].devices[0]
    assert device.hardware_ids and device.tags and device.attributes["meta_version"] == 1
    assert device.provider_updated_at is not None and device.provider_updated_at.tzinfo


def test_a_resumed_scan_yields_the_devices_after_the_cursor(peer, recorder):
    with _provider(peer, recorder, page_size=25) as provider:
        first = next(iter(provider.list_devices()))
        resumed = list(provider.list_devices(since=first.cursor_after))
    assert _listed([first]) + _listed(resumed) == sorted(peer.inventory())
    assert [len(p.devices) for p in resumed] == [25, 10]


def test_a_changed_meta_is_listed_with_its_new_version(peer, recorder):
    target = sorted(peer.inventory())[10]
    peer.change_devices([target])
    with _provider(peer, recorder) as provider:
        (device,) = [
            d for p in provider.list_devices() for d in p.devices if d.external_id == target
        ]
    assert device.name.endswith("-renamed") and device.attributes["meta_version"] == 2


def test_states_come_from_retained_reported_and_desired_with_a_version(peer, recorder):
    ids = sorted(peer.inventory())[:3]
    with _provider(peer, recorder) as provider:
        states, failures = provider.get_states([*ids, "no-such-device", "bad/id"])
    by_id = {s.external_id: s for s in states}
    assert [(f.external_id, f.error_type) for f in failures] == [("bad/id", "validation")]
    for external_id in ids:
        assert by_id[external_id].reported == peer.reported_state(external_id)
        assert by_id[external_id].desired == peer.desired_state(external_id)
        assert "version" not in by_id[external_id].reported
    assert (by_id["no-such-device"].reported, by_id["no-such-device"].version) == (None, "0:0")


def test_push_desired_merges_the_patch_and_a_stale_version_is_a_conflict(peer, recorder):
    target = sorted(peer.inventory())[20]
    with _provider(peer, recorder) as provider:
        (state,), _ = provider.get_states([target])
        pushed = provider.push_desired(
            target, {"led": "blink", "interval_s": None}, expected_version=state.version
        )
        assert peer.desired_state(target) == {"led": "blink"}
        peer.write_desired_remotely(target, {"led": "off"})  # someone else writes in between
        with pytest.raises(
            ConflictError, match=f"device {target}: state version is 1:3, expected 1:2"
        ):
            provider.push_desired(target, {"led": "on"}, expected_version=pushed.version)
    assert (state.version, pushed.version, pushed.desired) == ("1:1", "1:2", {"led": "blink"})
    assert peer.desired_state(target) == {"led": "off"}


def test_non_json_and_oversized_metas_are_rejected_and_the_rest_is_listed(peer, recorder):
    peer.inject_fault(MALFORMED)
    with peer.simulator() as sim:
        sim.publish_meta(
            "huge-device", {"name": "huge", "version": 1, "attributes": {"blob": "x" * 5000}}
        )
    try:
        with _provider(peer, recorder, max_message_bytes=4096) as provider:
            pages = list(provider.list_devices())
    finally:
        peer.clear_faults()
        with peer.simulator() as sim:
            sim.clear(["huge-device"])
    rejected = {r.external_id: r for p in pages for r in p.rejected}
    assert set(rejected) == {MALFORMED_DEVICE, "huge-device"}
    assert (
        f"devices/{MALFORMED_DEVICE}/meta (device {MALFORMED_DEVICE})"
        in rejected[MALFORMED_DEVICE].error_message
    )
    assert "not valid JSON" in rejected[MALFORMED_DEVICE].error_message
    assert "exceeds max_message_bytes=4096" in rejected["huge-device"].error_message
    assert all(r.error_type == "validation" for r in rejected.values())
    assert len(_listed(pages)) == 60


def test_rejected_credentials_are_an_auth_error(peer, recorder):
    with _provider(peer, recorder, password="not-the-password") as provider:
        result = provider.test_connection()
        with pytest.raises(AuthError, match="Not authorized"):
            list(provider.list_devices())
    assert not result.ok and "auth" in result.reason


def test_the_peer_auth_failure_fault_rotates_the_password_until_cleared(peer, recorder):
    peer.inject_fault(AUTH_FAILURE)
    try:
        with _provider(peer, recorder) as provider:
            failing = provider.test_connection()
    finally:
        peer.clear_faults()
    with _provider(peer, recorder) as provider:
        assert provider.test_connection().ok
    assert not failing.ok and "auth" in failing.reason


def test_a_stopped_broker_is_transient_and_its_retained_inventory_survives_the_restart(
    peer, recorder
):
    peer.inject_fault(SERVER_ERROR)
    try:
        with _provider(peer, recorder) as provider:
            down = provider.test_connection()
            with pytest.raises(TransientError, match="Connection refused"):
                provider.get_states(["mqtt-dev-00001"])
    finally:
        peer.clear_faults()
    assert not down.ok and down.details["category"] == "transient"
    assert len(peer.inventory()) == 60  # persistence brought the retained documents back


def test_nothing_listening_is_transient(peer, recorder):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    config = replace(
        _config(peer), settings={**peer.integration_settings(), **FAST_RETRIES, "port": closed_port}
    )
    with open_provider(config, recorder, timeout_s=2) as provider:
        assert not provider.test_connection().ok
        with pytest.raises(TransientError, match="cannot reach the broker"):
            list(provider.list_devices())
