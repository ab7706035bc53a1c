"""The shape of JSON documents: every nested key path and the JSON types found there, the union
over the documents observed, and the differences between two shapes. Pure: no store, no sync.

Paths: the root's name, then `.key` per object level (a key that is not a plain name — one with
`.`, `[`, `]` or `"` in it, or empty — is written `["a.b"]`) and `[]` for an array's elements:
`attributes.metadata.status`, `reported.readings[].value`.

Types are JSON's: object, array, string, number, boolean, null. Integers and floats are one
type, `number`: JSON does not tell them apart, and a reading that is 20 on one device and 20.5 on
another (or `20.0` after a firmware update) has not changed shape. `null` is recorded but a
path's types gaining or losing only `null` is not a change (see `compare`); a missing document
(a device that has reported nothing) has no shape at all. A value that is not JSON
(a datetime a provider kept) counts as `string`, as the store writes it.

Bounded, so an odd document cannot make the sync slow or the shape huge: objects are followed
`MAX_DEPTH` levels deep (below, a value is recorded by its type only); an array's first
`ARRAY_SAMPLE` elements are looked at; a shape holds at most `MAX_PATHS` paths — past that it
is `truncated` and judged like an incomplete scan (additions only, never removals).

Cheap: the sync observes every device (~25,000 a second). An object is known by its signature —
(path, its keys in order, their Python types) — and a signature seen before adds nothing new, so
only its nested objects and arrays are walked again. A fleet's documents share a handful of
signatures, so almost every observed object is one tuple build and one dict lookup.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

OBJECT, ARRAY, STRING, NUMBER, BOOLEAN, NULL = (
    "object",
    "array",
    "string",
    "number",
    "boolean",
    "null",
)
#: how deep objects and arrays are followed
MAX_DEPTH = 8
#: how many elements of an array are looked at
ARRAY_SAMPLE = 8
#: the most paths one shape holds
MAX_PATHS = 1000
#: distinct object signatures remembered (past this, objects are walked each time: still right)
MAX_SIGNATURES = 20_000

_TYPES: dict[type, str] = {
    dict: OBJECT,
    list: ARRAY,
    tuple: ARRAY,
    str: STRING,
    int: NUMBER,
    float: NUMBER,
    bool: BOOLEAN,
    type(None): NULL,
}
_PLAIN_KEY = re.compile(r"[^.\[\]\"]+")

_NULL = frozenset({NULL})

#: a shape: path -> the JSON types seen there
Shape = dict[str, frozenset[str]]


def type_of(value: Any) -> str:
    """The JSON type of a decoded value (`bool` before `int`: True is an int to Python)."""
    found = _TYPES.get(type(value))
    if found is not None:
        return found
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, Mapping):
        return OBJECT
    if isinstance(value, list | tuple):
        return ARRAY
    if isinstance(value, int | float):
        return NUMBER
    return STRING


def child_path(parent: str, key: Any) -> str:
    key = str(key)
    if _PLAIN_KEY.fullmatch(key):
        return f"{parent}.{key}"
    return f"{parent}[{json.dumps(key)}]"


class ShapeObserver:
    """The union of the shapes of the documents `observe`d, per root (`attributes`,
    `reported`, `desired`)."""

    def __init__(self) -> None:
        self._paths: dict[str, set[str]] = {}
        #: roots already recorded as objects
        self._roots: set[str] = set()
        #: object signatures already merged -> their object/array values (key, path, object?)
        self._signatures: dict[tuple[Any, ...], tuple[tuple[Any, str, bool], ...]] = {}
        #: documents observed (each root counts once)
        self.documents = 0
        #: a path was left out: the shape reached MAX_PATHS
        self.truncated = False

    def observe(self, root: str, document: Any) -> None:
        """Add one document's shape under `root`. A missing document (None: a device that has
        reported nothing) adds nothing: it has no shape, and a new device without one is not a
        change."""
        self.documents += 1
        if document is None:
            return
        if isinstance(document, dict):
            if root not in self._roots:
                self._roots.add(root)
                self._add(root, OBJECT)
            self._object(root, document, 1)
        else:
            self._value(root, document, 1)

    def observe_all(self, root: str, documents: Iterable[Any]) -> None:
        for document in documents:
            self.observe(root, document)

    @property
    def shape(self) -> Shape:
        return {path: frozenset(types) for path, types in self._paths.items()}

    def _add(self, path: str, kind: str) -> None:
        types = self._paths.get(path)
        if types is None:
            if len(self._paths) >= MAX_PATHS:
                self.truncated = True
                return
            self._paths[path] = {kind}
        else:
            types.add(kind)

    def _object(self, prefix: str, document: Mapping[str, Any], depth: int) -> None:
        """The object and the objects nested in it. Recursive — at most MAX_DEPTH calls deep —
        which in CPython 3.11 costs less than a stack of tuples (bench/inventory_cpu.py)."""
        # the path, the keys in order, their values' Python types, in one flat tuple: n keys
        # and n types after the path, so two signatures are equal only if all three are
        signature = (prefix, *document, *map(type, document.values()))
        nested = self._signatures.get(signature)
        if nested is None:
            nested = self._merge(prefix, document)
            if len(self._signatures) < MAX_SIGNATURES:
                self._signatures[signature] = nested
        if nested and depth < MAX_DEPTH:
            depth += 1
            for key, path, is_object in nested:
                if is_object:
                    self._object(path, document[key], depth)
                else:
                    self._array(path, document[key], depth)

    def _merge(self, prefix: str, document: Mapping[str, Any]) -> tuple[tuple[Any, str, bool], ...]:
        """A signature not seen before: its keys' types; its containers (key, path, object?)."""
        nested = []
        for key, value in document.items():
            name = _TYPES.get(type(value)) or type_of(value)
            path = child_path(prefix, key)
            self._add(path, name)
            if name in (OBJECT, ARRAY):
                nested.append((key, path, name == OBJECT))
        return tuple(nested)

    def _array(self, prefix: str, values: Any, depth: int) -> None:
        path = f"{prefix}[]"
        for value in islice(values, ARRAY_SAMPLE):
            self._value(path, value, depth)

    def _value(self, path: str, value: Any, depth: int) -> None:
        kind = type_of(value)
        self._add(path, kind)
        if depth >= MAX_DEPTH:
            return
        if kind == OBJECT:
            self._object(path, value, depth + 1)  # an object in an array, or a root
        elif kind == ARRAY:
            self._array(path, value, depth + 1)


