"""The JSON limits the receiver refuses at and the inbox processor reads back with."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_pipelines.json_limits import (
    DEFAULT_MAX_BODY_BYTES,
    MAX_BODY_ENV,
    MAX_JSON_DEPTH,
    JsonLimitError,
    body_limit,
    canonical_size,
    decode,
    decode_noting_floats,
    depth_problem,
    load_within_limits,
)
from sync_pipelines.store.database import dump_json
from sync_pipelines.webhooks.events import _EXPONENT, parse_json


def _objects(depth: int) -> str:
    return '{"n":' * (depth - 1) + '{"leaf":[]}' + "}" * (depth - 1)


def _arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("make", [_objects, _arrays], ids=["objects", "arrays"])
def test_the_limit_is_inclusive_and_counts_every_object_and_array(make):
    # _objects(d) ends in an empty list: d objects, then one more level
    depth = MAX_JSON_DEPTH - 1 if make is _objects else MAX_JSON_DEPTH
    assert depth_problem(json.loads(make(depth))) is None
    assert load_within_limits(make(depth)) == json.loads(make(depth))
    assert (
        depth_problem(json.loads(make(depth + 1))) == f"nested deeper than {MAX_JSON_DEPTH} levels"
    )
    with pytest.raises(JsonLimitError, match=f"nested deeper than {MAX_JSON_DEPTH} levels"):
        load_within_limits(make(depth + 1))


def test_a_document_deeper_than_the_decoder_can_recurse_is_refused_not_raised():
    with pytest.raises(JsonLimitError, match="nested deeper than"):
        load_within_limits(_arrays(100_000))
    # and the depth check itself never recurses (a document built without the decoder)
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert depth_problem(deep) == f"nested deeper than {MAX_JSON_DEPTH} levels"


def test_scalars_and_wide_documents_are_within_the_limit():
    assert depth_problem(7) is None and depth_problem("x") is None
    assert depth_problem({str(i): [i, {"v": i}] for i in range(10_000)}) is None


def test_size_and_syntax_are_refused_naming_the_problem():
    # the canonical size of {"a": "bc"} is that of {"a":"bc"}: 10 bytes
    with pytest.raises(JsonLimitError, match="10 bytes as canonical JSON, over the limit of 9"):
        load_within_limits('{"a": "bc"}', max_bytes=9)
    assert load_within_limits(b'{"a": "bc"}', max_bytes=10) == {"a": "bc"}
    with pytest.raises(JsonLimitError, match="not valid JSON"):
        load_within_limits('{"a": ')


# -- size: one measure at receipt and at processing ----------------------------------------------


@pytest.mark.parametrize(
    ("body", "written"),
    [
        ('{ "a" : 1 ,\n "b": [true, null] }', '{"a":1,"b":[true,null]}'),
        ('"\\u00e9\\u0041\\/"', '"éA/"'),  # escapes a sender chose: only required ones count
        ('"\\u001f\\n"', '"\\u001f\\n"'),  # required escapes count as written
        ('{"a": 1, "a": 2}', '{"a":2}'),  # a duplicate key: the last one is kept
        ("[1e16, 1.5E-7, 1E2, -0.0]", "[10000000000000000,0.00000015,100.0,0.0]"),
        ("1e300", "1" + "0" * 300),
    ],
)
def test_the_canonical_size_is_compact_utf8_with_numbers_written_out(body, written):
    assert canonical_size(json.loads(body)) == len(written.encode())


def test_the_limit_is_the_setting_else_the_deployments_else_the_default():
    assert body_limit(500, {MAX_BODY_ENV: "2000"}) == 500
    assert body_limit(None, {MAX_BODY_ENV: "2000"}) == 2000
    assert body_limit(None, {}) == DEFAULT_MAX_BODY_BYTES


#: what both stores hold: no NUL, no unpaired surrogate (the receiver refuses both)
_strings = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _strings
)
_documents = st.recursive(
    _leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(_strings, children, max_size=4)
    ),
    max_leaves=20,
)
#: how a sender may write a document: spacing, indentation, ASCII escapes or raw UTF-8
_writers = st.fixed_dictionaries(
    {
        "ensure_ascii": st.booleans(),
        "indent": st.none() | st.integers(0, 3),
        "separators": st.sampled_from([(",", ":"), (", ", ": "), (" , ", " : ")]),
    }
)


@pytest.fixture
def read_back(store):
    """What the store gives back for a document the receiver stored (payload is JSONB on
    PostgreSQL, TEXT on SQLite; the inbox reads it as text)."""
    stored = "CAST(:p AS JSONB)" if store.engine.dialect.name == "postgresql" else ":p"

    def read(value):
        with store.connect() as conn:
            text = conn.execute(sa.text(f"SELECT CAST({stored} AS TEXT)"), {"p": dump_json(value)})
            return json.loads(text.scalar_one())

    return read


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=_documents.filter(lambda d: d is not None), writer=_writers)
def test_a_document_and_what_either_store_gives_back_have_one_canonical_size(
    read_back, document, writer
):
    body = json.dumps(document, **writer).encode()
    received = parse_json(body)  # what the receiver stores
    size = canonical_size(received)
    assert canonical_size(read_back(received)) == size
    assert parse_json(body, max_bytes=size) == received  # the limit is inclusive


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(document=_documents, writer=_writers)
def test_without_an_exponent_the_canonical_size_is_never_more_than_the_body(document, writer):
    """The receiver skips the canonical-size walk for a body within the limit that writes no
    number with an exponent (webhooks/events.py): that is only sound if this holds."""
    body = json.dumps(document, **writer).encode("utf-8", "surrogatepass")
    if _EXPONENT.search(body.decode("utf-8", "surrogatepass")):
        return
    assert canonical_size(json.loads(body)) <= len(body)


# -- decode: msgspec first, json.loads for what msgspec refuses --------------------------------

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()  # NaN, infinities, exponents: json.dumps writes them, json.loads reads them
    | st.text(),  # lone surrogates and control characters included
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _outcome(decoder, text):
    try:
        return "value", json.dumps(decoder(text), sort_keys=True)  # NaN != NaN: compare text
    except RecursionError:
        return "error", "RecursionError"
    except ValueError as exc:
        return "error", type(exc).__name__


@settings(max_examples=500, deadline=None)
@given(
    value=_json_values,
    ensure_ascii=st.booleans(),
    spaced=st.booleans(),
    as_bytes=st.booleans(),
)
def test_decode_makes_what_json_loads_makes_of_any_document(value, ensure_ascii, spaced, as_bytes):
    text = json.dumps(value, ensure_ascii=ensure_ascii, indent=1 if spaced else None)
    body = text.encode("utf-8", "surrogatepass") if as_bytes else text
    expected = _outcome(json.loads, body)
    assert _outcome(decode, body) == expected


@settings(max_examples=500, deadline=None)
@given(data=st.data())
def test_decode_refuses_what_json_loads_refuses(data):
    """Mangled documents: cut short, a byte changed, bytes inserted — decode fails where
    json.loads fails and reads the same value where it reads one."""
    text = json.dumps(data.draw(_json_values)).encode("utf-8", "surrogatepass")
    at = data.draw(st.integers(min_value=0, max_value=len(text)))
    noise = data.draw(st.binary(min_size=0, max_size=3))
    mangled = data.draw(st.sampled_from([text[:at], text[:at] + noise + text[at + 1 :]]))
    expected = _outcome(json.loads, mangled)
    outcome = _outcome(decode, mangled)
    assert outcome[0] == expected[0]
    if expected[0] == "value":
        assert outcome == expected


@pytest.mark.parametrize(
    ("body", "plain"),
    [
        (b'{"t": 21.5, "n": 3, "s": "1e-9"}', True),
        (b'{"x": 0.0001, "y": -0.0, "z": 9999999999999998.0}', True),
        (b'{"t": 1e-05}', False),
        (b'{"t": 1e16}', False),
        (b'{"t": NaN}', False),  # json.loads's path: nothing is known of its floats
    ],
)
def test_decode_notes_whether_every_float_is_plain(body, plain):
    value, found = decode_noting_floats(body)
    assert found is plain
    assert json.dumps(value) == json.dumps(json.loads(body))
