"""Statistics shared by every layer that reports figures."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None when there are no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


#: Latency histogram buckets grow ×1.1: bucket 0 holds (0, 1] ms, bucket i ≥ 1 holds
#: (1.1^(i-1), 1.1^i] ms. A percentile read back as its bucket's geometric middle is within ±5 %
#: of the exact value — the price of keeping an hour of calls in a few dozen numbers.
LATENCY_GROWTH = 1.1


def latency_bucket(ms: float) -> int:
    """The histogram bucket of one latency (same rule as the SQL in store/call_hours.py)."""
    return 0 if ms <= 1 else math.ceil(math.log(ms) / math.log(LATENCY_GROWTH))


def histogram_percentile(buckets: dict[int, int], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of a latency histogram (bucket → count), as the
    geometric middle of the bucket holding that rank; None when it is empty."""
    total = sum(buckets.values())
    if not total:
        return None
    rank = max(1, math.ceil(q / 100 * total))
    seen = 0
    for index in sorted(buckets):
        seen += buckets[index]
        if seen >= rank:
            return 0.5 if index == 0 else LATENCY_GROWTH ** (index - 0.5)
    raise AssertionError("unreachable: the ranks add up to the total")
