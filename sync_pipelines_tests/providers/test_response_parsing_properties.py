"""Property-based, for what each provider reads off the wire: AWS GetThingShadow bodies (classic
and named shadows), Golioth and Azure pages, per-device states and error bodies, MQTT retained
and telemetry payloads. Whatever the peer answers, a listing yields its pages or raises a
ProviderError, a state read returns its states and failures (raising only AuthError), an MQTT
document is decoded or refused with DocumentError — never another exception, which would fail
a whole run for one bad answer.

The providers are opened on canned clients (`_CannedClients`): the wire answers are the input,
the provider code is the real one."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_pipelines.errors import AuthError, ProviderError
from sync_pipelines.observability.activity import ActivityRecorder, ActivityScope, MemorySink
from sync_pipelines.observability.lean_http import LeanHttpClient
from sync_pipelines.providers.aws_iot import AwsIotProvider
from sync_pipelines.providers.azure_iot import AzureIotProvider
from sync_pipelines.providers.contract import DeviceState, IntegrationConfig
from sync_pipelines.providers.golioth import GoliothProvider
from sync_pipelines.providers.mqtt_documents import (
    DocumentError,
    decode_object,
    meta_to_device,
    state_of,
    telemetry_message,
)

_SETTINGS = settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow], deadline=None)

_keys = st.sampled_from(
    [
        "state",
        "reported",
        "desired",
        "version",
        "metadata",
        "timestamp",
        "list",
        "total",
        "id",
        "name",
        "data",
        "deviceId",
        "properties",
        "etag",
        "tags",
        "Message",
        "message",
        "code",
        "ExceptionMessage",
        "results",
        "nextToken",
        "ts",
        "seq",
        "updated_at",
        "hardware_ids",
    ]
) | st.text(max_size=6)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["2026-01-01T00:00:00Z", "not-a-time", "-1", "9" * 30])
)
json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=5),
    max_leaves=20,
)


def _deep(depth: int) -> bytes:
    return b'{"state":' * depth + b"{}" + b"}" * depth


#: what a peer may answer: JSON of any shape, JSON nested past what the decoder can recurse,
#: or not JSON at all
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=80),
    st.sampled_from([_deep(5), _deep(3000), b"[" * 5000, b"", b"null", b"NaN", b"1e999"]),
)


class _CannedClients:
    """ProviderClients answering from the test: `http` through an httpx MockTransport, the
    lean client (per-device reads) with an exchange asking the same function, `boto` with an
    object whose operations return canned botocore responses."""

    request_timeout_s = 1.0

    def __init__(
        self,
        http: Callable[[httpx.Request], httpx.Response] | None = None,
        aws: Mapping[str, Callable[..., dict[str, Any]]] | None = None,
    ) -> None:
        self._http, self._aws = http, aws or {}

    def http(self, base_url: str, headers: Mapping[str, str]) -> httpx.Client:
        assert self._http is not None
        return httpx.Client(
            base_url=base_url, headers=headers, transport=httpx.MockTransport(self._http)
        )

    def lean_http(self, base_url: str, headers: Mapping[str, str]) -> LeanHttpClient:
        assert self._http is not None
        respond = self._http

        def exchange(
            method: str, target: str, sent: Mapping[str, str], body: bytes | None = None
        ) -> Any:
            request = httpx.Request(method, base_url + target, headers=dict(sent), content=body)
            answer = respond(request)
            message = http.client.HTTPMessage()
            for name, value in answer.headers.items():
                message[name] = value
            return answer.status_code, answer.reason_phrase, message, answer.read()

        recorder = ActivityRecorder(MemorySink(), ActivityScope(organization_id="org-wire"))
        return LeanHttpClient(recorder, base_url=base_url, headers=headers, exchange=exchange)

    def boto(self, service_name: str, **client_kwargs: Any) -> Any:
        return _Boto(self._aws)

    def mqtt(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


class _Boto:
    def __init__(self, operations: Mapping[str, Callable[..., dict[str, Any]]]) -> None:
        self._operations = operations

    def __getattr__(self, name: str) -> Any:
        if name == "close":
            return lambda: None
        return self._operations[name]


def _config(provider: str, settings_: dict[str, Any], secrets: dict[str, str]) -> IntegrationConfig:
    return IntegrationConfig(
        integration_id=f"{provider}-wire",
        organization_id="org-wire",
        provider=provider,
        settings=settings_,
        secrets=secrets,
    )


def _assert_state_read(outcome: tuple[list[DeviceState], list[Any]], ids: list[str]) -> None:
    states, failures = outcome
    assert len(states) + len(failures) == len(ids)
    for state in states:
        assert state.reported is None or isinstance(state.reported, dict)
        assert state.desired is None or isinstance(state.desired, dict)
    for failure in failures:
        assert failure.error_message


# -- AWS: GetThingShadow ------------------------------------------------------------------------

_AWS = (
    {"region": "us-east-1", "data_endpoint_url": "https://data.iot.example"},
    {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "s" * 40},
)
shadow_documents = st.fixed_dictionaries(
    {},
    optional={
        "state": json_values
        | st.fixed_dictionaries({}, optional={"reported": json_values, "desired": json_values}),
        "version": st.integers(0, 3) | json_values,
        "metadata": json_values,
        "timestamp": json_values,
    },
).map(lambda d: json.dumps(d).encode())


def _aws(shadow_payload: Callable[[str | None], Any], named: Any = None, **settings_: Any):
    operations = {
        "get_thing_shadow": lambda thingName, shadowName=None: {
            "payload": shadow_payload(shadowName),
            "ResponseMetadata": {"HTTPStatusCode": 200, "RequestId": "r-1"},
        },
        "list_named_shadows_for_thing": lambda **kwargs: named,
        "describe_thing": lambda thingName: {"thingName": thingName},
    }
    return AwsIotProvider(
        _config("aws_iot", {**_AWS[0], **settings_}, _AWS[1]), _CannedClients(aws=operations)
    )


@_SETTINGS
@given(payload=shadow_documents | bodies, shadow_name=st.none() | st.just("cfg"))
def test_any_get_thing_shadow_body_is_a_state_or_a_failure(payload, shadow_name):
    provider = _aws(lambda _: payload, shadow_name=shadow_name)
    _assert_state_read(provider.get_states(["thing-1"]), ["thing-1"])


@_SETTINGS
@given(
    payloads=st.dictionaries(st.sampled_from(["a", "b", "c"]), shadow_documents | bodies),
    listed=st.fixed_dictionaries(
        {"results": st.lists(st.sampled_from(["a", "b", "c"]), max_size=3) | json_values}
    ),
)
def test_any_named_shadows_are_a_state_or_a_failure(payloads, listed):
    provider = _aws(lambda name: payloads.get(name, b"{}"), named=listed, named_shadows="*")
    _assert_state_read(provider.get_states(["thing-1"]), ["thing-1"])


@pytest.mark.parametrize("named_shadows", [None, "*"])
def test_a_shadow_without_state_is_an_empty_state(named_shadows):
    # found by the properties above: a document without `state` raised KeyError
    provider = _aws(
        lambda _: b'{"version": 3}', named={"results": ["a"]}, named_shadows=named_shadows
    )
    [state], failures = provider.get_states(["thing-1"])
    assert failures == [] and state.version in ("3", "a:3")
    assert not state.reported and not state.desired


# -- Golioth and Azure over HTTP ------------------------------------------------------------------

_GOLIOTH = (
    {"base_url": "https://golioth.example", "project_id": "p"},
    {"api_key": "k" * 32},
)
_AZURE = (
    {"base_url": "https://hub.example"},
    {
        "connection_string": "HostName=hub.azure-devices.net;SharedAccessKeyName=service;"
        "SharedAccessKey=c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"
    },
)
golioth_pages = st.fixed_dictionaries(
    {"list": st.lists(json_values, max_size=3) | json_values},
    optional={"total": json_values | st.integers(0, 5)},
).map(lambda d: json.dumps(d).encode())
azure_pages = st.lists(
    json_values
    | st.fixed_dictionaries(
        {"deviceId": st.text(max_size=6) | json_values},
        optional={"properties": json_values, "etag": json_values, "tags": json_values},
    ),
    max_size=3,
).map(lambda items: json.dumps(items).encode())
statuses = st.sampled_from([200, 200, 200, 400, 401, 404, 409, 429, 500, 503])
error_headers = st.dictionaries(
    st.sampled_from(["iothub-errorcode", "retry-after", "content-type"]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
    max_size=2,
)


def _answer(status: int, body: bytes, headers: dict[str, str]) -> Callable[..., httpx.Response]:
    """The first call answers `status` with `body`; any later one (a next page) is empty."""
    calls = []

    def respond(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) > 1:
            empty = b"[]" if "query" in request.url.path else b'{"list": [], "total": 0}'
            return httpx.Response(200, content=empty)
        return httpx.Response(status, content=body, headers=headers)

    return respond


def _http_provider(provider: str, respond: Callable[..., httpx.Response]) -> Any:
    if provider == "golioth":
        return GoliothProvider(_config("golioth", *_GOLIOTH), _CannedClients(http=respond))
    return AzureIotProvider(_config("azure_iot", *_AZURE), _CannedClients(http=respond))


def _drain(pages: Any) -> None:
    """Every page a listing yields, or the ProviderError it raises instead."""
    try:
        for _ in pages:
            pass
    except ProviderError as exc:
        assert str(exc)


@_SETTINGS
@given(
    provider=st.sampled_from(["golioth", "azure_iot"]),
    listing=st.sampled_from(["list_devices", "list_devices_with_states", "list_states"]),
    status=statuses,
    headers=error_headers,
    data=st.data(),
)
def test_any_page_is_listed_or_a_provider_error(provider, listing, status, headers, data):
    body = data.draw((golioth_pages if provider == "golioth" else azure_pages) | bodies)
    with _http_provider(provider, _answer(status, body, headers)) as opened:
        _drain(getattr(opened, listing)())


@_SETTINGS
@given(
    provider=st.sampled_from(["golioth", "azure_iot"]),
    status=statuses,
    headers=error_headers,
    body=bodies
    | st.fixed_dictionaries({"data": json_values}).map(lambda d: json.dumps(d).encode())
    | st.fixed_dictionaries(
        {"Message": st.text(max_size=20) | json_values.map(json.dumps)},
        optional={"ExceptionMessage": st.text(max_size=20)},
    ).map(lambda d: json.dumps(d).encode()),
)
def test_any_state_answer_is_a_state_or_a_failure(provider, status, headers, body):
    with _http_provider(provider, _answer(status, body, headers)) as opened:
        try:
            outcome = opened.get_states(["dev-1"])
        except AuthError:
            assert status == 401
            return
        _assert_state_read(outcome, ["dev-1"])


# -- MQTT documents -------------------------------------------------------------------------------

mqtt_documents = st.fixed_dictionaries(
    {},
    optional={
        "version": json_values,
        "state": json_values,
        "name": json_values,
        "ts": json_values | st.floats() | st.integers(-(2**64), 2**64),
        "seq": json_values,
        "updated_at": json_values,
        "hardware_ids": json_values,
        "enabled": json_values,
    },
).map(lambda d: json.dumps(d).encode())


@_SETTINGS
@given(payload=mqtt_documents | bodies)
def test_any_mqtt_payload_is_a_document_or_a_document_error(payload):
    try:
        document = decode_object(payload, max_bytes=64 * 1024)
        state_of(document)
        meta_to_device("dev-1", document)
    except DocumentError as refused:
        assert str(refused)
    try:
        telemetry_message(
            "dev-1",
            "devices/dev-1/telemetry",
            decode_object(payload, max_bytes=64 * 1024),
            received_at=datetime.now(UTC),
            duplicate=False,
        )
    except DocumentError as refused:
        assert str(refused)


@pytest.mark.parametrize("payload", [_deep(3000), b"[" * 5000])
def test_an_mqtt_payload_nested_past_the_decoder_is_a_document_error(payload):
    with pytest.raises(DocumentError, match="nested deeper than"):
        decode_object(payload, max_bytes=64 * 1024)


@pytest.mark.parametrize("ts", [1e20, -1e20, 2**63, float("nan")])
def test_a_telemetry_time_out_of_range_is_a_document_error(ts):
    with pytest.raises(DocumentError, match="`ts`"):
        telemetry_message(
            "dev-1",
            "devices/dev-1/telemetry",
            {"ts": ts},
            received_at=datetime.now(UTC),
            duplicate=False,
        )


# -- regression examples: answers nested past what json.loads can recurse ------------------------


@pytest.mark.parametrize(
    ("provider", "listing", "status"),
    [
        ("golioth", "list_devices", 200),  # msgspec's page decoder, then the generic one
        ("golioth", "list_states", 200),
        ("azure_iot", "list_devices", 200),
        ("azure_iot", "list_states", 200),
    ],
)
def test_a_page_nested_past_the_decoder_is_a_malformed_response(provider, listing, status):
    with (
        _http_provider(provider, _answer(status, _deep(3000), {})) as opened,
        pytest.raises(ProviderError, match="nested deeper than 64 levels"),
    ):
        list(getattr(opened, listing)())


@pytest.mark.parametrize("provider", ["golioth", "azure_iot"])
@pytest.mark.parametrize("status", [200, 500])  # a state, and an error body read for its words
def test_a_state_or_error_body_nested_past_the_decoder_is_a_failure(provider, status):
    with _http_provider(provider, _answer(status, _deep(3000), {})) as opened:
        [], [failure] = opened.get_states(["dev-1"])
    assert failure.error_message


def test_a_shadow_nested_past_the_decoder_is_a_failure_naming_it():
    [], [failure] = _aws(lambda _: _deep(3000)).get_states(["thing-1"])
    assert failure.error_type == "validation" and "nested deeper" in failure.error_message


def _twin_page(reported: bytes) -> bytes:
    return b'[{"deviceId": "d1", "etag": "e", "properties": {"reported": ' + reported + b"}}]"


@pytest.mark.parametrize("listing", ["list_devices", "list_states"])
def test_a_twin_nested_past_the_limit_in_what_it_keeps_is_a_malformed_page(listing):
    """Azure checks the depth limit on what a twin is read for (not its `$metadata`, which is
    dropped): a reported document 70 levels deep makes the page malformed, as the limit makes
    any answer; the same depth under `$metadata` is read past."""
    deep = b'{"a":' * 70 + b"1" + b"}" * 70
    with (
        _http_provider("azure_iot", _answer(200, _twin_page(deep), {})) as opened,
        pytest.raises(ProviderError, match="nested deeper than 64 levels"),
    ):
        list(getattr(opened, listing)())
    under_metadata = b'{"t": 1, "$metadata": ' + deep + b', "$version": 2}'
    with _http_provider("azure_iot", _answer(200, _twin_page(under_metadata), {})) as opened:
        pages = list(getattr(opened, listing)())
    if listing == "list_states":
        states = [s for p in pages for s in p.states]
        assert [(s.external_id, s.reported) for s in states] == [("d1", {"t": 1})]
    else:
        assert [d.external_id for p in pages for d in p.devices] == ["d1"]
