"""The AWS IoT provider against moto behind the fault-injecting proxy, over real sockets:
wire format → typed records, AWS's failure shapes → the error taxonomy, and the engine's
inventory and state syncs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sync_pipelines_peers.emulators.faults import FaultSpec
from sync_pipelines_peers.launchers.aws_iot import AwsIotPeer

from sync_pipelines.errors import (
    AuthError,
    ConflictError,
    MalformedResponseError,
    RateLimitedError,
    TransientError,
)
from sync_pipelines.observability.activity import ActivityRecorder, ActivityScope, MemorySink
from sync_pipelines.providers.contract import IntegrationConfig
from sync_pipelines.store.integrations import Integration
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.integration_config import open_provider, register_integration
from sync_pipelines.sync.inventory import sync_devices

THINGS = 120


@pytest.fixture(scope="module")
def running_peer() -> Iterator[AwsIotPeer]:
    with AwsIotPeer() as peer:
        yield peer


@pytest.fixture
def peer(running_peer: AwsIotPeer) -> AwsIotPeer:
    """The module's peer with a fresh inventory of 120 things and no faults."""
    running_peer.clear_faults()
    running_peer.seed(THINGS)
    return running_peer


@pytest.fixture
def recorder() -> ActivityRecorder:
    return ActivityRecorder(
        MemorySink(), ActivityScope(organization_id="org-p", integration_id="aws-p"), flush_every=1
    )


def _provider(
    peer: AwsIotPeer,
    recorder: ActivityRecorder,
    *,
    timeout_s: float = 10.0,
    secrets=None,
    **settings,
):
    config = IntegrationConfig(
        integration_id="aws-p",
        organization_id="org-p",
        provider="aws_iot",
        settings={**peer.integration_settings(), "page_size": 25, **settings},
        secrets=secrets
        or {"access_key_id": peer.access_key_id, "secret_access_key": peer.secret_access_key},
    )
    return open_provider(config, recorder, timeout_s=timeout_s)


def _http_rows(recorder: ActivityRecorder) -> list:
    return [r for r in recorder.sink.rows.values() if r.activity_type == "http_request"]


# -- inventory ----------------------------------------------------------------------------


def test_pages_of_25_cover_the_whole_inventory(peer, recorder):
    with _provider(peer, recorder) as provider:
        pages = list(provider.list_devices())
    ids = [d.external_id for p in pages for d in p.devices]
    assert len(ids) == THINGS and set(ids) == peer.inventory()
    assert [len(p.devices) for p in pages] == [25, 25, 25, 25, 20]
    assert (
        all(p.cursor_after and p.cursor_after["next_token"] for p in pages[:-1])
        and pages[-1].cursor_after is None
    )
    assert all(p.request_id for p in pages)


def test_a_thing_becomes_a_record_with_its_type_attributes_and_tags(peer, recorder):
    with _provider(peer, recorder, page_size=1) as provider:
        device = next(iter(provider.list_devices())).devices[0]
    assert device.external_id == device.name == "thing-00000"
    assert device.tags == ("fleet-0", "seeded")
    assert device.attributes["thingTypeName"] == "sensor" and device.attributes["version"] == 1
    assert device.attributes["attributes"]["revision"] == "1"
    assert device.attributes["thingArn"].endswith(":thing/thing-00000")


def test_resuming_from_a_cursor_continues_after_that_page(peer, recorder):
    with _provider(peer, recorder) as provider:
        pages = list(provider.list_devices())
        resumed = list(provider.list_devices(since=pages[1].cursor_after))
    assert [d.external_id for p in resumed for d in p.devices] == [
        d.external_id for p in pages[2:] for d in p.devices
    ]


def test_a_rejected_resume_token_restarts_the_scan_instead_of_failing(peer, recorder):
    with _provider(peer, recorder) as provider:
        pages = list(provider.list_devices(since={"next_token": "dGFtcGVyZWQ="}))
    assert {d.external_id for p in pages for d in p.devices} == peer.inventory()
    assert [r.status_code for r in _http_rows(recorder)][:2] == [400, 200]


def test_a_malformed_thing_is_rejected_and_the_page_kept(peer, recorder):
    peer.create_thing("bad-thing")
    peer._backends()[0].describe_thing("bad-thing").attributes = {
        "owner": None
    }  # AWS values are strings
    with _provider(peer, recorder) as provider:
        pages = list(provider.list_devices())
    rejected = [r for p in pages for r in p.rejected]
    assert [r.external_id for r in rejected] == ["bad-thing"] and "attributes" in rejected[
        0
    ].error_message
    assert sum(len(p.devices) for p in pages) == THINGS


