"""The Golioth emulator, specified from the client's side: real sockets, a real httpx client."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import httpx
import pytest
from sync_pipelines_peers.emulators.golioth import GoliothEmulator, GoliothEmulatorConfig
from sync_pipelines_peers.emulators.request_log import RecordedRequest, RequestLog
from sync_pipelines_peers.emulators.server import EmulatorServer

API_KEY = "test-api-key"
ACCESS_TOKEN = "test-access-token"
PROJECT = "demo-project"
DEVICE_COUNT = 250
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HEX24 = re.compile(r"^[0-9a-f]{24}$")


@contextmanager
def serving(config: GoliothEmulatorConfig) -> Iterator[tuple[GoliothEmulator, str]]:
    emulator = GoliothEmulator(config)
    with EmulatorServer(emulator.app) as server:
        yield emulator, server.url


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[tuple[GoliothEmulator, str]]:
    config = GoliothEmulatorConfig(
        api_key=API_KEY, access_token=ACCESS_TOKEN, device_count=DEVICE_COUNT, seed=7
    )
    with serving(config) as served:
        yield served


@pytest.fixture
def emulator(shared_emulator: tuple[GoliothEmulator, str]) -> Iterator[GoliothEmulator]:
    emulator, _ = shared_emulator
    emulator.reset()
    yield emulator
    emulator.reset()


@pytest.fixture
def base_url(shared_emulator: tuple[GoliothEmulator, str]) -> str:
    return shared_emulator[1]


@pytest.fixture
def client(emulator: GoliothEmulator, base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{base_url}/v1/projects/{PROJECT}",
        headers={"x-api-key": API_KEY},
        timeout=5.0,
    ) as client:
        yield client


@pytest.fixture
def control(emulator: GoliothEmulator, base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{base_url}/_emulator", timeout=5.0) as control:
        yield control


def list_page(client: httpx.Client, **params: object) -> dict:
    response = client.get("/devices", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def all_device_ids(client: httpx.Client, per_page: int = 100) -> list[str]:
    ids: list[str] = []
    page = 0
    while batch := list_page(client, page=page, perPage=per_page)["list"]:
        ids.extend(device["id"] for device in batch)
        page += 1
    return ids


def first_device(emulator: GoliothEmulator, predicate) -> dict:
    return next(
        device
        for device in (emulator.get_device(i) for i in emulator.device_ids())
        if predicate(device)
    )


# -- auth ---------------------------------------------------------------------------------------


def test_request_without_credentials_is_unauthenticated(base_url: str) -> None:
    response = httpx.get(f"{base_url}/v1/projects/{PROJECT}/devices")
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == 16
    assert body["details"] == []
    assert "x-api-key" in body["message"]


def test_request_with_wrong_api_key_is_unauthenticated(base_url: str) -> None:
    response = httpx.get(
        f"{base_url}/v1/projects/{PROJECT}/devices", headers={"x-api-key": "wrong"}
    )
    assert response.status_code == 401
    assert response.json()["code"] == 16


@pytest.mark.parametrize("scheme", ["bearer", "Bearer", "BEARER"])
def test_bearer_access_token_is_accepted_whatever_the_scheme_case(
    base_url: str, scheme: str
) -> None:
    response = httpx.get(
        f"{base_url}/v1/projects/{PROJECT}/devices",
        headers={"Authorization": f"{scheme} {ACCESS_TOKEN}"},
    )
    assert response.status_code == 200


def test_wrong_bearer_token_is_unauthenticated(base_url: str) -> None:
    response = httpx.get(
        f"{base_url}/v1/projects", headers={"Authorization": "bearer not-the-token"}
    )
    assert response.status_code == 401


def test_unknown_project_is_not_found(base_url: str) -> None:
    response = httpx.get(f"{base_url}/v1/projects/other/devices", headers={"x-api-key": API_KEY})
    assert response.status_code == 404
    assert response.json()["code"] == 5


def test_unknown_device_is_not_found(client: httpx.Client) -> None:
    response = client.get("/devices/0123456789abcdef01234567")
    assert response.status_code == 404
    assert response.json()["code"] == 5


def test_unknown_route_is_not_found_in_rpc_status(client: httpx.Client) -> None:
    response = client.get("/no-such-thing")
    assert response.status_code == 404
    assert response.json()["code"] == 5


# -- projects -----------------------------------------------------------------------------------


def test_projects_list_holds_the_one_project(base_url: str) -> None:
    body = httpx.get(f"{base_url}/v1/projects", headers={"x-api-key": API_KEY}).json()
    assert body["page"] == 0 and body["perPage"] == 100 and body["total"] == 1
    assert [p["id"] for p in body["list"]] == [PROJECT]


def test_project_get_returns_the_project_in_a_data_envelope(base_url: str) -> None:
    response = httpx.get(f"{base_url}/v1/projects/{PROJECT}", headers={"x-api-key": API_KEY})
    project = response.json()["data"]
    assert project["id"] == PROJECT
    assert set(project) == {"id", "name", "organizationId", "createdAt", "updatedAt"}
    assert RFC3339_MS.match(project["createdAt"])


# -- paging -------------------------------------------------------------------------------------


def test_pages_are_zero_based_and_hold_100_devices_by_default(client: httpx.Client) -> None:
    body = list_page(client)
    assert (body["page"], body["perPage"], body["total"]) == (0, 100, DEVICE_COUNT)
    assert len(body["list"]) == 100
    assert body["list"][0]["name"] == "device-000000"
    assert list_page(client, page=1)["list"][0]["name"] == "device-000100"


@pytest.mark.parametrize("per_page", ["0", "101", "-1", "abc", "1.5"])
def test_per_page_outside_1_to_100_is_an_invalid_argument(
    client: httpx.Client, per_page: str
) -> None:
    response = client.get("/devices", params={"perPage": per_page})
    assert response.status_code == 400
    assert response.json()["code"] == 3


def test_non_integer_page_is_an_invalid_argument(client: httpx.Client) -> None:
    response = client.get("/devices", params={"page": "first"})
    assert response.status_code == 400
    assert response.json()["code"] == 3


def test_page_past_the_end_is_empty_with_the_true_total(client: httpx.Client) -> None:
    body = list_page(client, page=50, perPage=100)
    assert body["list"] == []
    assert body["total"] == DEVICE_COUNT


def test_last_partial_page_holds_the_remainder(client: httpx.Client) -> None:
    body = list_page(client, page=2, perPage=100)
    assert len(body["list"]) == DEVICE_COUNT - 200


def test_paging_through_every_page_yields_each_device_exactly_once(
    client: httpx.Client, emulator: GoliothEmulator
) -> None:
    ids = all_device_ids(client, per_page=37)
    assert len(ids) == len(set(ids)) == DEVICE_COUNT
    assert ids == list(emulator.device_ids())


def test_counters_are_json_strings_when_int64_as_string_is_set() -> None:
    config = GoliothEmulatorConfig(api_key=API_KEY, device_count=6, int64_as_string=True)
    with serving(config) as (_, url):
        body = httpx.get(
            f"{url}/v1/projects/{PROJECT}/devices",
            params={"perPage": 4, "page": 1},
            headers={"x-api-key": API_KEY},
        ).json()
    assert (body["page"], body["perPage"], body["total"]) == ("1", "4", "6")
    assert len(body["list"]) == 2


# -- device shape -------------------------------------------------------------------------------


def test_devices_have_golioth_field_names_and_millisecond_utc_timestamps(
    client: httpx.Client,
) -> None:
    for device in list_page(client)["list"]:
        assert HEX24.match(device["id"])
        assert device["name"].startswith("device-")
        assert isinstance(device["hardwareIds"], list) and 1 <= len(device["hardwareIds"]) <= 2
        assert all(HEX24.match(tag) for tag in device.get("tagIds", []))
        assert "tags" not in device
        assert RFC3339_MS.match(device["createdAt"]) and RFC3339_MS.match(device["updatedAt"])
        assert device["createdAt"] <= device["updatedAt"]
        assert device["metadata"]["lastSettingsStatus"]["status"] in {
            "in-sync",
            "out-of-sync",
            "no-settings",
        }


def test_devices_are_listed_in_creation_order(client: httpx.Client) -> None:
    created = [d["createdAt"] for d in list_page(client)["list"]]
    assert created == sorted(created)


def test_the_inventory_has_the_variety_a_sync_must_handle(client: httpx.Client) -> None:
    devices = list_page(client)["list"] + list_page(client, page=1)["list"]
    assert any("tagIds" in d for d in devices) and any("tagIds" not in d for d in devices)
    assert any("blueprintId" in d for d in devices) and any("blueprintId" not in d for d in devices)
    assert any("cohortId" in d for d in devices) and any("certificateId" in d for d in devices)
    assert any(len(d["hardwareIds"]) == 2 for d in devices)
    assert {d["status"] for d in devices} == {"-", "online", "offline"}
    assert any("enabled" not in d for d in devices)


def test_zero_values_are_omitted_not_sent_empty(client: httpx.Client) -> None:
    for device in list_page(client)["list"]:
        assert device.get("enabled", True) is True, "false is a zero value: omitted"
        for key in ("tagIds", "blueprintId", "cohortId", "certificateId", "lastReport"):
            assert device.get(key, "absent") not in ("", [], None)


def test_get_device_returns_the_listed_device_in_a_data_envelope(client: httpx.Client) -> None:
    listed = list_page(client, perPage=5)["list"][3]
    response = client.get(f"/devices/{listed['id']}")
    assert response.status_code == 200
    assert response.json() == {"data": listed}


def test_state_path_fills_data_with_that_state_subtree(
    client: httpx.Client, emulator: GoliothEmulator
) -> None:
    device_id = next(emulator.device_ids())
    listed = list_page(client, perPage=1, statePath="desired")["list"][0]
    assert listed["data"] == emulator.read_state(device_id, "desired")
    single = client.get(f"/devices/{device_id}", params={"statePath": "desired/interval_s"})
    assert single.json()["data"]["data"] in (60, 300, 900)


# -- filters ------------------------------------------------------------------------------------


def test_device_name_filter_is_a_full_match(client: httpx.Client) -> None:
    assert [d["name"] for d in list_page(client, deviceName="device-000042")["list"]] == [
        "device-000042"
    ]
    assert list_page(client, deviceName="device-00004")["total"] == 0


def test_hardware_id_filter_is_a_full_match(
    client: httpx.Client, emulator: GoliothEmulator
) -> None:
    device = first_device(emulator, lambda d: len(d["hardwareIds"]) == 2)
    body = list_page(client, hardwareId=device["hardwareIds"][1])
    assert [d["id"] for d in body["list"]] == [device["id"]]
    assert list_page(client, hardwareId=device["hardwareIds"][1][:-1])["total"] == 0


def test_tags_filter_requires_every_tag(client: httpx.Client, emulator: GoliothEmulator) -> None:
    device = first_device(emulator, lambda d: len(d.get("tagIds", [])) >= 2)
    tags = device["tagIds"][:2]
    body = list_page(client, tags=tags)
    assert body["total"] > 0
    assert device["id"] in [d["id"] for d in body["list"]] or body["total"] > 100
    assert all(set(tags) <= set(d["tagIds"]) for d in body["list"])
    assert body["total"] < list_page(client, tags=tags[:1])["total"]


def test_enabled_filter_selects_enabled_or_disabled_devices(client: httpx.Client) -> None:
    enabled = list_page(client, enabled="true")
    disabled = list_page(client, enabled="false")
    assert enabled["total"] + disabled["total"] == DEVICE_COUNT
    assert disabled["total"] > 0
    assert all(d.get("enabled") is True for d in enabled["list"])
    assert all("enabled" not in d for d in disabled["list"])


def test_term_filter_matches_part_of_a_name_or_hardware_id(client: httpx.Client) -> None:
    assert {d["name"] for d in list_page(client, term="DEVICE-00012")["list"]} == {
        f"device-00012{i}" for i in range(10)
    }
    assert [d["name"] for d in list_page(client, term="00:00:00:2a")["list"]] == ["device-000042"]


def test_blueprint_and_cohort_filters_match_exactly(
    client: httpx.Client, emulator: GoliothEmulator
) -> None:
    device = first_device(emulator, lambda d: "blueprintId" in d and "cohortId" in d)
    body = list_page(client, blueprintId=device["blueprintId"], cohortId=device["cohortId"])
    assert 0 < body["total"] < DEVICE_COUNT
    assert all(
        (d["blueprintId"], d["cohortId"]) == (device["blueprintId"], device["cohortId"])
        for d in body["list"]
    )


def test_filtered_results_page_with_their_own_total(client: httpx.Client) -> None:
    everything = list_page(client, enabled="true")
    page_0 = list_page(client, enabled="true", perPage=10, page=0)
    page_1 = list_page(client, enabled="true", perPage=10, page=1)
    assert page_0["total"] == page_1["total"] == everything["total"]
    assert [d["id"] for d in page_0["list"] + page_1["list"]] == [
        d["id"] for d in everything["list"][:20]
    ]


# -- deterministic, lazy generation -------------------------------------------------------------


def test_the_same_seed_generates_the_same_devices() -> None:
    first = GoliothEmulator(GoliothEmulatorConfig(device_count=50, seed=11))
    second = GoliothEmulator(GoliothEmulatorConfig(device_count=50, seed=11))
    assert list(first.device_ids()) == list(second.device_ids())
    some_id = next(first.device_ids())
    assert first.get_device(some_id) == second.get_device(some_id)
    assert first.read_state(some_id) == second.read_state(some_id)


def test_a_different_seed_generates_different_ids() -> None:
    first = set(GoliothEmulator(GoliothEmulatorConfig(device_count=50, seed=11)).device_ids())
    second = set(GoliothEmulator(GoliothEmulatorConfig(device_count=50, seed=12)).device_ids())
    assert first.isdisjoint(second)


def test_a_million_device_project_serves_any_page_without_materialising_devices() -> None:
    config = GoliothEmulatorConfig(api_key=API_KEY, device_count=1_000_000)
    with (
        serving(config) as (emulator, url),
        httpx.Client(
            base_url=f"{url}/v1/projects/{PROJECT}", headers={"x-api-key": API_KEY}
        ) as client,
    ):
        body = list_page(client, page=9999)
        assert body["total"] == 1_000_000
        assert [d["name"] for d in body["list"]][::99] == ["device-999900", "device-999999"]
        last_id = body["list"][-1]["id"]
        assert client.get(f"/devices/{last_id}").json()["data"]["name"] == "device-999999"

        emulator.delete_device(body["list"][0]["id"])
        after_delete = list_page(client, page=9999)
        assert after_delete["total"] == 999_999
        names = [d["name"] for d in after_delete["list"]]
        assert (len(names), names[0], names[-1]) == (99, "device-999901", "device-999999")
        stats = emulator.stats()
        assert (stats.patched_count, stats.deleted_count, stats.state_written_count) == (0, 1, 0)


# -- LightDB State ------------------------------------------------------------------------------


@pytest.fixture
def device_id(emulator: GoliothEmulator) -> str:
    return first_device(emulator, lambda d: d["status"] != "-")["id"]


def test_state_read_returns_the_whole_desired_and_reported_tree(
    client: httpx.Client, device_id: str
) -> None:
    data = client.get(f"/devices/{device_id}/data").json()["data"]
    assert set(data) == {"desired", "reported"}
    assert set(data["reported"]["env"]["temp"]) == {"value", "unit"}
    assert "interval_s" in data["desired"]


def test_state_read_of_a_path_returns_that_subtree_or_scalar(
    client: httpx.Client, device_id: str
) -> None:
    tree = client.get(f"/devices/{device_id}/data").json()["data"]
    assert client.get(f"/devices/{device_id}/data/reported/env").json() == {
        "data": tree["reported"]["env"]
    }
    assert client.get(f"/devices/{device_id}/data/reported/env/temp/unit").json() == {"data": "C"}


def test_state_read_of_a_missing_path_is_null(client: httpx.Client, device_id: str) -> None:
    response = client.get(f"/devices/{device_id}/data/reported/no/such/path")
    assert response.status_code == 200
    assert response.json() == {"data": None}


def test_writing_a_leaf_keeps_its_siblings(client: httpx.Client, device_id: str) -> None:
    assert (
        client.put(f"/devices/{device_id}/data/reported/env/temp/value", json=99.5).status_code
        == 200
    )
    temp = client.get(f"/devices/{device_id}/data/reported/env/temp").json()["data"]
    assert temp == {"value": 99.5, "unit": "C"}


@pytest.mark.parametrize("method", ["PUT", "POST", "PATCH"])
def test_writing_an_object_deep_merges_into_the_tree(
    client: httpx.Client, device_id: str, method: str
) -> None:
    before = client.get(f"/devices/{device_id}/data/reported").json()["data"]
    response = client.request(
        method,
        f"/devices/{device_id}/data/reported",
        json={"env": {"temp": {"value": 1.0}}, "new": {"x": 1}},
    )
    assert response.status_code == 200
    after = client.get(f"/devices/{device_id}/data/reported").json()["data"]
    assert after["env"]["temp"] == {"value": 1.0, "unit": "C"}
    assert after["env"]["humidity"] == before["env"]["humidity"]
    assert after["firmware"] == before["firmware"]
    assert after["new"] == {"x": 1}


def test_delete_removes_a_state_path(client: httpx.Client, device_id: str) -> None:
    assert client.delete(f"/devices/{device_id}/data/reported/battery").status_code == 200
    assert client.get(f"/devices/{device_id}/data/reported/battery").json() == {"data": None}
    assert "env" in client.get(f"/devices/{device_id}/data/reported").json()["data"]


def test_state_writes_store_only_the_devices_written(
    client: httpx.Client, emulator: GoliothEmulator, device_id: str
) -> None:
    client.put(f"/devices/{device_id}/data/desired/interval_s", json=5)
    assert emulator.stats().state_written_count == 1
    assert emulator.read_state(device_id, "desired/interval_s") == 5


def test_state_write_with_a_body_that_is_not_json_is_an_invalid_argument(
    client: httpx.Client, device_id: str
) -> None:
    response = client.put(f"/devices/{device_id}/data/desired", content=b"{not json")
    assert response.status_code == 400
    assert response.json()["code"] == 3


# -- faults, as the client sees them ------------------------------------------------------------


def add_fault(control: httpx.Client, **spec: object) -> None:
    response = control.post("/faults", json=spec)
    assert response.status_code == 201, response.text


def test_rate_limit_fault_answers_429_with_retry_after(
    client: httpx.Client, control: httpx.Client
) -> None:
    add_fault(control, kind="rate_limit", retry_after_s=7, times=1)
    response = client.get("/devices")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["code"] == 8
    assert response.json()["message"].startswith("rate limit exceeded")
    assert client.get("/devices").status_code == 200


@pytest.mark.parametrize(("status", "code"), [(500, 13), (503, 14)])
def test_server_error_fault_answers_with_an_rpc_status_body(
    client: httpx.Client, control: httpx.Client, status: int, code: int
) -> None:
    add_fault(control, kind="server_error", status=status)
    response = client.get("/devices")
    assert response.status_code == status
    assert response.json() == {"code": code, "message": response.json()["message"], "details": []}


def test_malformed_json_fault_sends_a_json_content_type_and_a_body_that_is_not_json(
    client: httpx.Client, control: httpx.Client
) -> None:
    add_fault(control, kind="malformed_json")
    response = client.get("/devices")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_truncated_json_fault_cuts_the_real_body_in_half(
    client: httpx.Client, control: httpx.Client
) -> None:
    whole = client.get("/devices", params={"perPage": 10}).content
    add_fault(control, kind="truncated_json")
    truncated = client.get("/devices", params={"perPage": 10})
    assert truncated.status_code == 200
    assert truncated.content == whole[: len(whole) // 2]
    with pytest.raises(json.JSONDecodeError):
        truncated.json()


def test_auth_failure_fault_rejects_a_valid_key(
    client: httpx.Client, control: httpx.Client
) -> None:
    add_fault(control, kind="auth_failure", times=1)
    response = client.get("/devices")
    assert response.status_code == 401
    assert response.json()["code"] == 16
    assert client.get("/devices").status_code == 200


def test_timeout_fault_outlasts_a_short_client_timeout(
    client: httpx.Client, control: httpx.Client
) -> None:
    add_fault(control, kind="timeout", times=1)
    with pytest.raises(httpx.ReadTimeout):
        client.get("/devices", timeout=0.3)
    assert client.get("/devices").status_code == 200


def test_a_hanging_request_does_not_hold_up_other_requests(
    client: httpx.Client, control: httpx.Client, emulator: GoliothEmulator, base_url: str
) -> None:
    add_fault(control, kind="timeout", path="/data$", times=1)
    device_id = next(emulator.device_ids())
    outcome: list[BaseException] = []

    def hang() -> None:
        try:
            httpx.get(
                f"{base_url}/v1/projects/{PROJECT}/devices/{device_id}/data",
                headers={"x-api-key": API_KEY},
                timeout=1.5,
            )
        except httpx.TimeoutException as exc:
            outcome.append(exc)

    hanging = threading.Thread(target=hang)
    hanging.start()
    while emulator.faults.applied_counts().get("timeout", 0) == 0:
        time.sleep(0.01)
    assert client.get("/devices").status_code == 200
    hanging.join()
    assert len(outcome) == 1


def test_drop_connection_fault_breaks_off_the_response_mid_body(
    client: httpx.Client, control: httpx.Client
) -> None:
    add_fault(control, kind="drop_connection", times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/devices")
    assert client.get("/devices").status_code == 200


def test_poison_record_fault_breaks_one_device_in_a_valid_page(
    client: httpx.Client, control: httpx.Client
) -> None:
    add_fault(control, kind="poison_record", device_index=3)
    devices = list_page(client, perPage=10)["list"]
    poisoned = devices[3]
    assert poisoned["createdAt"] == "not-a-time"
    assert poisoned["hardwareIds"] == "oops"
    assert HEX24.match(poisoned["id"])
    for healthy in devices[:3] + devices[4:]:
        assert isinstance(healthy["hardwareIds"], list)
        datetime.fromisoformat(healthy["createdAt"])


def test_poison_record_fault_can_drop_the_id_of_a_device_chosen_by_id(
    client: httpx.Client, control: httpx.Client
) -> None:
    target = list_page(client, perPage=5)["list"][2]["id"]
    add_fault(control, kind="poison_record", device_id=target, shape="missing_id")
    devices = list_page(client, perPage=5)["list"]
    assert "id" not in devices[2]
    assert all("id" in d for i, d in enumerate(devices) if i != 2)


def test_latency_fault_delays_the_response_then_answers_normally(
    client: httpx.Client, control: httpx.Client
) -> None:
    add_fault(control, kind="latency", latency_ms=250, times=1)
    started = time.monotonic()
    response = client.get("/devices", params={"perPage": 1})
    assert time.monotonic() - started >= 0.25
    assert response.status_code == 200


def test_fault_with_times_expires_after_that_many_requests(
    client: httpx.Client, control: httpx.Client
) -> None:
    add_fault(control, kind="server_error", times=2)
    statuses = [client.get("/devices", params={"perPage": 1}).status_code for _ in range(4)]
    assert statuses == [503, 503, 200, 200]
    assert control.get("/faults").json() == {"faults": []}


def test_fault_with_after_lets_the_first_requests_through(
    client: httpx.Client, control: httpx.Client
) -> None:
    add_fault(control, kind="rate_limit", after=2, times=1)
    statuses = [client.get("/devices", params={"perPage": 1}).status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 200]


def test_fault_scoped_by_path_and_method_leaves_other_requests_alone(
    client: httpx.Client, control: httpx.Client, device_id: str
) -> None:
    add_fault(control, kind="server_error", path=r"/data(/|$)", method="PUT")
    assert client.get(f"/devices/{device_id}/data").status_code == 200
    assert client.get("/devices").status_code == 200
    assert client.put(f"/devices/{device_id}/data/desired/led", json=True).status_code == 503


def test_control_routes_are_never_faulted(control: httpx.Client) -> None:
    add_fault(control, kind="server_error")
    assert control.get("/stats").status_code == 200
    assert control.get("/faults").json()["faults"][0]["kind"] == "server_error"
    assert control.delete("/faults").status_code == 200
    assert control.get("/faults").json() == {"faults": []}


def test_a_list_of_fault_specs_is_accepted_and_reported_with_counters(
    client: httpx.Client, control: httpx.Client
) -> None:
    response = control.post(
        "/faults",
        json=[{"kind": "latency", "latency_ms": 1}, {"kind": "server_error", "after": 5}],
    )
    assert response.status_code == 201
    client.get("/devices", params={"perPage": 1})
    faults = control.get("/faults").json()["faults"]
    assert [(f["kind"], f["matched"], f["applied"]) for f in faults] == [
        ("latency", 1, 1),
        ("server_error", 1, 0),
    ]


@pytest.mark.parametrize(
    "spec",
    [{"kind": "earthquake"}, {"kind": "server_error", "tims": 1}, {"kind": "poison_record"}],
)
def test_an_invalid_fault_spec_is_refused(control: httpx.Client, spec: dict) -> None:
    response = control.post("/faults", json=spec)
    assert response.status_code == 400
    assert response.json()["message"].startswith("invalid fault spec")


def test_token_bucket_answers_429_with_retry_after_once_the_burst_is_spent() -> None:
    config = GoliothEmulatorConfig(api_key=API_KEY, token_bucket_rps=0.5, token_bucket_burst=2)
    with (
        serving(config) as (_, url),
        httpx.Client(
            base_url=f"{url}/v1/projects/{PROJECT}", headers={"x-api-key": API_KEY}
        ) as client,
    ):
        statuses = [client.get("/devices", params={"perPage": 1}) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert int(statuses[2].headers["Retry-After"]) >= 1
    assert statuses[2].json()["code"] == 8


# -- request log --------------------------------------------------------------------------------


def test_the_x_request_id_the_client_sent_is_recorded(
    client: httpx.Client, control: httpx.Client
) -> None:
    client.get("/devices", params={"perPage": 3}, headers={"X-Request-ID": "req-123"})
    logged = control.get("/requests").json()["requests"]
    assert [(r["method"], r["path"], r["query"], r["status"], r["request_id"]) for r in logged] == [
        ("GET", f"/v1/projects/{PROJECT}/devices", "perPage=3", 200, "req-123")
    ]


def test_credentials_are_logged_as_present_but_redacted(
    client: httpx.Client, emulator: GoliothEmulator
) -> None:
    client.get("/devices", headers={"Authorization": "bearer secret-token"})
    headers = emulator.requests()[-1].headers
    assert headers["x-api-key"] == "[REDACTED]"
    assert headers["authorization"] == "bearer [REDACTED]"
    assert API_KEY not in json.dumps(emulator.requests()[-1].to_json())


def test_faulted_requests_are_logged_with_the_status_sent_and_the_fault(
    client: httpx.Client, control: httpx.Client, emulator: GoliothEmulator
) -> None:
    add_fault(control, kind="rate_limit", times=1)
    client.get("/devices")
    record = emulator.requests()[-1]
    assert (record.status, record.faults) == (429, ("rate_limit",))


def test_request_log_can_be_read_back_most_recent_last_with_a_limit(
    client: httpx.Client, control: httpx.Client
) -> None:
    for n in range(3):
        client.get("/devices", params={"perPage": 1}, headers={"X-Request-ID": f"r{n}"})
    logged = control.get("/requests", params={"limit": 2}).json()["requests"]
    assert [r["request_id"] for r in logged] == ["r1", "r2"]


def test_request_log_can_be_cleared_and_control_calls_are_not_logged(
    client: httpx.Client, control: httpx.Client
) -> None:
    client.get("/devices")
    assert control.delete("/requests").status_code == 200
    control.get("/stats")
    assert control.get("/requests").json()["requests"] == []


def test_request_log_keeps_only_the_most_recent_entries() -> None:
    log = RequestLog(max_entries=3)
    for n in range(5):
        log.append(
            RecordedRequest(
                method="GET",
                path=f"/{n}",
                query="",
                status=200,
                request_id=None,
                raw_headers=(),
                faults=(),
                received_at=0.0,
            )
        )
    assert [r.path for r in log.entries()] == ["/2", "/3", "/4"]
    assert log.total == 5


# -- changing the inventory ---------------------------------------------------------------------


def test_added_devices_appear_at_the_end_of_the_paging_order(
    client: httpx.Client, control: httpx.Client
) -> None:
    response = control.post("/devices", json={"count": 3})
    assert response.status_code == 201
    new_ids = response.json()["ids"]
    body = list_page(client, page=2, perPage=100)
    assert body["total"] == DEVICE_COUNT + 3
    assert [d["id"] for d in body["list"][-3:]] == new_ids
    assert all(d["status"] == "-" for d in body["list"][-3:])
    assert body["list"][-4]["createdAt"] < body["list"][-3]["createdAt"]


def test_patched_fields_change_and_updated_at_moves_forward(
    client: httpx.Client, control: httpx.Client
) -> None:
    device = list_page(client, perPage=1)["list"][0]
    response = control.patch(
        f"/devices/{device['id']}", json={"name": "renamed", "tagIds": None, "enabled": False}
    )
    assert response.status_code == 200
    patched = client.get(f"/devices/{device['id']}").json()["data"]
    assert patched["name"] == "renamed"
    assert "tagIds" not in patched and "enabled" not in patched
    assert patched["updatedAt"] > device["updatedAt"]
    assert patched["createdAt"] == device["createdAt"]
    assert list_page(client, deviceName="renamed")["list"] == [patched]


def test_patching_a_device_id_is_refused(control: httpx.Client, emulator: GoliothEmulator) -> None:
    response = control.patch(f"/devices/{next(emulator.device_ids())}", json={"id": "x"})
    assert response.status_code == 400


def test_deleting_devices_keeps_paging_contiguous_and_complete(
    client: httpx.Client, control: httpx.Client, emulator: GoliothEmulator
) -> None:
    ids = list(emulator.device_ids())
    doomed = {ids[0], ids[36], ids[37], ids[100], ids[-1]}
    for device_id in doomed:
        assert control.delete(f"/devices/{device_id}").status_code == 200
    remaining = all_device_ids(client, per_page=37)
    assert remaining == [i for i in ids if i not in doomed]
    assert list_page(client)["total"] == DEVICE_COUNT - len(doomed)
    assert client.get(f"/devices/{ids[36]}").status_code == 404
    assert control.delete(f"/devices/{ids[36]}").status_code == 404


def test_stats_report_the_inventory_and_requests_served(
    client: httpx.Client, control: httpx.Client, emulator: GoliothEmulator
) -> None:
    client.get("/devices")
    client.get("/devices")
    emulator.add_devices(2)
    stats = control.get("/stats").json()
    assert stats["device_count"] == DEVICE_COUNT + 2
    assert stats["requests_served"] >= 2


def test_python_api_changes_are_seen_over_the_wire(
    client: httpx.Client, emulator: GoliothEmulator
) -> None:
    added = emulator.add_devices(1)[0]
    emulator.patch_device(added, {"blueprintId": "b" * 24})
    emulator.write_state(added, "reported/firmware/version", "9.9.9")
    assert client.get(f"/devices/{added}").json()["data"]["blueprintId"] == "b" * 24
    assert client.get(f"/devices/{added}/data/reported/firmware").json() == {
        "data": {"version": "9.9.9"}
    }
    emulator.delete_device(added)
    assert emulator.device_count == DEVICE_COUNT
    with pytest.raises(KeyError):
        emulator.get_device(added)


# -- the server ---------------------------------------------------------------------------------


def test_servers_on_free_ports_run_side_by_side_and_restart() -> None:
    first = EmulatorServer(GoliothEmulator(GoliothEmulatorConfig(api_key=API_KEY)).app)
    second = EmulatorServer(GoliothEmulator(GoliothEmulatorConfig(api_key=API_KEY, seed=8)).app)
    with first, second:
        assert first.port != second.port
        assert httpx.get(f"{first.url}/_emulator/stats").status_code == 200
        assert httpx.get(f"{second.url}/_emulator/stats").status_code == 200
    first.start()
    try:
        assert httpx.get(f"{first.url}/_emulator/stats").json()["device_count"] == 100
    finally:
        first.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{first.url}/_emulator/stats")
