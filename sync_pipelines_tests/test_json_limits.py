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