def test_filters_reach_list_things(peer, recorder):
    with _provider(peer, recorder, attribute_name="site", attribute_value="site-3") as provider:
        ids = [d.external_id for p in provider.list_devices() for d in p.devices]
    assert ids and all(int(i.split("-")[1]) % 7 == 3 for i in ids)


# -- state --------------------------------------------------------------------------------


def test_states_carry_reported_desired_and_the_shadow_version(peer, recorder):
    ids = sorted(peer.inventory())[:10]
    with _provider(peer, recorder) as provider:
        states, failures = provider.get_states(ids)
    assert failures == [] and [s.external_id for s in states] == ids
    for state in states:
        assert state.reported == peer.reported_state(state.external_id)
        assert state.desired == peer.desired_state(state.external_id) == {"interval_s": 60}
        assert state.version == "1" and state.request_id


def test_a_thing_without_a_shadow_has_an_empty_state_not_a_failure(peer, recorder):
    peer.create_thing("no-shadow")
    with _provider(peer, recorder) as provider:
        (state,), failures = provider.get_states(["no-shadow"])
    assert failures == [] and (state.reported, state.desired, state.version) == (None, None, None)


def test_an_unknown_thing_is_a_failure_naming_it(peer, recorder):
    with _provider(peer, recorder) as provider:
        states, (failure,) = provider.get_states(["thing-00001", "ghost-thing"])
    assert [s.external_id for s in states] == ["thing-00001"]
    assert failure.external_id == "ghost-thing" and "ghost-thing" in failure.error_message


def test_a_named_shadow_is_read_instead_of_the_classic_one(peer, recorder):
    peer.write_shadow(
        "thing-00002", {"state": {"reported": {"fw": "1.2"}, "desired": {"fw": "1.3"}}}, "firmware"
    )
    with _provider(peer, recorder, shadow_name="firmware") as provider:
        (state,), _ = provider.get_states(["thing-00002"])
    assert (state.reported, state.desired, state.version) == ({"fw": "1.2"}, {"fw": "1.3"}, "1")


@pytest.mark.parametrize("named_shadows", ["*", ["config", "firmware", "not-there"]])
def test_named_shadows_are_read_per_name(peer, recorder, named_shadows):
    for name in ("firmware", "config"):
        peer.write_shadow("thing-00003", {"state": {"reported": {"name": name}}}, name)
    with _provider(peer, recorder, named_shadows=named_shadows) as provider:
        (state,), _ = provider.get_states(["thing-00003"])
    assert state.reported == {"config": {"name": "config"}, "firmware": {"name": "firmware"}}
    assert state.version == "config:1,firmware:1"


def test_an_invalid_shadow_document_is_a_validation_failure_naming_the_thing(peer, recorder):
    peer.proxy.add_faults(FaultSpec("malformed_json", path="/things/thing-00004/shadow$"))
    with _provider(peer, recorder) as provider:
        states, (failure,) = provider.get_states(["thing-00004", "thing-00005"])
    assert [s.external_id for s in states] == ["thing-00005"]
    assert failure.error_type == "validation" and "thing-00004" in failure.error_message


# -- desired state ------------------------------------------------------------------------


def test_push_desired_merges_the_patch_and_returns_the_new_version(peer, recorder):
    with _provider(peer, recorder) as provider:
        result = provider.push_desired("thing-00006", {"mode": "eco"}, expected_version="1")
    assert result.version == "2" and result.desired == {"interval_s": 60, "mode": "eco"}
    assert peer.desired_state("thing-00006") == {"interval_s": 60, "mode": "eco"}


def test_push_desired_on_a_stale_version_is_a_conflict_naming_the_thing(peer, recorder):
    peer.write_desired_remotely("thing-00007", {"interval_s": 5})  # version 1 -> 2
    with (
        _provider(peer, recorder) as provider,
        pytest.raises(ConflictError, match="thing-00007") as err,
    ):
        provider.push_desired("thing-00007", {"mode": "eco"}, expected_version="1")
    assert err.value.status_code == 409
    assert peer.desired_state("thing-00007") == {"interval_s": 5}


# -- failures -----------------------------------------------------------------------------


