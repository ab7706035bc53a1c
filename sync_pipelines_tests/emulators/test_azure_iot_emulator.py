"""The Azure IoT Hub emulator, specified from the client's side: real sockets, real SAS tokens."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from sync_pipelines_peers.emulators.azure_iot import (
    AzureIotEmulator,
    AzureIotEmulatorConfig,
    policy_key,
)
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.providers.azure_sas import generate_sas_token

HUB = "test-hub.azure-devices.net"
DEVICE_COUNT = 120
API = {"api-version": "2021-04-12"}
TWIN_KEYS = [
    "deviceId",
    "moduleId",
    "etag",
    "deviceEtag",
    "version",
    "status",
    "statusReason",
    "statusUpdateTime",
    "connectionState",
    "lastActivityTime",
    "cloudToDeviceMessageCount",
    "authenticationType",
    "x509Thumbprint",
    "modelId",
    "capabilities",
    "deviceScope",
    "parentScopes",
]
NEVER = "0001-01-01T00:00:00Z"


def token(
    policy: str = "iothubowner", key: str | None = None, ttl_s: int = 600, host: str = HUB
) -> str:
    return generate_sas_token(host, policy, key or policy_key(7, policy), int(time.time()) + ttl_s)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[AzureIotEmulator, str]]:
    emulator = AzureIotEmulator(
        AzureIotEmulatorConfig(host_name=HUB, device_count=DEVICE_COUNT, seed=7)
    )
    with EmulatorServer(emulator.app) as server:
        yield emulator, server.url


@pytest.fixture
def emulator(served) -> Iterator[AzureIotEmulator]:
    emulator, _ = served
    emulator.reset()
    yield emulator
    emulator.reset()


@pytest.fixture
def client(served, emulator) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=served[1], headers={"Authorization": token()}, params=API, timeout=5.0
    ) as client:
        yield client


@pytest.fixture
def control(served, emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{served[1]}/_emulator", timeout=5.0) as control:
        yield control


def query(
    client: httpx.Client,
    text: str = "SELECT * FROM devices",
    max_items: int | None = None,
    continuation: str | None = None,
) -> httpx.Response:
    headers = {}
    if max_items is not None:
        headers["x-ms-max-item-count"] = str(max_items)
    if continuation is not None:
        headers["x-ms-continuation"] = continuation
    return client.post("/devices/query", json={"query": text}, headers=headers)


def all_pages(
    client: httpx.Client, text: str = "SELECT * FROM devices", max_items: int = 100
) -> list[list[dict]]:
    pages, continuation = [], None
    while True:
        response = query(client, text, max_items, continuation)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        continuation = response.headers.get("x-ms-continuation")
        if continuation is None:
            return pages


def hub_error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"Message", "ExceptionMessage"}
    inner = json.loads(body["Message"])  # Message is a JSON *string*
    assert body["ExceptionMessage"] == f"Tracking ID:{inner['trackingId']}"
    return inner


# -- auth and api-version -----------------------------------------------------------------------


def test_missing_api_version_is_a_bad_request(served, emulator):
    response = httpx.get(f"{served[1]}/twins/x", headers={"Authorization": token()})
    assert response.status_code == 400
    assert (
        hub_error(response)["errorCode"] == 400001
        and "api-version" in hub_error(response)["message"]
    )
    assert response.headers["iothub-errorcode"] == "InvalidProtocolVersion"


def test_a_request_without_a_token_is_unauthorized_with_an_iothub_error(served, emulator):
    response = httpx.post(
        f"{served[1]}/devices/query", params=API, json={"query": "SELECT * FROM devices"}
    )
    assert (
        response.status_code == 401
        and response.headers["iothub-errorcode"] == "IotHubUnauthorizedAccess"
    )
    assert hub_error(response)["errorCode"] == 401002


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda: token(key=policy_key(8, "iothubowner")), "signature does not match"),
        (
            lambda: token(policy="nosuchpolicy", key=policy_key(7, "iothubowner")),
            "not a shared access policy",
        ),
        (lambda: token(ttl_s=-5), "expired"),
        (lambda: token(host="other-hub.azure-devices.net"), "not this hub"),
    ],
)
def test_bad_tokens_are_rejected_with_the_reason(served, emulator, make_token, reason):
    response = httpx.get(
        f"{served[1]}/twins/{next(emulator.device_ids())}",
        params=API,
        headers={"Authorization": make_token()},
    )
    assert response.status_code == 401 and reason in hub_error(response)["message"]


def test_a_hub_clock_running_ahead_expires_a_fresh_token(client, control):
    assert query(client).status_code == 200
    control.post("/clock", json={"skew_s": 3600})
    response = query(client)
    assert response.status_code == 401 and "expired" in hub_error(response)["message"]


def test_every_default_policy_is_accepted(served, emulator):
    for policy in ("iothubowner", "service", "registryRead", "registryReadWrite"):
        response = httpx.get(
            f"{served[1]}/twins/{next(emulator.device_ids())}",
            params=API,
            headers={"Authorization": token(policy)},
        )
        assert response.status_code == 200, policy


# -- twin and device shapes ---------------------------------------------------------------------


def test_twins_have_the_hub_shape_with_sentinels_and_nulls_kept(client):
    twins = [t for page in all_pages(client) for t in page]
    for twin in twins:
        assert list(twin)[: len(TWIN_KEYS)] == TWIN_KEYS
        assert set(twin) - set(TWIN_KEYS) <= {"tags", "properties"}
        assert twin["moduleId"] is None and twin["x509Thumbprint"].keys() == {
            "primaryThumbprint",
            "secondaryThumbprint",
        }
        desired, reported = twin["properties"]["desired"], twin["properties"]["reported"]
        assert (
            isinstance(desired["$version"], int) and "$lastUpdatedVersion" in desired["$metadata"]
        )
        assert (
            isinstance(reported["$version"], int)
            and "$lastUpdatedVersion" not in reported["$metadata"]
        )
    never = [t for t in twins if t["lastActivityTime"] == NEVER]
    assert never and all(
        t["properties"]["reported"].keys() == {"$metadata", "$version"} for t in never
    )
    assert any(t["statusUpdateTime"] == NEVER for t in twins) and any(
        t["statusUpdateTime"] != NEVER for t in twins
    )
    assert {t["status"] for t in twins} == {"enabled", "disabled"}
    assert {t["connectionState"] for t in twins} == {"Connected", "Disconnected"}
    assert any("tags" in t for t in twins) and any("tags" not in t for t in twins)
    assert any(t["statusReason"] is None for t in twins) and any(
        t["deviceScope"] is None for t in twins
    )


def test_get_twin_returns_the_twin_with_a_quoted_etag_header(client, emulator):
    device_id = next(emulator.device_ids())
    response = client.get(f"/twins/{device_id}")
    assert response.status_code == 200
    assert response.headers["etag"] == f'"{response.json()["etag"]}"'
    assert response.json() == emulator.get_twin(device_id)


def test_device_identity_names_status_updated_time_unlike_the_twin(client, emulator):
    device_id = next(emulator.device_ids())
    device = client.get(f"/devices/{device_id}").json()
    twin = emulator.get_twin(device_id)
    assert (
        device["statusUpdatedTime"] == twin["statusUpdateTime"] and "statusUpdateTime" not in device
    )
    assert {"generationId", "authentication", "connectionStateUpdatedTime"} <= set(device)
    assert device["etag"] == twin["deviceEtag"] and "modelId" not in device


def test_unknown_device_is_device_not_found(client):
    response = client.get("/twins/meter-999999")
    assert response.status_code == 404 and response.headers["iothub-errorcode"] == "DeviceNotFound"
    assert hub_error(response)["errorCode"] == 404001


def test_legacy_error_bodies_carry_the_code_name_in_the_message():
    emulator = AzureIotEmulator(
        AzureIotEmulatorConfig(host_name=HUB, device_count=1, legacy_error_bodies=True)
    )
    with EmulatorServer(emulator.app) as server:
        response = httpx.get(
            f"{server.url}/twins/nope-000001", params=API, headers={"Authorization": token()}
        )
    assert response.status_code == 404
    assert response.json()["Message"].startswith("ErrorCode:DeviceNotFound;")


def test_the_same_seed_makes_the_same_hub_and_a_big_hub_costs_nothing_until_written():
    big = AzureIotEmulator(AzureIotEmulatorConfig(device_count=1_000_000, seed=3))
    again = AzureIotEmulator(AzureIotEmulatorConfig(device_count=1_000_000, seed=3))
    last = big.twins.generator.device_id(999_999)
    assert big.get_twin(last) == again.get_twin(last) and big.twins.written_count == 0
    assert big.twins.index_of(last) == 999_999 and big.twins.index_of("meter-1000000") is None


# -- query paging -------------------------------------------------------------------------------


def test_paging_with_continuation_tokens_yields_every_twin_once_in_order(client, emulator):
    pages = all_pages(client, max_items=7)
    assert [len(p) for p in pages] == [7] * 17 + [1]
    assert [t["deviceId"] for p in pages for t in p] == list(emulator.device_ids())


def test_query_pages_carry_the_item_type_and_no_continuation_on_the_last(client):
    first = query(client, max_items=100)
    assert first.headers["x-ms-item-type"] == "twin" and first.headers["x-ms-continuation"]
    last = query(client, max_items=100, continuation=first.headers["x-ms-continuation"])
    assert len(last.json()) == DEVICE_COUNT - 100 and "x-ms-continuation" not in last.headers


def test_max_item_count_is_capped_at_100_and_defaults_to_it(client):
    assert len(query(client, max_items=500).json()) == 100
    assert len(query(client).json()) == 100


def test_a_tampered_continuation_token_is_a_bad_request(client):
    continuation = query(client, max_items=5).headers["x-ms-continuation"]
    payload, _, mac = continuation.partition(".")
    forged = f"{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{mac}"
    response = query(client, max_items=5, continuation=forged)
    assert response.status_code == 400 and "continuation" in hub_error(response)["message"].lower()


def test_a_continuation_token_is_bound_to_its_query(client):
    continuation = query(client, max_items=5).headers["x-ms-continuation"]
    response = query(client, "SELECT * FROM devices WHERE status = 'enabled'", 5, continuation)
    assert response.status_code == 400 and "different query" in hub_error(response)["message"]


def test_continuation_tokens_expire_when_configured():
    emulator = AzureIotEmulator(
        AzureIotEmulatorConfig(host_name=HUB, device_count=10, continuation_ttl_s=60)
    )
    with (
        EmulatorServer(emulator.app) as server,
        httpx.Client(base_url=server.url, params=API, headers={"Authorization": token()}) as client,
    ):
        continuation = query(client, max_items=2).headers["x-ms-continuation"]
        emulator.clock_skew_s = 120  # the token is now two minutes old; SAS tokens live longer
        response = query(client, max_items=2, continuation=continuation)
    assert response.status_code == 400 and "expired" in hub_error(response)["message"]


# -- WHERE --------------------------------------------------------------------------------------


def _ids(client, where: str) -> set[str]:
    return {
        t["deviceId"] for p in all_pages(client, f"SELECT * FROM devices WHERE {where}") for t in p
    }


def _twins(emulator) -> list[dict]:
    return [emulator.get_twin(d) for d in emulator.device_ids()]


def test_where_filters_on_device_id_status_and_connection_state(client, emulator):
    twins = _twins(emulator)
    first = twins[0]["deviceId"]
    assert _ids(client, f"deviceId = '{first}'") == {first}
    assert (
        _ids(client, "status = 'disabled'")
        == {t["deviceId"] for t in twins if t["status"] == "disabled"}
        != set()
    )
    assert _ids(client, "connectionState != 'Connected'") == {
        t["deviceId"] for t in twins if t["connectionState"] != "Connected"
    }


def test_where_filters_on_tags_and_reported_properties_with_and_or(client, emulator):
    twins = _twins(emulator)
    region = {
        t["deviceId"]
        for t in twins
        if t.get("tags", {}).get("location", {}).get("region") == "eu-west"
    }
    assert region and _ids(client, "tags.location.region = 'eu-west'") == region
    wifi = {
        t["deviceId"]
        for t in twins
        if t["properties"]["reported"].get("connectivity", {}).get("type") == "wifi"
    }
    assert (
        _ids(
            client,
            "properties.reported.connectivity.type = 'wifi' AND tags.location.region = 'eu-west'",
        )
        == wifi & region
    )
    assert (
        _ids(
            client,
            "tags.location.region = 'eu-west' OR properties.reported.connectivity.type = 'wifi'",
        )
        == wifi | region
    )
    freq = {
        t["deviceId"]
        for t in twins
        if t["properties"]["desired"].get("telemetryConfig", {}).get("sendFrequencyInSecs") == 300
    }
    assert (
        freq
        and _ids(client, "properties.desired.telemetryConfig.sendFrequencyInSecs = 300") == freq
    )


def test_filtered_queries_page_too(client, emulator):
    pages = all_pages(client, "SELECT * FROM devices WHERE status = 'enabled'", max_items=10)
    enabled = [t["deviceId"] for t in _twins(emulator) if t["status"] == "enabled"]
    assert [t["deviceId"] for p in pages for t in p] == enabled and all(
        len(p) == 10 for p in pages[:-1]
    )


@pytest.mark.parametrize(
    "text",
    [
        "SELECT deviceId FROM devices",
        "SELECT * FROM devices WHERE",
        'SELECT * FROM devices WHERE status = "enabled"',
        "DELETE FROM devices",
    ],
)
def test_a_bad_query_is_a_bad_request_with_an_error_body(client, text):
    response = query(client, text)
    assert response.status_code == 400 and response.headers["iothub-errorcode"] == "ArgumentInvalid"
    assert hub_error(response)["message"].startswith("Query parsing failed")


# -- twin updates -------------------------------------------------------------------------------


def test_patch_with_the_current_etag_merges_and_bumps_versions(client, emulator):
    device_id = next(
        d
        for d in emulator.device_ids()
        if emulator.get_twin(d)["properties"]["desired"].get("ledOn") is not None
    )
    before = client.get(f"/twins/{device_id}").json()
    response = client.patch(
        f"/twins/{device_id}",
        headers={"If-Match": f'"{before["etag"]}"'},
        json={"properties": {"desired": {"telemetryConfig": {"mode": "eco"}, "ledOn": None}}},
    )
    assert response.status_code == 200, response.text
    after = response.json()
    desired = after["properties"]["desired"]
    assert desired["telemetryConfig"] == {
        **before["properties"]["desired"]["telemetryConfig"],
        "mode": "eco",
    }
    assert "ledOn" not in desired and "ledOn" not in desired["$metadata"]
    assert desired["$version"] == before["properties"]["desired"]["$version"] + 1
    assert desired["$metadata"]["$lastUpdatedVersion"] == desired["$version"]
    assert (
        desired["$metadata"]["telemetryConfig"]["mode"]["$lastUpdated"]
        == desired["$metadata"]["$lastUpdated"]
    )
    assert (
        desired["$metadata"]["$lastUpdated"]
        > before["properties"]["desired"]["$metadata"]["$lastUpdated"]
    )
    assert after["etag"] != before["etag"] and response.headers["etag"] == f'"{after["etag"]}"'
    assert after["version"] == before["version"] + 1
    assert after["properties"]["reported"] == before["properties"]["reported"]


def test_patch_with_a_stale_etag_is_precondition_failed(client, emulator):
    device_id = next(emulator.device_ids())
    stale = client.get(f"/twins/{device_id}").json()["etag"]
    emulator.patch_desired(device_id, {"someoneElse": True})
    response = client.patch(
        f"/twins/{device_id}",
        headers={"If-Match": f'"{stale}"'},
        json={"properties": {"desired": {"mine": 1}}},
    )
    assert (
        response.status_code == 412 and response.headers["iothub-errorcode"] == "PreconditionFailed"
    )
    assert hub_error(response)["errorCode"] == 412001
    assert "mine" not in emulator.get_twin(device_id)["properties"]["desired"]


def test_patch_with_a_wildcard_or_no_if_match_is_unconditional(client, emulator):
    device_id = next(emulator.device_ids())
    assert (
        client.patch(
            f"/twins/{device_id}",
            headers={"If-Match": "*"},
            json={"properties": {"desired": {"a": 1}}},
        ).status_code
        == 200
    )
    assert client.patch(f"/twins/{device_id}", json={"tags": {"site": "x"}}).status_code == 200
    twin = emulator.get_twin(device_id)
    assert twin["properties"]["desired"]["a"] == 1 and twin["tags"]["site"] == "x"


def test_the_service_cannot_write_reported_properties(client, emulator):
    response = client.patch(
        f"/twins/{next(emulator.device_ids())}", json={"properties": {"reported": {"x": 1}}}
    )
    assert response.status_code == 400


def test_put_replaces_desired_and_tags(client, emulator):
    device_id = next(emulator.device_ids())
    response = client.put(
        f"/twins/{device_id}", json={"tags": {"only": "this"}, "properties": {"desired": {"k": 1}}}
    )
    desired = response.json()["properties"]["desired"]
    assert response.json()["tags"] == {"only": "this"}
    assert {k: v for k, v in desired.items() if not k.startswith("$")} == {"k": 1}


def test_reported_writes_by_the_device_keep_metadata_without_versions(control, emulator):
    device_id = next(emulator.device_ids())
    before = emulator.get_twin(device_id)
    twin = control.patch(f"/devices/{device_id}/reported", json={"battery": {"level": 7}}).json()
    reported = twin["properties"]["reported"]
    assert (
        reported["battery"]["level"] == 7
        and reported["$version"] == before["properties"]["reported"]["$version"] + 1
    )
    assert "$lastUpdatedVersion" not in reported["$metadata"]["battery"]["level"]
    assert twin["etag"] != before["etag"]


# -- faults, throttling, control ----------------------------------------------------------------


def test_rate_limit_fault_is_a_429_with_retry_after_and_throttling_code(client, emulator):
    emulator.add_faults({"kind": "rate_limit", "retry_after_s": 4, "times": 1})
    response = query(client)
    assert response.status_code == 429 and response.headers["retry-after"] == "4"
    assert (
        response.headers["iothub-errorcode"] == "ThrottlingException"
        and hub_error(response)["errorCode"] == 429001
    )
    assert query(client).status_code == 200


@pytest.mark.parametrize(
    ("kind", "status", "code"), [("server_error", 503, 503001), ("auth_failure", 401, 401002)]
)
def test_error_faults_answer_with_iothub_error_bodies(client, emulator, kind, status, code):
    emulator.add_faults({"kind": kind, "times": 1})
    response = client.get(f"/twins/{next(emulator.device_ids())}")
    assert response.status_code == status and hub_error(response)["errorCode"] == code
    assert response.headers["iothub-errorcode"]


@pytest.mark.parametrize("kind", ["malformed_json", "truncated_json"])
def test_broken_json_faults_send_bodies_that_do_not_parse(client, emulator, kind):
    emulator.add_faults({"kind": kind, "times": 1})
    response = query(client)
    with pytest.raises(ValueError):
        json.loads(response.content)


def test_poison_record_fault_breaks_one_twin_of_a_page(client, emulator):
    emulator.add_faults({"kind": "poison_record", "device_index": 3, "times": 1})
    twins = query(client, max_items=10).json()
    assert twins[3]["tags"] == "oops" and twins[3]["lastActivityTime"] == "not-a-time"
    assert all(isinstance(t.get("tags", {}), dict) for i, t in enumerate(twins) if i != 3)


def test_per_operation_token_buckets_throttle_queries_apart_from_twin_reads(
    client, control, emulator
):
    control.post("/throttle", json={"operation": "query", "rate_per_s": 0.1, "burst": 1})
    device_id = next(emulator.device_ids())
    assert query(client).status_code == 200
    throttled = query(client)
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
    assert hub_error(throttled)["errorCode"] == 429001
    assert all(client.get(f"/twins/{device_id}").status_code == 200 for _ in range(3))


def test_control_routes_add_devices_and_write_desired_as_someone_else(client, control, emulator):
    added = control.post("/devices", json={"count": 2}).json()
    assert added["device_count"] == DEVICE_COUNT + 2
    fresh = client.get(f"/twins/{added['ids'][0]}").json()
    assert fresh["lastActivityTime"] == NEVER and fresh["connectionState"] == "Disconnected"
    before = fresh["etag"]
    control.patch(f"/devices/{added['ids'][0]}/desired", json={"fromConsole": 1})
    after = client.get(f"/twins/{added['ids'][0]}").json()
    assert after["properties"]["desired"]["fromConsole"] == 1 and after["etag"] != before
    control.patch(f"/devices/{added['ids'][1]}", json={"status": "disabled", "tags": {"site": "b"}})
    twin = client.get(f"/twins/{added['ids'][1]}").json()
    assert (
        twin["status"] == "disabled"
        and twin["statusUpdateTime"] != NEVER
        and twin["tags"] == {"site": "b"}
    )
    control.delete(f"/devices/{added['ids'][1]}")
    assert client.get(f"/twins/{added['ids'][1]}").status_code == 404


def test_request_log_keeps_requests_with_the_token_redacted(client, control, emulator):
    query(client, max_items=3)
    (entry,) = control.get("/requests").json()["requests"]
    assert entry["path"] == "/devices/query" and entry["status"] == 200
    assert entry["headers"]["authorization"] == "SharedAccessSignature [REDACTED]"
    assert entry["headers"]["x-ms-max-item-count"] == "3"
