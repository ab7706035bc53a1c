"""The device and state content hashes: built from the serialised columns, yet equal to the
digest of the whole content's sorted-key JSON that earlier releases stored, so an upgrade sees
no change."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_pipelines.plain_floats import PLAIN_FLOAT_MAX, PLAIN_FLOAT_MIN
from sync_pipelines.providers.contract import DeviceRecord, DeviceState, PlainJson
from sync_pipelines.store.database import load_json
from sync_pipelines.sync.records import device_row, state_row


def _legacy_hash(device: DeviceRecord) -> str:
    """The formula of earlier releases, kept here as the reference."""
    content = {
        "name": device.name,
        "hardware_ids": list(device.hardware_ids),
        "tags": list(device.tags),
        "status": device.status,
        "enabled": device.enabled,
        "attributes": device.attributes,
        "provider_created_at": device.provider_created_at,
        "provider_updated_at": device.provider_updated_at,
        "last_seen_at": device.last_seen_at,
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


DEVICES = [
    DeviceRecord(external_id="plain", name="device-1"),
    DeviceRecord(
        external_id="full",
        name='Ünïcode "quoted" \\ name\n',
        hardware_ids=("02:00:00:00:00:01", "35123"),
        tags=("b", "a"),
        status="online",
        enabled=True,
        last_seen_at=datetime(2025, 2, 12, 7, 52, 26, 509000, tzinfo=UTC),
        provider_created_at=datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=2))),
        provider_updated_at=datetime(2025, 1, 1, 1, 38, 1, tzinfo=UTC),
        attributes={
            "metadata": {"z": [3, {"y": 1, "x": None}], "a": 1.5},
            "blueprintId": "bp",
            "data": {},
        },
    ),
    DeviceRecord(external_id="off", name="d", enabled=False, status=None, attributes={"k": "✓"}),
]


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: d.external_id)
def test_hash_equals_the_earlier_formula(device):
    row = device_row(
        device,
        organization_id="o",
        integration_id="i",
        run_id=None,
        request_id=None,
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert row["content_hash"] == _legacy_hash(device)
    # the JSON columns hold the same documents as before
    assert load_json(row["attributes"]) == device.attributes
    assert load_json(row["hardware_ids"]) == list(device.hardware_ids)
    assert load_json(row["tags"]) == list(device.tags)


class _SubclassedTime(datetime):
    """A datetime subclass (as some libraries hand out) with its own `__str__`."""

    def __str__(self) -> str:
        return "subclassed"


def test_times_hash_as_str_writes_them_whatever_their_kind():
    times = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2025, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime.fromisoformat("2025-01-01T00:00:00.400Z"),
        datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=-3, seconds=7))),
        datetime(2025, 1, 1, 12, 30),
        _SubclassedTime(2025, 1, 1, tzinfo=UTC),
    ]
    for when in times:
        device = DeviceRecord(
            external_id="t", name="t", last_seen_at=when, provider_created_at=when
        )
        row = device_row(
            device,
            organization_id="o",
            integration_id="i",
            run_id=None,
            request_id=None,
            now=datetime(2026, 1, 1, tzinfo=UTC),
        )
        assert row["content_hash"] == _legacy_hash(device), when


def test_any_field_change_changes_the_hash():
    base = DEVICES[1]
    fields = {
        "name": "other",
        "tags": ("a", "b"),
        "status": "offline",
        "enabled": False,
        "attributes": {**base.attributes, "data": {"v": 1}},
        "last_seen_at": None,
    }
    hashes = {
        device_row(
            DeviceRecord(**{**{f: getattr(base, f) for f in base.__slots__}, field: value}),
            organization_id="o",
            integration_id="i",
            run_id=None,
            request_id=None,
            now=datetime(2026, 1, 1, tzinfo=UTC),
        )["content_hash"]
        for field, value in fields.items()
    }
    assert len(hashes) == len(fields) and _legacy_hash(base) not in hashes


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
# UTC (the fast path through msgspec's encoder), other offsets and naive times (through `str()`)
_times = st.none() | st.datetimes(
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))])
    | st.none()
    | st.timezones()
)


@settings(max_examples=300, deadline=None)
@given(
    name=st.text(min_size=1, max_size=12),
    hardware_ids=st.lists(st.text(max_size=8), max_size=3).map(tuple),
    tags=st.lists(st.text(max_size=8), max_size=3).map(tuple),
    status=st.none() | st.text(max_size=6),
    enabled=st.booleans(),
    attributes=st.dictionaries(st.text(max_size=6), _json_values, max_size=4),
    times=st.tuples(_times, _times, _times),
)
def test_hash_and_columns_equal_the_earlier_formula_for_any_device(
    name, hardware_ids, tags, status, enabled, attributes, times
):
    """Floats (exponents, NaN), non-ASCII and control characters, nested documents: the fast
    encoder writes exactly what `json.dumps(sort_keys=True, default=str)` wrote."""
    device = DeviceRecord(
        external_id="x",
        name=name,
        hardware_ids=hardware_ids,
        tags=tags,
        status=status,
        enabled=enabled,
        attributes=attributes,
        last_seen_at=times[0],
        provider_created_at=times[1],
        provider_updated_at=times[2],
    )
    row = device_row(
        device,
        organization_id="o",
        integration_id="i",
        run_id=None,
        request_id=None,
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert row["content_hash"] == _legacy_hash(device)
    canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode
    assert row["attributes"] == canonical(attributes)
    assert (row["hardware_ids"], row["tags"]) == (
        canonical(list(hardware_ids)),
        canonical(list(tags)),
    )


_any_text = st.text(max_size=8) | st.sampled_from(["\x7f", "é", "x,1.5", ":null", "\\u007f", ""])
#: floats both encoders write alike: 0, or a magnitude in [1e-4, 1e16)
_plain_floats = (
    st.just(0.0)
    | st.just(-0.0)
    | (
        st.floats(min_value=PLAIN_FLOAT_MIN, max_value=PLAIN_FLOAT_MAX, exclude_max=True).flatmap(
            lambda f: st.sampled_from([f, -f])
        )
    )
)
_plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | _plain_floats
    | _any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_any_text, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(document=st.dictionaries(_any_text, _plain, max_size=5))
def test_a_plain_document_hashes_as_json_dumps_writes_it(document):
    """`PlainJson` (a provider's decoded attributes, floats only where msgspec and json write
    them alike) takes msgspec's encoder unless the text is non-ASCII or has DEL: the attributes
    column and the hash stay the same."""
    decoded = msgspec.json.decode(json.dumps(document))
    device = DeviceRecord(external_id="d", name="d", attributes=PlainJson(decoded))
    row = device_row(
        device,
        organization_id="o",
        integration_id="i",
        run_id=None,
        request_id=None,
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert row["attributes"] == json.dumps(decoded, sort_keys=True, separators=(",", ":"))
    assert row["content_hash"] == _legacy_hash(device)


def _golioth_page(metadata: dict) -> bytes:
    device = {"id": "d1", "name": "n", "blueprintId": "bp", "metadata": metadata}
    return json.dumps({"list": [device], "total": 1}).encode()


@pytest.mark.parametrize("value", [1e16, 1.5e300, 1e-5, -2.5e-7, 3e-9, float("nan"), float("inf")])
def test_the_plain_float_range_is_where_msgspec_and_json_agree(value):
    """Outside the range the two encoders differ (an exponent: json writes `e-05`, `e+16`,
    msgspec `e-5`, `e16`; NaN, infinity): why a page holding such a float is not `PlainJson`."""
    assert msgspec.json.encode(value).decode() != json.dumps(value)
    for inside in (PLAIN_FLOAT_MIN, -PLAIN_FLOAT_MIN, 9999999999999998.0, 21.5, 0.0, -0.0):
        assert msgspec.json.encode(inside).decode() == json.dumps(inside)


def test_golioth_marks_plain_attributes_and_hashes_them_the_same():
    from sync_pipelines.providers.golioth import _typed_page

    float_free = {"status": "online", "update": {"main": {"version": "1.4.8", "n": 8}}}
    plain_float = {"status": "online", "update": {"main": {"progress": 0.5}}}
    exponent = {"status": "online", "update": {"main": {"progress": 1e-05}}}
    huge = {"status": "online", "update": {"main": {"bytes": 1e16}}}
    for metadata, kind in (
        (float_free, PlainJson),
        (plain_float, PlainJson),
        (exponent, dict),
        (huge, dict),
    ):
        typed = _typed_page(_golioth_page(metadata))
        assert typed is not None
        (device,), _, _ = typed
        assert type(device.attributes) is kind
        row = device_row(
            device,
            organization_id="o",
            integration_id="i",
            run_id=None,
            request_id=None,
            now=datetime(2026, 1, 1, tzinfo=UTC),
        )
        assert row["content_hash"] == _legacy_hash(device)
        expected = {"blueprintId": "bp", "metadata": metadata}
        assert row["attributes"] == json.dumps(expected, sort_keys=True, separators=(",", ":"))


def _legacy_state_hash(state: DeviceState) -> str:
    """The state formula of earlier releases, kept here as the reference."""
    text = json.dumps(
        [state.reported, state.desired, state.version],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _state_columns(state: DeviceState) -> dict:
    return state_row(
        state, organization_id="o", integration_id="i", run_id=None, now=datetime(2026, 1, 1)
    )


#: any documents (floats of every kind, as a plain dict) or plain ones (as a decoder marks them)
_any_document = st.none() | st.dictionaries(_any_text, _plain | st.floats(), max_size=4)
_plain_document = st.none() | st.dictionaries(_any_text, _plain, max_size=4).map(
    lambda d: PlainJson(msgspec.json.decode(json.dumps(d)))
)


@settings(max_examples=300, deadline=None)
@given(
    documents=st.tuples(_any_document, _any_document) | st.tuples(_plain_document, _plain_document),
    version=st.none() | st.text(max_size=6) | st.integers(),
)
def test_state_hash_and_documents_equal_the_earlier_formula(documents, version):
    """Each document is written once (sorted keys) and the hash assembled from those texts:
    equal to the earlier hash of the whole, whether or not the provider marked them plain, and
    the columns hold the same documents (SQL NULL for a missing one)."""
    reported, desired = documents
    state = DeviceState("d", reported, desired, version, datetime(2026, 1, 1, tzinfo=UTC))
    row = _state_columns(state)
    assert row["content_hash"] == _legacy_state_hash(state)
    for column, document in (("reported", reported), ("desired", desired)):
        if document is None:
            assert row[column] is None
        else:
            assert row[column] == json.dumps(document, sort_keys=True, separators=(",", ":"))


@pytest.mark.parametrize(("temperature", "kind"), [(21.5, PlainJson), (1e-05, dict)])
def test_azure_marks_plain_twins_and_hashes_them_the_same(temperature, kind):
    """A twin query page: its devices' attributes and its states' documents are `PlainJson`
    when every float on the page is plain; either way the hashes are the earlier formula's."""
    from sync_pipelines import json_limits
    from sync_pipelines.providers.azure_iot import _listed_state, _normalise

    twin = {
        "deviceId": "d1",
        "etag": "AAAA",
        "status": "enabled",
        "connectionState": "Connected",
        "tags": {"site": {"floor": 2}},
        "capabilities": {"iotEdge": False},
        "properties": {
            "reported": {"temp": temperature, "$version": 3, "$metadata": {"x": 1}},
            "desired": {"interval_s": 60, "$version": 2},
        },
    }
    body = json.dumps([twin]).encode()
    items, plain = json_limits.decode_noting_floats(body)
    document_type = PlainJson if plain else dict
    (device,), _ = _normalise(items, document_type)
    state = _listed_state(items[0], None, document_type)
    assert type(device.attributes) is kind
    assert type(state.reported) is kind and type(state.desired) is kind
    row = device_row(
        device,
        organization_id="o",
        integration_id="i",
        run_id=None,
        request_id=None,
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert row["content_hash"] == _legacy_hash(device)
    assert _state_columns(state)["content_hash"] == _legacy_state_hash(state)
    assert json.loads(_state_columns(state)["reported"]) == {"temp": temperature}