def test_control_plane_throttling_is_rate_limited_with_the_retry_after(peer, recorder):
    peer.inject_fault("rate_limit")
    with (
        _provider(peer, recorder, retry_max_attempts=1) as provider,
        pytest.raises(RateLimitedError) as err,
    ):
        list(provider.list_devices())
    assert err.value.status_code == 400 and err.value.retry_after_s == peer.rate_limit_retry_after_s
    assert "aws-p" in str(err.value)


def test_data_plane_throttling_is_a_rate_limited_state_failure(peer, recorder):
    peer.inject_fault("rate_limit")
    with _provider(peer, recorder, retry_max_attempts=1) as provider:
        provider._data_client()  # the data client exists: the throttle hits the shadow read
        _, (failure,) = provider.get_states(["thing-00001"])
    assert failure.error_type == "rate_limited" and "429" in failure.error_message


def test_a_503_is_transient(peer, recorder):
    peer.inject_fault("server_error")
    with (
        _provider(peer, recorder, retry_max_attempts=1) as provider,
        pytest.raises(TransientError, match="ServiceUnavailable"),
    ):
        list(provider.list_devices())


def test_a_timeout_is_transient(peer, recorder):
    peer.proxy.add_faults(FaultSpec("timeout", times=1, latency_ms=5000))
    with (
        _provider(peer, recorder, timeout_s=0.3, retry_max_attempts=1) as provider,
        pytest.raises(TransientError, match="ReadTimeout"),
    ):
        list(provider.list_devices())


def test_a_page_that_is_not_json_is_a_malformed_response(peer, recorder):
    peer.inject_fault("malformed")
    with (
        _provider(peer, recorder) as provider,
        pytest.raises(MalformedResponseError, match="things"),
    ):
        list(provider.list_devices())


def test_wrong_credentials_fail_for_real(peer, recorder):
    wrong = {"access_key_id": "AKIAWRONGWRONGWRONG0", "secret_access_key": "nope"}
    with _provider(peer, recorder, secrets=wrong) as provider:
        result = provider.test_connection()
        with pytest.raises(AuthError, match="UnrecognizedClientException"):
            list(provider.list_devices())
    assert not result.ok and "auth" in result.reason


def test_connection_test_finds_the_data_endpoint_when_not_configured(peer, recorder):
    with _provider(peer, recorder, data_endpoint_url=None) as provider:
        result = provider.test_connection()
    assert result.ok and result.details["data_endpoint"].endswith(
        f"-ats.iot.{peer.region}.amazonaws.com"
    )


def test_every_attempt_is_a_row_with_a_request_id_and_no_secret(peer, recorder):
    with _provider(peer, recorder) as provider:
        pages = list(provider.list_devices())
        provider.get_states(["thing-00001", "thing-00002"])
    rows = _http_rows(recorder)
    assert len(rows) == len(pages) + 2
    assert all(r.direction == "outgoing" and r.status == "success" and r.attempt == 1 for r in rows)
    assert all(r.request_headers["X-Request-ID"] == r.request_id for r in rows)
    assert {r.request_id for r in rows} >= {p.request_id for p in pages}
    assert all(r.metadata["aws_request_id"] for r in rows)
    text = repr(rows)
    assert (
        peer.access_key_id not in text
        and peer.secret_access_key not in text
        and "Signature=" not in text
    )
    assert all(r.request_headers["Authorization"] == "[REDACTED]" for r in rows)


# -- through the engine, on SQLite and PostgreSQL --------------------------------------


def test_inventory_and_state_sync_through_the_engine(store, peer, open_session, monkeypatch):
    refs, env = peer.secret_env("TEST_AWS")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    register_integration(
        store,
        Integration(
            integration_id="aws-e",
            organization_id="org-e",
            provider="aws_iot",
            name="AWS IoT test",
            settings={**peer.integration_settings(), "page_size": 50},
            secret_refs=refs,
        ),
    )
    with open_session(store, "aws-e") as session:
        devices = sync_devices(session)
        states = sync_device_states(session, batch_size=50)
        peer.change_devices(["thing-00010", "thing-00011"])
        again = sync_devices(session)
    assert (devices.status, devices.counts.created, devices.counts.pages) == ("success", THINGS, 3)
    assert (states.status, states.counts.created, states.counts.failed) == ("success", THINGS, 0)
    assert (again.counts.updated, again.counts.unchanged) == (2, THINGS - 2)
