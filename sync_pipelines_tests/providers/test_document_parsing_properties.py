"""Property-based, for the parsers of outside data not covered elsewhere (records: see
test_payload_parsing_properties.py; Golioth pages: test_golioth_wire.py; every provider's
answers on the wire — pages, shadows, states, error bodies, MQTT payloads:
test_response_parsing_properties.py; webhooks: webhooks/test_verification.py): state documents (LightDB trees, Azure twins, AWS fleet-index
shadows), Azure connection strings, every provider's settings and the JSON limits. Whatever
comes in, each answers with its result or its documented error — never another exception, and
never a secret in a message."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sync_pipelines.errors import ConfigError
from sync_pipelines.json_limits import JsonLimitError, load_within_limits
from sync_pipelines.providers.aws_iot import _indexed_state
from sync_pipelines.providers.azure_iot import _listed_state
from sync_pipelines.providers.azure_sas import ConnectionString, parse_connection_string
from sync_pipelines.providers.contract import DeviceState
from sync_pipelines.providers.golioth import _state_of
from sync_pipelines.providers.settings import (
    AwsIotSettings,
    AzureIotSettings,
    GoliothSettings,
    MqttSettings,
)

_SETTINGS = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["reported", "desired", "version", "name", "x", "$version"])
            | st.text(max_size=6),
            children,
            max_size=4,
        )
    ),
    max_leaves=15,
)


@_SETTINGS
@given(tree=json_values)
def test_any_lightdb_tree_is_a_state(tree):
    state = _state_of("dev-1", tree, "req-1")
    assert isinstance(state, DeviceState) and state.version
    assert state.reported is None or isinstance(state.reported, dict)
    assert state.desired is None or isinstance(state.desired, dict)


@_SETTINGS
@given(
    twin=json_values
    | st.fixed_dictionaries(
        {"deviceId": st.text(max_size=8) | st.integers(), "properties": json_values},
        optional={"etag": json_values},
    )
)
def test_any_twin_query_item_is_a_state_or_none(twin):
    state = _listed_state(twin, None)
    assert state is None or (isinstance(state, DeviceState) and state.external_id)


@_SETTINGS
@given(
    thing=json_values
    | st.fixed_dictionaries(
        {
            "thingName": st.text(min_size=1, max_size=8),
            "shadow": st.text(max_size=40) | json_values.map(json.dumps),
        }
    ),
    shadow_name=st.none() | st.sampled_from(["cfg", "x"]),
)
# found by this property: a named-shadow lookup on a `name` that is not an object
@example(thing={"thingName": "t", "shadow": '{"name":true}'}, shadow_name="cfg")
def test_any_fleet_index_thing_is_a_state_or_none(thing, shadow_name):
    state = _indexed_state(thing, shadow_name, None)
    assert state is None or isinstance(state, DeviceState)


_CS_PARTS = st.sampled_from(
    [
        "HostName=hub.azure-devices.net",
        "HostName=",
        "HostName=http://x/y",
        "SharedAccessKeyName=iothubowner",
        "SharedAccessKey=c2VjcmV0LWtleS12YWx1ZQ==",
        "SharedAccessKey=not*base64",
        "DeviceId=d1",
        "SharedAccessSignature=sig",
        "=",
        ";",
    ]
) | st.text(max_size=20)


@_SETTINGS
@given(parts=st.lists(_CS_PARTS, max_size=6), key=st.text(min_size=8, max_size=30))
def test_any_connection_string_parses_or_is_a_config_error_without_its_key(parts, key):
    text = ";".join([*parts, f"SharedAccessKey={key}"]) if key.strip() else ";".join(parts)
    try:
        parsed = parse_connection_string(text, "az-1")
    except ConfigError as refused:
        if key.strip() and ";" not in key and "=" not in key:
            assert key.strip() not in str(refused)
        return
    assert isinstance(parsed, ConnectionString) and parsed.host_name and parsed.key


_SETTING_NAMES = st.sampled_from(
    [
        "base_url",
        "project_id",
        "page_size",
        "per_page",
        "page_concurrency",
        "state_concurrency",
        "state_source",
        "rate_limit_rps",
        "region",
        "endpoint_url",
        "named_shadows",
        "shadow_name",
        "query",
        "broker_host",
        "broker_port",
        "monitoring",
        "request_timeout_s",
        "retry_max_attempts",
        "poll_interval_s",
        "webhook_max_body_bytes",
    ]
) | st.text(max_size=10)
_SETTING_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["http://169.254.169.254/", "https://api.golioth.io", "50", "list", "{}"])
    | st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=3)
    | st.lists(st.text(max_size=8), max_size=3)
)


@_SETTINGS
@given(
    model=st.sampled_from([GoliothSettings, AwsIotSettings, AzureIotSettings, MqttSettings]),
    values=st.dictionaries(_SETTING_NAMES, _SETTING_VALUES, max_size=6),
)
def test_any_settings_are_typed_or_a_config_error_naming_the_integration(model, values):
    try:
        typed = model.parse(values, "int-1")
    except ConfigError as refused:
        assert "int-1" in str(refused)
        return
    assert isinstance(typed, model)
    assert model.parse(typed.stored(), "int-1") == typed  # what is stored reads back the same


@_SETTINGS
@given(
    text=st.text(max_size=200) | json_values.map(json.dumps),
    max_bytes=st.none() | st.integers(1, 300),
)
def test_any_text_loads_within_the_limits_or_says_why(text, max_bytes):
    try:
        load_within_limits(text, max_bytes=max_bytes)
    except JsonLimitError as refused:
        assert str(refused)
