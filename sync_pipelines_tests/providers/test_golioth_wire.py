"""The Golioth page's typed (msgspec) decode against the generic per-record decode: the same
records for every page the typed path takes, and a fall back — never a silent acceptance —
for every page holding a record the generic path rejects."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_pipelines.errors import MalformedResponseError
from sync_pipelines.observability.activity import ActivityRecorder, ActivityScope, MemorySink
from sync_pipelines.providers.contract import DeviceRecord, IntegrationConfig
from sync_pipelines.providers.golioth import _typed_page
from sync_pipelines.sync.integration_config import open_provider

#: the clients' retries with short backoffs (a server's Retry-After is still honoured)
FAST_RETRIES = {"retry_base_backoff_s": 0.01, "retry_max_backoff_s": 0.05, "retry_jitter_s": 0.01}


def _open(running):
    config = IntegrationConfig(
        integration_id="g-wire",
        organization_id="org-wire",
        provider="golioth",
        settings={
            "base_url": running.url,
            "project_id": running.emulator.config.project_id,
            **FAST_RETRIES,
        },
        secrets={"api_key": running.api_key},
    )
    recorder = ActivityRecorder(
        MemorySink(), ActivityScope(organization_id="org-wire", integration_id="g-wire")
    )
    return open_provider(config, recorder)


def _exactly(records: list[DeviceRecord]) -> list[str]:
    """`==` with types and time zones: 1 == True == 1.0 and equal instants in different zones
    compare equal, but their reprs do not."""
    return [repr(r) for r in records]


def _assert_same_records(typed: list[DeviceRecord], generic: list[DeviceRecord]) -> None:
    assert typed == generic
    assert _exactly(typed) == _exactly(generic)


# -- real pages from the emulator -----------------------------------------------------------------


@pytest.mark.parametrize("int64_as_string", [False, True])
#: statePath fills `data`: the whole LightDB tree ("/"), or a scalar deep in it
@pytest.mark.parametrize("state_path", [None, "/", "reported/env/temp/value"])
def test_emulator_pages_decode_to_the_same_records_on_both_paths(
    golioth_factory, int64_as_string, state_path
):
    running = golioth_factory(device_count=250, int64_as_string=int64_as_string)
    params = {"perPage": 100} if state_path is None else {"perPage": 100, "statePath": state_path}
    with _open(running) as provider:
        for page in range(3):
            response = provider.http.get(
                f"{provider._prefix}/devices", params={"page": page, **params}
            )
            typed = _typed_page(response.content)
            devices, rejected, total, count = provider._generic_page(response)
            assert typed is not None, "a clean emulator page must take the typed path"
            assert rejected == [] and typed[1:] == (total, count) == (250, len(devices))
            _assert_same_records(typed[0], devices)
    if state_path is not None:
        assert any("data" in d.attributes for d in typed[0])


def test_a_poison_record_is_rejected_with_todays_message_and_its_page_kept(golioth):
    golioth.emulator.add_faults(
        {"kind": "poison_record", "device_index": 3},
        {"kind": "poison_record", "device_index": 7, "shape": "missing_id"},
    )
    with _open(golioth) as provider:
        pages = list(provider.list_devices())
    golioth.emulator.clear_faults()
    with _open(golioth) as provider:
        clean = list(provider.list_devices())
    ids = list(golioth.emulator.device_ids())
    first = pages[0]
    assert [d.external_id for d in first.devices] == [
        i for n, i in enumerate(ids[:100]) if n not in (3, 7)
    ]
    _assert_same_records(
        list(first.devices), [d for d in clean[0].devices if d.external_id not in (ids[3], ids[7])]
    )
    bad_types, missing_id = first.rejected
    assert (bad_types.external_id, bad_types.error_type, bad_types.error_message) == (
        ids[3],
        "validation",
        f"TypeError: device {ids[3]}: `hardwareIds` must be a list of strings, got 'oops'",
    )
    assert (missing_id.external_id, missing_id.error_type, missing_id.error_message) == (
        None,
        "validation",
        "ValueError: device has no `id`",
    )
    assert bad_types.payload["createdAt"] == "not-a-time" and "id" not in missing_id.payload
    assert all(p.rejected == [] for p in pages[1:])
    _assert_same_records(
        [d for p in pages[1:] for d in p.devices], [d for p in clean[1:] for d in p.devices]
    )


def test_a_body_that_is_not_json_still_raises_the_malformed_response_error(golioth):
    golioth.emulator.add_faults({"kind": "malformed_json", "path": "/devices$"})
    with (
        _open(golioth) as provider,
        pytest.raises(MalformedResponseError, match="response is not valid JSON"),
    ):
        provider._fetch_page(0)


# -- generated pages ------------------------------------------------------------------------------

#: text JSON can carry both ways (a lone surrogate is JSON msgspec refuses: the page falls back)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
names = text.filter(bool) | st.sampled_from(["Ünïcødé 设备", "emoji-🛰️", "tab\there", 'quote"d'])
numbers = st.integers() | st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=10,
)
offsets = st.timedeltas(
    min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59)
)
moments = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.none() | st.just(UTC) | offsets.map(timezone),
)


def _rfc3339(moment: datetime, style: str) -> str:
    if style == "millis_z" and moment.utcoffset() == timedelta(0):
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.isoformat()


times = st.builds(_rfc3339, moments, st.sampled_from(["iso", "millis_z"]))
ABSENT = object()


def _maybe(values, *, empty=()):
    """A field that may be absent, null, one of its empty values, or a value."""
    return st.just(ABSENT) | st.none() | st.sampled_from(empty or [None]) | values


#: devices of the documented shape (PROVIDERS.md §1.4), with every optional field absent, null,
#: empty or set: the typed path must take all of them
documented_devices = st.fixed_dictionaries(
    {
        "id": names,
        "name": names,
        "hardwareIds": st.just(ABSENT) | st.lists(text, max_size=3),
        "tagIds": st.just(ABSENT) | st.lists(text, max_size=3),
        "blueprintId": _maybe(text, empty=[""]),
        "cohortId": _maybe(text, empty=[""]),
        "certificateId": _maybe(text, empty=[""]),
        "data": _maybe(json_values, empty=["", [], {}]),
        "enabled": _maybe(st.booleans()),
        "status": _maybe(st.sampled_from(["online", "offline", "-"]) | text, empty=[""]),
        "createdAt": _maybe(times, empty=[""]),
        "updatedAt": _maybe(times, empty=[""]),
        "lastReport": _maybe(times, empty=[""]),
        "metadata": _maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "status": json_values,
                    "lastReport": times,
                    "lastSettingsStatus": json_values,
                    "update": json_values,
                },
            ),
            empty=[{}],
        ),
        "unknownField": _maybe(json_values),
    }
).map(lambda d: {k: v for k, v in d.items() if v is not ABSENT})

#: anything under the field names the provider reads, as in test_payload_parsing_properties
FIELDS = (
    "id",
    "name",
    "hardwareIds",
    "tagIds",
    "blueprintId",
    "cohortId",
    "certificateId",
    "data",
    "enabled",
    "status",
    "createdAt",
    "updatedAt",
    "lastReport",
    "metadata",
)
odd_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
)
odd_values = st.recursive(
    odd_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
#: values at the edges of what some field takes: absent, null, empty, falsy, the wrong type
EDGE_VALUES = (
    ABSENT,
    None,
    "",
    0,
    1,
    1.5,
    False,
    True,
    [],
    {},
    "x",
    ["a", 1],
    {"k": "v"},
    "not-a-time",
    "2026-13-45",
    "2026-01-01T00:00:00",
)


def _with(device: dict, field: str, value) -> dict:
    """`device` with one field (or one `metadata.` member) replaced, or removed for ABSENT."""
    device = dict(device)
    target = device
    if field.startswith("metadata."):
        target = device["metadata"] = (
            dict(device["metadata"]) if isinstance(device.get("metadata"), dict) else {}
        )
        field = field.removeprefix("metadata.")
    if value is ABSENT:
        target.pop(field, None)
    else:
        target[field] = value
    return device


one_field_off = st.builds(
    _with,
    documented_devices,
    st.sampled_from((*FIELDS, "metadata.lastReport", "metadata.status")),
    st.sampled_from(EDGE_VALUES) | odd_values,
)
odd_devices = (
    one_field_off
    | st.builds(_with, one_field_off, st.sampled_from(FIELDS), st.sampled_from(EDGE_VALUES))
    | st.dictionaries(st.sampled_from(FIELDS), odd_values | names, max_size=14)
    | odd_values
)
totals = st.integers(0, 10**6) | st.integers(0, 10**6).map(str)


def _body(devices, total, *, ensure_ascii: bool) -> bytes:
    return json.dumps(
        {"list": devices, "page": 0, "perPage": 100, "total": total}, ensure_ascii=ensure_ascii
    ).encode()


def _generic(provider, body: bytes):
    """The generic per-record path on a response carrying `body`."""
    request = httpx.Request("GET", "http://golioth.invalid/v1/projects/p/devices?page=0")
    return provider._generic_page(httpx.Response(200, content=body, request=request))


@pytest.fixture(scope="module")
def offline_provider():
    """A provider for its decoders only: nothing is ever sent to this address."""
    config = IntegrationConfig(
        integration_id="g-prop",
        organization_id="org-prop",
        provider="golioth",
        settings={"base_url": "http://127.0.0.1:9", "project_id": "p"},
        secrets={"api_key": "k" * 32},
    )
    with open_provider(
        config, ActivityRecorder(MemorySink(), ActivityScope(organization_id="org-prop"))
    ) as opened:
        yield opened


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(devices=st.lists(documented_devices, max_size=5), total=totals, ensure_ascii=st.booleans())
def test_documented_devices_take_the_typed_path_and_decode_the_same(
    offline_provider, devices, total, ensure_ascii
):
    body = _body(devices, total, ensure_ascii=ensure_ascii)
    generic_devices, rejected, generic_total, count = _generic(offline_provider, body)
    typed = _typed_page(body)
    assert rejected == [] and typed is not None
    assert typed[1:] == (generic_total, count)
    _assert_same_records(typed[0], generic_devices)


@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    devices=st.lists(documented_devices, max_size=2).flatmap(
        lambda ok: st.lists(odd_devices, min_size=1, max_size=2).map(lambda odd: ok + odd)
    ),
    total=totals | odd_values,
    ensure_ascii=st.booleans(),
)
def test_a_page_with_any_record_the_generic_path_rejects_falls_back(
    offline_provider, devices, total, ensure_ascii
):
    body = _body(devices, total, ensure_ascii=ensure_ascii)
    typed = _typed_page(body)
    try:
        generic_devices, rejected, generic_total, count = _generic(offline_provider, body)
    except Exception:  # a page the generic path refuses whole (a bad `total`): so must we
        assert typed is None
        return
    if rejected:
        assert typed is None, "a record the generic path rejects was accepted by the typed path"
    elif typed is not None:  # the typed path may still decline an odd but valid page
        assert typed[1:] == (generic_total, count)
        _assert_same_records(typed[0], generic_devices)


#: a device with every field the provider reads set, as the emulator sends one
FULL_DEVICE = {
    "id": "67748594c36445184499ce60",
    "name": "device-000001",
    "hardwareIds": ["02:00:00:00:00:01"],
    "tagIds": ["01cdce9d8e19c2d9169f8c10"],
    "blueprintId": "51cf6d13274f5004a87ca233",
    "cohortId": "584878b847436e9e130d8854",
    "certificateId": "c1",
    "data": {"reported": {"temp": 21.5}},
    "enabled": True,
    "status": "online",
    "lastReport": "2025-01-20T10:51:17.010Z",
    "createdAt": "2025-01-01T00:00:20.700Z",
    "updatedAt": "2025-01-01T01:35:53.215+02:00",
    "metadata": {
        "status": "online",
        "lastReport": "2025-01-20T10:51:17.010Z",
        "update": {"main": {"version": "1.4.8"}},
    },
}


@pytest.mark.parametrize("field", [*FIELDS, "metadata.lastReport", "metadata.status"])
def test_every_field_at_every_edge_value_decodes_the_same_or_falls_back(offline_provider, field):
    for value in EDGE_VALUES:
        for device in (
            _with(FULL_DEVICE, field, value),
            _with(_with(FULL_DEVICE, "lastReport", ABSENT), field, value),
        ):
            body = _body([FULL_DEVICE, device], 2, ensure_ascii=True)
            generic_devices, rejected, _, _ = _generic(offline_provider, body)
            typed = _typed_page(body)
            if rejected:
                assert typed is None, (
                    f"{field}={value!r} is rejected by the generic path, accepted by the typed one"
                )
            elif typed is not None:
                _assert_same_records(typed[0], generic_devices)


@pytest.mark.parametrize(
    "body",
    [
        b'{"list":[{"id":"a","name":"b"}],"total":',
        b'{"list":[{"id":"\xff","name":"b"}],"total":1}',
        b'{"list":[{"id":"a","name":"b","data":NaN}],"total":1}',
        b'\xef\xbb\xbf{"list":[],"total":0}',
        b'{"list":[{"id":"\\ud800","name":"b"}],"total":1}',
        b"[]",
        b'{"total":1}',
        b'{"list":{},"total":1}',
        b'{"list":[],"total":true}',
        b'{"list":[],"total":6.0}',
        b'{"list":[],"total":null}',
        b'{"list":[{"id":"a","name":"b","hardwareIds":"x","hardwareIds":["y"]}],"total":1}',
        # found by test_response_parsing_properties: msgspec raised RecursionError
        b'{"skipped":' + b"[" * 5000 + b"]" * 5000 + b',"list":[],"total":0}',
    ],
)
def test_bodies_the_typed_decoder_refuses_are_declined_not_raised(body):
    """Not JSON to msgspec, or not of the page's shape: left to the generic path, whatever it
    then makes of it (records, a rejection or a MalformedResponseError)."""
    assert _typed_page(body) is None


@pytest.mark.parametrize("total", [None, 1.5, [], {}, True, "six"])
def test_a_bad_total_is_a_malformed_response_naming_it(offline_provider, total):
    body = _body([{"id": "a", "name": "b"}], total, ensure_ascii=True)
    with pytest.raises(MalformedResponseError, match="bad `total`"):
        _generic(offline_provider, body)
