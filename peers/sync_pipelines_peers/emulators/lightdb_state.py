"""LightDB State for the Golioth emulator: generated trees plus an overlay of the devices whose
state was written, read by path and written with Golioth's deep merge."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping
from typing import Any

from sync_pipelines_peers.emulators.golioth_errors import RpcError

JsonDict = dict[str, Any]


def parse_state_path(raw: str) -> tuple[str, ...]:
    """`/env/temp/value` -> ("env", "temp", "value"); "" or "/" is the whole tree."""
    return tuple(part for part in raw.split("/") if part)


def _subtree(tree: Any, path: tuple[str, ...]) -> Any:
    node = tree
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _deep_merge(base: JsonDict, overlay: Mapping[str, Any]) -> JsonDict:
    """`overlay` written onto a copy of `base`: objects merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in overlay.items():
        existing = merged.get(key)
        if isinstance(value, Mapping) and isinstance(existing, dict):
            merged[key] = _deep_merge(existing, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class LightDbState:
    """LightDB State for every device: generated on read, stored only once written."""

    def __init__(self) -> None:
        self._written: dict[int, JsonDict] = {}
        #: devices with no state at all (never reported): read as null, left out of listings
        self._absent: set[int] = set()
        self._lock = threading.Lock()

    @property
    def written_count(self) -> int:
        return len(self._written)

    def read(self, index: int, generate: Callable[[], JsonDict], path: tuple[str, ...]) -> Any:
        with self._lock:
            if index in self._absent:
                return None
            tree = self._written.get(index)
            if tree is not None:
                return copy.deepcopy(_subtree(tree, path))
        return _subtree(generate(), path)

    def erase(self, index: int) -> None:
        """The device has no state at all, as one that never reported (until it is written)."""
        with self._lock:
            self._written.pop(index, None)
            self._absent.add(index)

    def write(
        self, index: int, generate: Callable[[], JsonDict], path: tuple[str, ...], value: Any
    ) -> Any:
        """Deep-merge an object (or set a scalar) at `path`; returns the subtree after."""
        if not path and not isinstance(value, dict):
            raise RpcError(400, "only a JSON object can be written at the root of LightDB State")
        with self._lock:
            tree = self._written.get(index)
            if tree is None:
                tree = generate()
                self._written[index] = tree
            if not path:
                self._written[index] = _deep_merge(tree, value)
                return copy.deepcopy(self._written[index])
            parent = tree
            for part in path[:-1]:
                child = parent.get(part)
                if not isinstance(child, dict):
                    child = {}
                    parent[part] = child
                parent = child
            leaf = path[-1]
            existing = parent.get(leaf)
            if isinstance(value, dict) and isinstance(existing, dict):
                parent[leaf] = _deep_merge(existing, value)
            else:
                parent[leaf] = copy.deepcopy(value)
            return copy.deepcopy(parent[leaf])

    def delete(self, index: int, generate: Callable[[], JsonDict], path: tuple[str, ...]) -> None:
        with self._lock:
            tree = self._written.get(index)
            if tree is None:
                tree = generate()
            if not path:
                self._written[index] = {}
                return
            parent = _subtree(tree, path[:-1])
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
            self._written[index] = tree

    def forget(self, index: int) -> None:
        with self._lock:
            self._written.pop(index, None)
            self._absent.discard(index)

    def clear(self) -> None:
        with self._lock:
            self._written.clear()
            self._absent.clear()
