"""How deep and how large a JSON document from outside may be — one limit for the webhook
receiver (at receipt) and the inbox processor (when it reads a stored event back), so a document
one side accepts, the other can always read.

Why a depth limit: Python's JSON decoder and encoder recurse once per nesting level, so a
document a few hundred levels deep raises RecursionError wherever the stack is already deep (a
Dagster run). No device payload needs more than a handful of levels.

How size is measured at both doors: the raw body cannot be measured again at processing — the
receiver stores the parsed document, and PostgreSQL's JSONB gives back its own text (spaces
after `,` and `:`, keys reordered, `1e+16` written out as `10000000000000000`). So the size
that is limited at both doors is the document's *canonical size* (`canonical_size`): compact
JSON, strings in UTF-8 with only the escapes JSON requires, numbers in plain decimal (as JSONB
writes them). A document and what either store gives back for it have the same canonical size,
and a part of a document (one event of an Event Grid batch) is never larger than the whole, so
a delivery the receiver accepted is always within the limit when the processor reads it. The
receiver checks the raw body as it streams (cheap, before parsing) and then the canonical size;
the canonical size is at most the raw size except for numbers a sender wrote with an exponent.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import msgspec

from sync_pipelines.plain_floats import FloatWatch

#: nesting levels (objects and arrays) a document may have
MAX_JSON_DEPTH = 64
#: a webhook body's size limit unless the integration sets `webhook_max_body_bytes`
DEFAULT_MAX_BODY_BYTES = 1 << 20
#: the integration setting that overrides the deployment's limit
MAX_BODY_SETTING = "webhook_max_body_bytes"
#: the deployment's limit (receiver and processor), else DEFAULT_MAX_BODY_BYTES
MAX_BODY_ENV = "SYNC_WEBHOOK_MAX_BODY_BYTES"

_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


class JsonLimitError(ValueError):
    """A document beyond a limit, or that cannot be read back at all; the message says which."""


def depth_problem(value: Any, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """What is wrong with `value`'s nesting (None: within `max_depth`). Iterative, level by
    level: a document deep enough to matter must not blow the stack of the check meant to catch
    it (and a comprehension per container is half the CPU of a stack of (item, depth) pairs)."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            return f"nested deeper than {max_depth} levels"
        below: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            below += [child for child in children if isinstance(child, dict | list)]
        level = below
    return None


def canonical_size(value: Any) -> int:
    """Bytes of `value` as compact JSON in UTF-8 with numbers in plain decimal: the same for a
    document and for what SQLite or PostgreSQL (JSONB) gives back for it (see the module's
    docstring). `value` must be within MAX_JSON_DEPTH (the encoder recurses)."""
    size = len(_compact(value).encode("utf-8", "surrogatepass"))
    # the encoder writes a float as repr() (`1e+16`), JSONB as plain decimal (`10000000000000000`)
    if not isinstance(value, dict | list):
        return size + _number_delta(value)
    stack = [value]
    while stack:
        item = stack.pop()
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append(child)
            elif isinstance(child, float):
                size += _number_delta(child)
    return size


def _number_delta(value: Any) -> int:
    """How much longer a float is as JSONB writes it than as repr(): plain decimal instead of an
    exponent, and no negative zero (0 for anything else)."""
    if not isinstance(value, float) or not math.isfinite(value):
        return 0
    written = repr(value)
    if "e" in written:
        return len(format(Decimal(written), "f")) - len(written)
    return -1 if written == "-0.0" else 0


def size_problem(value: Any, max_bytes: int) -> str | None:
    """What is wrong with `value`'s size (None: its canonical size is within `max_bytes`)."""
    size = canonical_size(value)
    if size > max_bytes:
        return f"{size} bytes as canonical JSON, over the limit of {max_bytes} bytes"
    return None


def body_limit(setting: int | None, environ: Mapping[str, str] | None = None) -> int:
    """The size limit of an integration's webhook documents: its `webhook_max_body_bytes`,
    else $SYNC_WEBHOOK_MAX_BODY_BYTES, else DEFAULT_MAX_BODY_BYTES."""
    if setting:
        return setting
    configured = (os.environ if environ is None else environ).get(MAX_BODY_ENV)
    return int(configured) if configured else DEFAULT_MAX_BODY_BYTES


# msgspec's decoder takes a subset of what `json.loads` takes and makes the same values of it
# (floats correctly rounded both; an out-of-range literal an infinity through the hook) at about
# 0.7x the CPU; what it refuses — NaN and Infinity literals, lone surrogates, a BOM, UTF-16 —
# goes to `json.loads`, so `decode` answers exactly as `json.loads` would
_floats = FloatWatch()
_DECODER = msgspec.json.Decoder(float_hook=_floats.hook)


def decode(text: str | bytes) -> Any:
    """`json.loads` for a document from outside (a provider's answer, an MQTT payload): a
    ValueError for anything it cannot take — JsonLimitError for one nested deeper than
    MAX_JSON_DEPTH — never the RecursionError `json.loads` raises for a deep one, which no
    caller expects."""
    return decode_noting_floats(text)[0]


def decode_noting_floats(text: str | bytes, *, check_depth: bool = True) -> tuple[Any, bool]:
    """`decode`, and whether every float in the document is plain (`plain_floats`: a document
    msgspec's encoder writes as `json.dumps` does, `contract.PlainJson`). `check_depth=False`
    leaves MAX_JSON_DEPTH to a caller that checks only the parts it keeps (the decoders still
    refuse what they cannot recurse into)."""
    _floats.reset()
    try:
        value, plain = _DECODER.decode(text), not _floats.odd
    except (ValueError, RecursionError):  # msgspec.DecodeError; bytes that are not UTF-8
        try:
            value, plain = json.loads(text), False
        except RecursionError:
            raise JsonLimitError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    problem = depth_problem(value) if check_depth else None
    if problem:
        raise JsonLimitError(problem)
    return value, plain


def load_within_limits(text: str | bytes, *, max_bytes: int | None = None) -> Any:
    """Decode a stored document, refusing what the receiver would have refused: too deep, or
    (with `max_bytes`) a canonical size over it (JsonLimitError)."""
    try:
        value = decode(text)
    except JsonLimitError:
        raise
    except ValueError as exc:
        raise JsonLimitError(f"not valid JSON: {str(exc)[:200]}") from None
    problem = size_problem(value, max_bytes) if max_bytes is not None else None
    if problem:
        raise JsonLimitError(problem)
    return value
