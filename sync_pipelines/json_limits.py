"""How deep and how large a JSON document from outside may be — one limit for the webhook
receiver (at receipt) and the inbox processor (when it reads a stored event back), so a document
one side accepts, the other can always read.

Why a depth limit: Python's JSON decoder and encoder recurse once per nesting level, so a
document a few hundred levels deep raises RecursionError wherever the stack is already deep (a
Dagster run). No device payload needs more than a handful of levels.
"""

from __future__ import annotations

import json
from typing import Any

#: nesting levels (objects and arrays) a document may have
MAX_JSON_DEPTH = 64
#: a webhook body's size limit unless the integration sets `webhook_max_body_bytes`
DEFAULT_MAX_BODY_BYTES = 1 << 20


class JsonLimitError(ValueError):
    """A document beyond a limit, or that cannot be read back at all; the message says which."""


def depth_problem(value: Any, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """What is wrong with `value`'s nesting (None: within `max_depth`). Iterative: a document
    deep enough to matter must not blow the stack of the check meant to catch it."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return f"nested deeper than {max_depth} levels"
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return None


def load_within_limits(text: str | bytes, *, max_bytes: int | None = None) -> Any:
    """Decode a stored document, refusing what the receiver would have refused
    (JsonLimitError)."""
    size = len(text.encode() if isinstance(text, str) else text)
    if max_bytes is not None and size > max_bytes:
        raise JsonLimitError(f"{size} bytes, over the limit of {max_bytes}")
    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonLimitError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise JsonLimitError(f"not valid JSON: {str(exc)[:200]}") from None
    problem = depth_problem(value)
    if problem:
        raise JsonLimitError(problem)
    return value