@dataclass(frozen=True, slots=True)
class ShapeDiff:
    """What changed between a baseline and what a sync saw: paths added and removed (with their
    types) and paths whose types changed (before, after)."""

    added: dict[str, list[str]] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)
    changed: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    @property
    def count(self) -> int:
        return len(self.added) + len(self.removed) + len(self.changed)

    def lines(self) -> list[str]:
        """One line per difference: `+ path (types)`, `- path (types)`, `~ path: a → b`."""
        return (
            [f"+ {p} ({'|'.join(t)})" for p, t in self.added.items()]
            + [f"- {p} ({'|'.join(t)})" for p, t in self.removed.items()]
            + [f"~ {p}: {'|'.join(b)} → {'|'.join(a)}" for p, (b, a) in self.changed.items()]
        )

    def summary(self, limit: int = 6) -> str:
        lines = self.lines()
        more = f" … and {len(lines) - limit} more" if len(lines) > limit else ""
        return "; ".join(lines[:limit]) + more

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": {p: {"before": b, "after": a} for p, (b, a) in self.changed.items()},
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> ShapeDiff:
        if not value:
            return cls()
        return cls(
            dict(value.get("added") or {}),
            dict(value.get("removed") or {}),
            {
                p: (list(c["before"]), list(c["after"]))
                for p, c in (value.get("changed") or {}).items()
            },
        )


def compare(baseline: Shape, seen: Shape, *, complete: bool) -> tuple[ShapeDiff, Shape]:
    """The differences and the new baseline. `null` alone is no type change: a key that is null
    on some devices and a string on others is a string that may be missing, and whether any
    device has it null right now is not a change of shape (the baseline still records it).

    `complete`: `seen` is the union over every device of the stream (a whole, clean scan): paths
    the baseline has and it lacks are removed, and it becomes the baseline. Otherwise it covers
    only some devices (an incremental poll, a webhook, a scan that failed or skipped records):
    only what is new is judged — paths added, types added to a path — and the baseline keeps
    everything it had, with those additions."""
    added = {p: sorted(t) for p, t in seen.items() if p not in baseline}
    if complete:
        removed = {p: sorted(t) for p, t in baseline.items() if p not in seen}
        changed = {
            p: (sorted(baseline[p]), sorted(t))
            for p, t in seen.items()
            if p in baseline and baseline[p] - _NULL != t - _NULL
        }
        new = dict(seen)
    else:
        removed = {}
        changed = {
            p: (sorted(baseline[p]), sorted(baseline[p] | t))
            for p, t in seen.items()
            if p in baseline and not t - _NULL <= baseline[p] - _NULL
        }
        new = {**baseline, **{p: baseline.get(p, frozenset()) | t for p, t in seen.items()}}
    return ShapeDiff(
        dict(sorted(added.items())), dict(sorted(removed.items())), dict(sorted(changed.items()))
    ), new


def shape_to_json(shape: Shape) -> dict[str, list[str]]:
    return {p: sorted(t) for p, t in sorted(shape.items())}


def shape_from_json(value: Mapping[str, Any] | None) -> Shape:
    return {p: frozenset(t) for p, t in (value or {}).items()}
