"""The Golioth provider against the emulator, without a store: wire format → typed records."""

from __future__ import annotations

import httpx
import pytest

from sync_pipelines.errors import (
    AuthError,
    MalformedResponseError,
    RateLimitedError,
    TransientError,
)
from sync_pipelines.observability.activity import ActivityRecorder, ActivityScope, MemorySink
from sync_pipelines.providers.contract import IntegrationConfig
from sync_pipelines.sync.integration_config import open_provider

#: the clients' retries with short backoffs (a server's Retry-After is still honoured)
FAST_RETRIES = {"retry_base_backoff_s": 0.01, "retry_max_backoff_s": 0.05, "retry_jitter_s": 0.01}


@pytest.fixture
def recorder() -> ActivityRecorder:
    return ActivityRecorder(
        MemorySink(), ActivityScope(organization_id="org-p", integration_id="g-p"), flush_every=1
    )


def _provider(running, recorder, api_key=None, **settings):
    config = IntegrationConfig(
        integration_id="g-p",
        organization_id="org-p",
        provider="golioth",
        settings={
            "base_url": running.url,
            "project_id": running.emulator.config.project_id,
            **FAST_RETRIES,
            **settings,
        },
        secrets={"api_key": api_key or running.api_key},
    )
    return open_provider(config, recorder)


def test_pages_cover_the_inventory_in_order(golioth, recorder):
    with _provider(golioth, recorder) as provider:
        pages = list(provider.list_devices())
    ids = [d.external_id for p in pages for d in p.devices]
    assert ids == list(golioth.emulator.device_ids())
    assert [p.page_number for p in pages] == [0, 1, 2]
    assert [p.cursor_after for p in pages] == [
        {"next_page": 1, "per_page": 100},
        {"next_page": 2, "per_page": 100},
        None,
    ]


def test_omitted_fields_become_empty_values_and_tag_ids_are_read(golioth, recorder):
    with _provider(golioth, recorder) as provider:
        devices = [d for p in provider.list_devices() for d in p.devices]
    wire = {d["id"]: d for d in (golioth.emulator.get_device(x.external_id) for x in devices)}
    untagged = [d for d in devices if "tagIds" not in wire[d.external_id]]
    tagged = [d for d in devices if "tagIds" in wire[d.external_id]]
    assert untagged and all(d.tags == () for d in untagged)
    assert tagged and all(list(d.tags) == wire[d.external_id]["tagIds"] for d in tagged)
    disabled = [d for d in devices if "enabled" not in wire[d.external_id]]
    assert all(d.enabled is False for d in disabled)
    assert all(d.provider_created_at is not None and d.provider_created_at.tzinfo for d in devices)


def test_resuming_from_a_cursor_starts_one_page_early(golioth, recorder):
    with _provider(golioth, recorder) as provider:
        pages = list(provider.list_devices(since={"next_page": 2, "per_page": 100}))
    assert [p.page_number for p in pages] == [1, 2]


def test_states_split_reported_and_desired_with_a_version(golioth, recorder):
    ids = list(golioth.emulator.device_ids())[:5]
    with _provider(golioth, recorder) as provider:
        states, failures = provider.get_states(ids)
    assert failures == []
    by_id = {s.external_id: s for s in states}
    for device_id in ids:
        tree = golioth.emulator.read_state(device_id)
        assert by_id[device_id].reported == tree.get("reported")
        assert by_id[device_id].desired == tree.get("desired")
        assert by_id[device_id].version and by_id[device_id].request_id


def test_a_state_change_changes_the_version(golioth, recorder):
    device_id = next(golioth.emulator.device_ids())
    with _provider(golioth, recorder) as provider:
        (before,), _ = provider.get_states([device_id])
        golioth.emulator.write_state(device_id, "desired/interval_s", 999)
        (after,), _ = provider.get_states([device_id])
    assert after.desired["interval_s"] == 999 and after.version != before.version


def test_a_failed_state_read_is_reported_per_device(golioth, recorder):
    ids = list(golioth.emulator.device_ids())[:4]
    golioth.emulator.add_faults({"kind": "server_error", "status": 503, "path": f"{ids[1]}/data$"})
    with _provider(golioth, recorder) as provider:
        states, failures = provider.get_states(ids)
    assert len(states) == 3
    (failure,) = failures
    assert (
        failure.external_id == ids[1]
        and failure.error_type == "transient"
        and "503" in failure.error_message
    )


