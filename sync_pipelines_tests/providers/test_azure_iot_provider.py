"""The Azure IoT Hub provider against the emulator over real sockets: wire format → records,
the error taxonomy, SAS handling, and a full sync through the engine on SQLite and Postgres."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sync_pipelines_peers.launchers.azure_iot import AzureIotPeer

from sync_pipelines.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    MalformedResponseError,
    RateLimitedError,
    TransientError,
)
from sync_pipelines.observability.activity import ActivityRecorder, ActivityScope, MemorySink
from sync_pipelines.providers.contract import IntegrationConfig
from sync_pipelines.store.database import Store
from sync_pipelines.store.devices import count_device_states, count_devices
from sync_pipelines.store.integrations import Integration
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.integration_config import open_provider, register_integration
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines_tests.device_state_rows import state_rows

DEVICE_COUNT = 230
CONNECTION_ENV = "TEST_AZURE_IOT_CONNECTION_STRING"
TABLES = (
    "integrations",
    "devices",
    "device_states",
    "integration_activity_log",
    "integration_sync_log",
    "integration_sync_state",
)


@pytest.fixture(scope="module")
def hub() -> Iterator[AzureIotPeer]:
    peer = AzureIotPeer(device_count=DEVICE_COUNT)
    peer.start()
    yield peer
    peer.stop()


@pytest.fixture
def peer(hub: AzureIotPeer) -> Iterator[AzureIotPeer]:
    hub.emulator.reset()
    yield hub
    hub.emulator.reset()


@pytest.fixture
def recorder() -> ActivityRecorder:
    return ActivityRecorder(
        MemorySink(), ActivityScope(organization_id="org-az", integration_id="az-p"), flush_every=1
    )


#: the clients' retries with short backoffs (a server's Retry-After is still honoured)
FAST_RETRIES = {"retry_base_backoff_s": 0.01, "retry_max_backoff_s": 0.05, "retry_jitter_s": 0.01}


@pytest.fixture
def provider_for(peer, recorder) -> Iterator[Callable[..., object]]:
    opened = []

    def open_(connection_string: str | None = None, **settings):
        config = IntegrationConfig(
            integration_id="az-p",
            organization_id="org-az",
            provider="azure_iot",
            settings={**peer.integration_settings(), **FAST_RETRIES, **settings},
            secrets={"connection_string": connection_string or peer.connection_string()},
        )
        provider = open_provider(config, recorder, timeout_s=5.0)
        opened.append(provider)
        return provider

    yield open_
    for provider in opened:
        provider.close()


@pytest.fixture
def register_azure(monkeypatch) -> Callable[..., Integration]:
    """Register an Azure IoT integration on the peer; its connection string goes in the environment."""

    def register(
        store: Store, peer: AzureIotPeer, integration_id: str = "azure-a", **settings
    ) -> Integration:
        monkeypatch.setenv(CONNECTION_ENV, peer.connection_string())
        integration = Integration(
            integration_id=integration_id,
            organization_id="org-a",
            provider="azure_iot",
            name="Azure test",
            settings={**peer.integration_settings(), **settings},
            secret_refs={"connection_string": CONNECTION_ENV},
        )
        register_integration(store, integration)
        return integration

    return register


def _http_rows(recorder: ActivityRecorder) -> list:
    return [r for r in recorder.sink.rows.values() if r.activity_type == "http_request"]


# -- inventory ----------------------------------------------------------------------------------


def test_paging_with_continuation_tokens_covers_the_inventory_in_order(
    peer, provider_for, recorder
):
    pages = list(provider_for(page_size=25).list_devices())
    assert [d.external_id for p in pages for d in p.devices] == list(peer.emulator.device_ids())
    assert len(pages) == 10 and [p.page_number for p in pages] == list(range(10))
    assert (
        all(p.cursor_after and p.cursor_after["continuation"] for p in pages[:-1])
        and pages[-1].cursor_after is None
    )
    sent = [r.request_headers for r in _http_rows(recorder)]
    assert all(h["x-ms-max-item-count"] == "25" for h in sent)
    assert "x-ms-continuation" not in sent[0] and all("x-ms-continuation" in h for h in sent[1:])


def test_page_size_is_capped_at_the_hubs_100(peer, provider_for):
    pages = list(provider_for(page_size=500).list_devices())
    assert [len(p.devices) for p in pages] == [100, 100, 30]


def test_a_scan_resumes_from_a_cursor_where_it_stopped(peer, provider_for):
    scan = provider_for(page_size=50).list_devices()
    first, second = next(scan), next(scan)
    scan.close()
    resumed = list(provider_for(page_size=50).list_devices(since=second.cursor_after))
    ids = [d.external_id for p in (first, second, *resumed) for d in p.devices]
    assert ids == list(peer.emulator.device_ids())


def test_a_rejected_continuation_restarts_the_scan_with_a_warning(peer, provider_for, capfd):
    pages = list(provider_for(page_size=100).list_devices(since={"continuation": "forged.token"}))
    assert [d.external_id for p in pages for d in p.devices] == list(peer.emulator.device_ids())
    assert "continuation_rejected_scan_restarted" in capfd.readouterr().out


def test_the_query_setting_narrows_the_inventory(peer, provider_for):
    query = "SELECT * FROM devices WHERE status = 'disabled'"
    devices = [d for p in provider_for(query=query).list_devices() for d in p.devices]
    disabled = [
        i for i in peer.emulator.device_ids() if peer.emulator.get_twin(i)["status"] == "disabled"
    ]
    assert (
        disabled
        and [d.external_id for d in devices] == disabled
        and all(d.enabled is False for d in devices)
    )


def test_twins_become_device_records(peer, provider_for):
    devices = {d.external_id: d for p in provider_for().list_devices() for d in p.devices}
    twins = {i: peer.emulator.get_twin(i) for i in devices}
    never = [i for i, t in twins.items() if t["lastActivityTime"] == "0001-01-01T00:00:00Z"]
    assert never and all(devices[i].last_seen_at is None for i in never)
    seen = next(i for i, t in twins.items() if i not in never)
    assert devices[seen].last_seen_at.isoformat().startswith(twins[seen]["lastActivityTime"][:19])
    tagged = next(i for i, t in twins.items() if t.get("tags"))
    assert devices[tagged].attributes["tags"] == twins[tagged]["tags"]
    assert f"location.region={twins[tagged]['tags']['location']['region']}" in devices[tagged].tags
    assert {d.status for d in devices.values()} == {"connected", "disconnected"}
    changed = next(i for i, t in twins.items() if t["statusUpdateTime"] != "0001-01-01T00:00:00Z")
    assert devices[changed].provider_updated_at is not None
    assert all(d.name == d.external_id for d in devices.values())


def test_a_poison_twin_is_rejected_and_the_page_kept(peer, provider_for):
    peer.emulator.add_faults(
        {"kind": "poison_record", "device_index": 5},
        {"kind": "poison_record", "device_index": 9, "shape": "missing_id"},
    )
    pages = list(provider_for().list_devices())
    rejected = [r for p in pages for r in p.rejected]
    assert sum(len(p.devices) for p in pages) == DEVICE_COUNT - 2
    assert [r.external_id for r in rejected] == [peer.emulator.twins.generator.device_id(5), None]
    assert all(r.error_type == "validation" for r in rejected)


# -- state and export ---------------------------------------------------------------------------


def test_states_are_the_twin_documents_without_bookkeeping_and_the_etag(peer, provider_for):
    ids = list(peer.emulator.device_ids())[:20]
    states, failures = provider_for(state_concurrency=4).get_states(ids)
    assert failures == [] and [s.external_id for s in states] == ids
    for state in states:
        twin = peer.emulator.get_twin(state.external_id)
        assert state.version == twin["etag"] and state.request_id
        assert state.reported == peer.reported_state(state.external_id)
        assert state.desired == peer.desired_state(state.external_id)
        assert not any(k.startswith("$") for k in {**state.reported, **state.desired})


def test_an_unknown_device_is_a_state_failure_naming_it(peer, provider_for):
    ids = [next(peer.emulator.device_ids()), "meter-999999"]
    states, (failure,) = provider_for().get_states(ids)
    assert [s.external_id for s in states] == ids[:1]
    assert failure.external_id == "meter-999999" and "meter-999999" in failure.error_message
    assert "DeviceNotFound (404001)" in failure.error_message


def test_a_twin_that_is_not_json_is_a_validation_failure(peer, provider_for):
    ids = list(peer.emulator.device_ids())[:3]
    peer.emulator.add_faults({"kind": "truncated_json", "path": f"/twins/{ids[1]}$"})
    states, (failure,) = provider_for().get_states(ids)
    assert len(states) == 2 and failure.external_id == ids[1] and failure.error_type == "validation"


def test_push_desired_is_conditional_on_the_etag(peer, provider_for, recorder):
    provider = provider_for()
    device_id = list(peer.emulator.device_ids())[7]
    (before,), _ = provider.get_states([device_id])
    pushed = provider.push_desired(
        device_id, {"telemetryConfig": {"mode": "eco"}}, expected_version=before.version
    )
    assert pushed.version == peer.emulator.get_twin(device_id)["etag"] != before.version
    assert (
        pushed.desired == peer.desired_state(device_id)
        and pushed.desired["telemetryConfig"]["mode"] == "eco"
    )
    assert _http_rows(recorder)[-1].request_headers["if-match"] == f'"{before.version}"'
    with pytest.raises(ConflictError) as conflict:
        provider.push_desired(
            device_id, {"telemetryConfig": {"mode": "max"}}, expected_version=before.version
        )
    assert device_id in str(conflict.value) and "PreconditionFailed (412001)" in str(conflict.value)
    assert peer.desired_state(device_id)["telemetryConfig"]["mode"] == "eco"
    unconditional = provider.push_desired(device_id, {"fromSync": True}, expected_version=None)
    assert (
        _http_rows(recorder)[-1].request_headers["if-match"] == "*"
        and unconditional.version != pushed.version
    )


# -- errors -------------------------------------------------------------------------------------


def test_throttling_is_a_rate_limited_error_with_the_hubs_retry_after(peer, provider_for):
    peer.emulator.add_faults({"kind": "rate_limit", "retry_after_s": 7, "times": 1})
    with pytest.raises(RateLimitedError) as err:  # a wait beyond the retry budget gives up
        list(provider_for(retry_max_attempts=1, retry_max_total_s=5).list_devices())
    assert err.value.retry_after_s == 7.0 and "ThrottlingException (429001)" in str(err.value)


def test_a_per_operation_throttle_is_a_rate_limited_error_too(peer, provider_for):
    peer.emulator.throttle.set("query", 0.05, 1)
    provider = provider_for(page_size=100, retry_max_attempts=1, retry_max_total_s=0.5)
    with pytest.raises(RateLimitedError) as err:
        list(provider.list_devices())
    assert err.value.retry_after_s >= 1 and err.value.status_code == 429


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_transient(peer, provider_for, status):
    peer.emulator.add_faults({"kind": "server_error", "status": status, "times": 1})
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        list(provider_for(retry_max_attempts=1).list_devices())


def test_a_dropped_connection_is_transient_and_names_the_integration(peer, provider_for):
    peer.emulator.add_faults({"kind": "drop_connection", "times": 1})
    with pytest.raises(TransientError, match="integration 'az-p': cannot reach the hub"):
        list(provider_for(retry_max_attempts=1).list_devices())


def test_device_ids_are_quoted_into_one_path_segment(peer, provider_for):
    odd = "a/b c#1"
    states, (failure,) = provider_for().get_states([odd])
    assert states == []
    # the whole id reached the twin route, and the hub answered that it has no such device
    (request,) = [r for r in peer.emulator.requests() if "/twins/" in r.path]
    assert request.path.endswith(f"/twins/{odd}")
    assert failure.error_type == "permanent" and f"Device {odd} not registered" in (
        failure.error_message
    )


def test_a_page_that_is_not_json_is_a_malformed_response(peer, provider_for):
    peer.emulator.add_faults({"kind": "malformed_json", "times": 1})
    with pytest.raises(MalformedResponseError, match="not valid JSON") as err:
        list(provider_for().list_devices())
    assert err.value.category == "validation"


def test_an_expired_sas_token_is_an_auth_error_that_says_so(peer, provider_for):
    peer.emulator.clock_skew_s = (
        7200  # the hub's clock is two hours ahead: our 1 h token arrives expired
    )
    with pytest.raises(AuthError) as err:
        list(provider_for().list_devices())
    message = str(err.value)
    assert (
        "rejected the SAS token" in message
        and "expired" in message
        and "IotHubUnauthorizedAccess (401002)" in message
    )


def test_legacy_error_bodies_are_understood():
    peer = AzureIotPeer(device_count=3, legacy_error_bodies=True)
    peer.start()
    try:
        recorder = ActivityRecorder(
            MemorySink(), ActivityScope(organization_id="o", integration_id="legacy")
        )
        config = IntegrationConfig(
            "legacy",
            "o",
            "azure_iot",
            peer.integration_settings(),
            {"connection_string": peer.connection_string()},
        )
        with open_provider(config, recorder) as provider:
            _, (failure,) = provider.get_states(["meter-999999"])
    finally:
        peer.stop()
    assert "DeviceNotFound: Device meter-999999 not registered" in failure.error_message


def test_a_malformed_connection_string_is_a_config_error_without_the_key(peer, provider_for):
    key = peer.emulator.config.policies["iothubowner"]
    with pytest.raises(ConfigError, match="az-p.*missing SharedAccessKeyName") as err:
        provider_for(f"HostName={peer.emulator.config.host_name};SharedAccessKey={key}")
    assert key not in str(err.value)


# -- connection test ----------------------------------------------------------------------------


def test_connection_test_succeeds_with_one_item_query(peer, provider_for, recorder):
    result = provider_for().test_connection()
    assert result.ok and result.details["hub"] == peer.emulator.config.host_name
    (row,) = _http_rows(recorder)
    assert row.request_headers["x-ms-max-item-count"] == "1"


def test_connection_test_reports_a_wrong_key_as_auth_without_raising(peer, provider_for):
    wrong = peer.wrong_secret_env("X")["X_AZURE_IOT_CONNECTION_STRING"]
    result = provider_for(wrong).test_connection()
    assert (
        not result.ok
        and result.reason.startswith("authentication failed")
        and result.details["category"] == "auth"
    )


def test_connection_test_reports_an_unreachable_hub(peer, provider_for):
    result = provider_for(base_url="http://127.0.0.1:9").test_connection()
    assert not result.ok and "cannot reach the hub" in result.reason


# -- through the engine -------------------------------------------------------------------------


def test_a_full_sync_stores_devices_and_states(store, peer, register_azure, open_session):
    integration = register_azure(store, peer, page_size=60)
    with open_session(store, integration.integration_id) as session:
        devices = sync_devices(session)
        states = sync_device_states(session, batch_size=100)
        peer.emulator.patch_desired(next(peer.emulator.device_ids()), {"changedRemotely": 1})
        again = sync_device_states(session, batch_size=100)
    assert (devices.status, devices.counts.created, devices.counts.pages) == (
        "success",
        DEVICE_COUNT,
        4,
    )
    assert (states.status, states.counts.created) == ("success", DEVICE_COUNT)
    assert (again.counts.updated, again.counts.unchanged) == (1, DEVICE_COUNT - 1)
    with store.connect() as conn:
        assert count_devices(conn, "org-a", integration.integration_id) == DEVICE_COUNT
        assert count_device_states(conn, "org-a", integration.integration_id) == DEVICE_COUNT
        version = conn.execute(
            sa.text("SELECT version FROM device_states WHERE external_id = :e"),
            {"e": next(peer.emulator.device_ids())},
        ).scalar_one()
    assert version == peer.emulator.get_twin(next(peer.emulator.device_ids()))["etag"]


def test_no_sas_token_or_key_reaches_a_row_or_a_log_line(
    sqlite_store, peer, register_azure, open_session, capfd
):
    store = sqlite_store
    integration = register_azure(store, peer)
    with open_session(store, integration.integration_id) as session:
        sync_devices(session)
        sync_device_states(session)
    peer.emulator.clock_skew_s = 7200
    with pytest.raises(AuthError), open_session(store, integration.integration_id) as session:
        sync_devices(session)
    out, err = capfd.readouterr()
    with store.connect() as conn:
        # repr of plain tuples: a Row's own repr shortens long values
        rows = "\n".join(
            repr(tuple(r))
            for t in TABLES
            for r in conn.execute(sa.text(f"SELECT * FROM {t}")).all()
        )
    tokens = {
        v.decode()
        for entry in peer.emulator.requests()
        for k, v in entry.raw_headers
        if k == b"authorization"
    }
    signatures = {t.split("&sig=")[1].split("&")[0] for t in tokens}
    assert len(tokens) >= 1 and len(signatures) == len(tokens)
    secrets = {
        peer.emulator.config.policies["iothubowner"],
        peer.connection_string(),
        *tokens,
        *signatures,
    }
    for where, text in {"stdout": out, "stderr": err, "store rows": rows}.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {where}"
    assert "rejected the SAS token" in rows and '"authorization":"[REDACTED]"' in rows
    assert "sync_failed" in out and json.dumps("rejected the SAS token")[1:-1] in out


# -- states from the twin query (state_source: list) ------------------------------------------


def _twin_reads(peer) -> int:
    return sum(1 for r in peer.emulator.requests() if r.method == "GET" and "/twins/" in r.path)


def test_listed_states_equal_twin_reads_without_one_call_per_device(
    store, peer, register_azure, open_session
):
    listed = register_azure(store, peer, "azure-list", page_size=100)
    single = register_azure(store, peer, "azure-single", page_size=100, state_source="device")
    for integration in (listed, single):
        with open_session(store, integration.integration_id) as session:
            sync_devices(session)
    # the inventory's twin query stored the states already: a state sync of another run loads
    # them all again through the query
    with store.transaction() as conn:
        conn.execute(sa.text("DELETE FROM device_states WHERE integration_id = 'azure-list'"))
    peer.emulator.request_log.clear()
    with open_session(store, listed.integration_id) as session:
        result = sync_device_states(session)
    assert (result.status, result.counts.created) == ("success", DEVICE_COUNT)
    assert _twin_reads(peer) == 0
    with open_session(store, single.integration_id) as session:
        sync_device_states(session)
    assert state_rows(store, "azure-list") == state_rows(store, "azure-single")
    with open_session(store, listed.integration_id) as session:
        again = sync_device_states(session)
    assert (again.counts.created, again.counts.updated, again.counts.unchanged) == (
        0,
        0,
        DEVICE_COUNT,
    )


def test_a_twin_the_query_no_longer_returns_is_read_alone_and_dead_lettered(
    store, peer, register_azure, open_session
):
    integration = register_azure(store, peer, retry_max_attempts=1)
    with open_session(store, integration.integration_id) as session:
        sync_devices(session)
    with open_session(store, integration.integration_id) as session:
        gone = sorted(peer.emulator.device_ids())[3]
        peer.emulator.delete_device(gone)
        peer.emulator.request_log.clear()
        result = sync_device_states(session)
    # the others came with the inventory's query already, unchanged since
    assert (result.status, result.counts.unchanged, result.counts.failed) == (
        "partial",
        DEVICE_COUNT - 1,
        1,
    )
    assert _twin_reads(peer) == 1
    with store.connect() as conn:
        letters = conn.execute(
            sa.text("SELECT external_id FROM dead_letters WHERE integration_id = :i"),
            {"i": integration.integration_id},
        ).scalars()
        assert list(letters) == [gone]


def test_a_query_item_without_properties_is_left_to_a_twin_read():
    """A query that projects `properties` away (the emulator answers only `SELECT *`): the
    listing leaves such a twin out, and the engine reads it alone."""
    from sync_pipelines.providers.azure_iot import _listed_state

    assert _listed_state({"deviceId": "d-1", "etag": "AAA"}, "req") is None
    assert _listed_state({"properties": {"reported": {}}}, "req") is None
    state = _listed_state(
        {
            "deviceId": "d-1",
            "etag": "AAA",
            "properties": {
                "desired": {"interval": 60, "$version": 3},
                "reported": {"temp": 21, "$metadata": {}},
            },
        },
        "req",
    )
    assert (state.external_id, state.desired, state.reported, state.version) == (
        "d-1",
        {"interval": 60},
        {"temp": 21},
        "AAA",
    )


def test_a_full_sync_reads_the_twin_query_once(store, peer, register_azure, open_session):
    """Inventory and states in one run: the query's pages give both, and the state sync of the
    run records the states without reading a twin (the same rows as one read per device)."""
    once = register_azure(store, peer, "azure-once", page_size=100)
    each = register_azure(store, peer, "azure-each", page_size=100, state_source="device")
    peer.emulator.request_log.clear()
    with open_session(store, once.integration_id) as session:
        sync_devices(session)
        states = sync_device_states(session)
    queries = [r for r in peer.emulator.requests() if r.path == "/devices/query"]
    assert len(queries) == -(-DEVICE_COUNT // 100) and _twin_reads(peer) == 0
    assert (states.status, states.counts.fetched, states.counts.created) == (
        "success",
        DEVICE_COUNT,
        DEVICE_COUNT,
    )
    with open_session(store, each.integration_id) as session:
        sync_devices(session)
        sync_device_states(session)
    assert _twin_reads(peer) == DEVICE_COUNT
    assert state_rows(store, "azure-once") == state_rows(store, "azure-each")


def test_a_query_page_is_retried_with_its_body_and_one_request_id(peer, provider_for, recorder):
    """The twin query is a read sent as POST: retried like a GET, the same body and
    X-Request-ID on every attempt, one row per attempt (over the lean client)."""
    peer.emulator.add_faults({"kind": "server_error", "status": 503, "times": 2})
    pages = list(provider_for(page_size=100).list_devices())
    assert sum(len(p.devices) for p in pages) == DEVICE_COUNT
    rows = [r for r in _http_rows(recorder) if "/devices/query" in r.endpoint]
    first = [r for r in rows if r.request_id == rows[0].request_id]
    assert [(r.attempt, r.status, r.status_code) for r in first] == [
        (1, "retrying", 503),
        (2, "retrying", 503),
        (3, "success", 200),
    ]
    queries = [r for r in peer.emulator.requests() if r.path.endswith("/devices/query")]
    assert len(queries) == len(pages) + 2
    assert {r.headers.get("x-request-id") for r in queries[:3]} == {rows[0].request_id}
