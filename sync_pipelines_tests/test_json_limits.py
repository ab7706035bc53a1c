"""The JSON limits the receiver refuses at and the inbox processor reads back with."""

from __future__ import annotations

import json

import pytest

from sync_pipelines.json_limits import (
    MAX_JSON_DEPTH,
    JsonLimitError,
    depth_problem,
    load_within_limits,
)


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
    with pytest.raises(JsonLimitError, match="11 bytes, over the limit of 10"):
        load_within_limits('{"a": "bc"}', max_bytes=10)
    assert load_within_limits(b'{"a": "bc"}', max_bytes=11) == {"a": "bc"}
    with pytest.raises(JsonLimitError, match="not valid JSON"):
        load_within_limits('{"a": ')