def test_bad_credentials_raise_an_auth_error_with_the_providers_words(golioth, recorder):
    with (
        _provider(golioth, recorder, api_key="wrong-key") as provider,
        pytest.raises(AuthError) as err,
    ):
        list(provider.list_devices())
    assert err.value.status_code == 401 and "rpc code 16" in str(err.value) and err.value.request_id


def test_a_truncated_page_is_a_malformed_response(golioth, recorder):
    golioth.emulator.add_faults({"kind": "truncated_json", "path": "/devices$"})
    with (
        _provider(golioth, recorder) as provider,
        pytest.raises(MalformedResponseError, match="not valid JSON"),
    ):
        list(provider.list_devices())


def test_connection_test_reports_ok_with_latency(golioth, recorder):
    with _provider(golioth, recorder) as provider:
        result = provider.test_connection()
    assert result.ok and result.latency_ms > 0 and result.details["project_id"] == "demo-project"


def test_connection_test_explains_an_auth_failure_without_raising(golioth, recorder):
    with _provider(golioth, recorder, api_key="nope-nope") as provider:
        result = provider.test_connection()
    assert not result.ok and result.reason.startswith("authentication failed")


def test_connection_test_explains_an_unreachable_host(recorder, golioth_factory):
    running = golioth_factory(device_count=1)
    running.server.stop()
    with _provider(running, recorder) as provider:
        result = provider.test_connection()
    assert not result.ok and "cannot reach" in result.reason


def test_every_call_is_recorded_by_the_client_not_the_provider(golioth, recorder):
    with _provider(golioth, recorder) as provider:
        list(provider.list_devices())
    rows = [r for r in recorder.sink.rows.values() if r.activity_type == "http_request"]
    assert len(rows) == 3 and all(
        r.direction == "outgoing" and r.request_headers["x-api-key"] == "[REDACTED]" for r in rows
    )


@pytest.mark.parametrize("retry_after_format", ["seconds", "http-date"])
def test_a_429s_retry_after_is_honoured_as_seconds_or_an_http_date(
    golioth, recorder, retry_after_format
):
    golioth.emulator.add_faults(
        {
            "kind": "rate_limit",
            "retry_after_s": 30,
            "retry_after_format": retry_after_format,
            "path": "/devices$",
            "times": 1,
        }
    )
    with (
        # throttling is retried for the whole retry budget, not an attempt count: a wait longer
        # than the budget gives up at once, naming the wait
        _provider(golioth, recorder, retry_max_attempts=1, retry_max_total_s=5) as provider,
        pytest.raises(RateLimitedError) as err,
    ):
        list(provider.list_devices())
    # an HTTP-date has whole seconds: the wait is what is left of the 30 s
    assert err.value.status_code == 429 and 28.0 <= err.value.retry_after_s <= 30.0


def test_device_ids_are_quoted_into_one_path_segment(golioth, recorder):
    odd = "a/b c#1"
    with _provider(golioth, recorder) as provider:
        states, (failure,) = provider.get_states([odd])
    assert states == []
    # the whole id reached the device route (unquoted, `#1` would have been a fragment and
    # `/b` another path segment) and the emulator answered that it has no such device
    (request,) = [r for r in golioth.emulator.requests() if r.path.endswith("/data")]
    assert request.path.endswith(f"/devices/{odd}/data")
    assert failure.error_type == "permanent"
    assert f"device {odd!r} not found in project" in failure.error_message


def test_a_transport_failure_is_transient_with_the_integration_url_and_request_id(
    recorder, golioth_factory
):
    running = golioth_factory(device_count=1)
    running.server.stop()
    with (
        _provider(running, recorder, retry_max_attempts=1) as provider,
        pytest.raises(TransientError) as err,
    ):
        list(provider.list_devices())
    message = str(err.value)
    assert "integration 'g-p': cannot reach the Golioth API at" in message
    assert f"{running.url}/v1/projects/" in message and "?" not in message.split(" at ")[1]
    assert err.value.request_id and err.value.request_id in message
    assert err.value.integration_id == "g-p" and isinstance(err.value.__cause__, httpx.ConnectError)
