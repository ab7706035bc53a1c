"""Property-based: whatever a provider sends as one inventory record — any JSON, any types
under the documented field names — its parser returns a DeviceRecord or raises ValueError /
TypeError (which the listing turns into a rejected record and a dead letter). Never another
exception: that would fail a whole page for one bad record."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_pipelines.observability.activity import ActivityRecorder, ActivityScope, MemorySink
from sync_pipelines.providers.contract import DeviceRecord, IntegrationConfig
from sync_pipelines.sync.integration_config import open_provider

#: field names the four providers' records use, so generated records reach the deep paths
FIELDS = (
    "id",
    "name",
    "hardwareIds",
    "tagIds",
    "createdAt",
    "updatedAt",
    "lastReport",
    "metadata",
    "enabled",
    "status",
    "blueprintId",
    "data",
    "deviceId",
    "etag",
    "statusUpdateTime",
    "connectionState",
    "lastActivityTime",
    "tags",
    "properties",
    "modelId",
    "version",
    "thingName",
    "thingArn",
    "thingTypeName",
    "attributes",
    "hardware_ids",
    "updated_at",
)
scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
time_like = st.sampled_from(
    ["2026-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "not-a-time", "", "2026-13-45"]
)
records = (
    st.dictionaries(st.sampled_from(FIELDS), json_values | time_like, max_size=12) | json_values
)

SETTINGS = {
    "golioth": ({"base_url": "http://127.0.0.1:9", "project_id": "p"}, {"api_key": "k" * 32}),
    "aws_iot": (
        {
            "region": "us-east-1",
            "endpoint_url": "http://127.0.0.1:9",
            "data_endpoint_url": "http://127.0.0.1:9",
        },
        {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "s" * 40},
    ),
    "azure_iot": (
        {"base_url": "http://127.0.0.1:9"},
        {
            "connection_string": "HostName=h.azure-devices.net;SharedAccessKeyName=service;"
            "SharedAccessKey=c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"
        },
    ),
    "mqtt": ({"host": "127.0.0.1", "port": 9}, {"username": "u", "password": "p" * 16}),
}


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def provider(request):
    settings_, secrets = SETTINGS[request.param]
    config = IntegrationConfig(
        integration_id=f"{request.param}-prop",
        organization_id="org-prop",
        provider=request.param,
        settings=settings_,
        secrets=secrets,
    )
    recorder = ActivityRecorder(MemorySink(), ActivityScope(organization_id="org-prop"))
    opened = open_provider(config, recorder, timeout_s=1.0)
    yield opened
    opened.close()


def _as_received(provider, record):
    """The payload as the provider's listing stores a record it rejected."""
    if provider.name != "mqtt":
        return record
    text = json.dumps(record)
    return {"topic": "devices/dev-1/meta", "payload": text, "bytes": len(text.encode())}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(record=records)
def test_any_record_parses_or_is_rejected_with_a_value_or_type_error(provider, record):
    try:
        parsed = provider.parse_device(_as_received(provider, record))
    except (ValueError, TypeError) as exc:
        assert str(exc), "a rejection must say what is wrong"
        return
    assert isinstance(parsed, DeviceRecord) and parsed.external_id


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=64) | st.text(max_size=64))
def test_mqtt_payloads_that_are_not_json_are_rejected_not_raised(raw):
    config = IntegrationConfig(
        integration_id="mqtt-prop",
        organization_id="org-prop",
        provider="mqtt",
        settings=SETTINGS["mqtt"][0],
        secrets=SETTINGS["mqtt"][1],
    )
    with open_provider(
        config, ActivityRecorder(MemorySink(), ActivityScope(organization_id="org-prop"))
    ) as mqtt:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        stored = {"topic": "devices/dev-1/meta", "payload": text, "bytes": len(text.encode())}
        try:
            parsed = mqtt.parse_device(stored)
        except (ValueError, TypeError) as exc:
            assert "dev-1" in str(exc) or str(exc), "a rejection must say what is wrong"
        else:  # only a JSON meta document can parse
            assert isinstance(parsed, DeviceRecord) and isinstance(json.loads(text), dict)
