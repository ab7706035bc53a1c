"""A set of device ids at 8 bytes each, for a pass over millions of devices in flat memory."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np


class SeenIds:
    """A set of device ids in 8 bytes each (a 64-bit digest, sorted numpy arrays): a million
    devices take 8 MB where a Python set of their ids would take over 100."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._sorted: np.ndarray | None = None

    def add(self, ids: Iterable[str]) -> None:
        self._add_chunk(np.fromiter((_digest64(i) for i in ids), dtype=np.uint64))

    def add_digests(self, packed: bytes) -> None:
        """Add ids packed by `pack_digests` (read back from the store)."""
        self._add_chunk(np.frombuffer(packed, dtype="<u8").astype(np.uint64))

    def _add_chunk(self, chunk: np.ndarray) -> None:
        if chunk.size:
            self._chunks.append(chunk)
            self._sorted = None

    def __len__(self) -> int:
        return sum(c.size for c in self._chunks)

    def missing(self, ids: Sequence[str]) -> list[str]:
        """Those of `ids` not added (a 64-bit digest collision could hide one: about 1 in 10^7
        for a million devices)."""
        if not self._chunks:
            return list(ids)
        if self._sorted is None:
            self._sorted = np.unique(np.concatenate(self._chunks))
            self._chunks = [self._sorted]
        wanted = np.fromiter((_digest64(i) for i in ids), dtype=np.uint64, count=len(ids))
        positions = np.searchsorted(self._sorted, wanted).clip(max=self._sorted.size - 1)
        found = self._sorted[positions] == wanted
        return [i for i, hit in zip(ids, found, strict=True) if not hit]


def pack_digests(ids: Iterable[str]) -> bytes:
    """The ids' digests as bytes (8 a device, little-endian): how a scan stores what it saw."""
    return np.fromiter((_digest64(i) for i in ids), dtype="<u8").tobytes()


def _digest64(external_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(external_id.encode(), digest_size=8).digest(), "big")
