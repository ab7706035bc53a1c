"""Latency histograms: the bucket rule, and percentiles read back from them (the hourly roll-up of
provider calls, store/call_hours.py). numpy, so only the long reports import it.

Buckets grow ×1.1: bucket 0 holds (0, 1] ms, bucket i ≥ 1 holds (1.1^(i-1), 1.1^i] ms, the last
one everything above (1.1^199 ms is 47 h). A percentile read back as its bucket's geometric middle
is within ±5 % of the exact value — the price of keeping an hour of calls in a few dozen numbers.
"""

from __future__ import annotations

import math

import numpy as np

LATENCY_GROWTH = 1.1
LATENCY_BUCKETS = 200
#: the value a percentile falling in each bucket is read back as
_BUCKET_VALUES = np.array([0.5] + [LATENCY_GROWTH ** (i - 0.5) for i in range(1, LATENCY_BUCKETS)])


def latency_bucket(ms: float) -> int:
    """The bucket of one latency (the same rule as the SQL in store/call_hours.py)."""
    if ms <= 1:
        return 0
    return min(LATENCY_BUCKETS - 1, math.ceil(math.log(ms) / math.log(LATENCY_GROWTH)))


def histogram_percentiles(histograms: np.ndarray, q: float) -> np.ndarray:
    """Nearest-rank percentile (q in 0..100) of each histogram (the last axis: counts per
    bucket), as the geometric middle of the bucket holding that rank; NaN where one is empty."""
    cumulative = np.cumsum(histograms, axis=-1)
    totals = cumulative[..., -1]
    ranks = np.maximum(1, np.ceil(q / 100 * totals))
    found = np.argmax(cumulative >= ranks[..., None], axis=-1)
    return np.where(totals > 0, _BUCKET_VALUES[found], np.nan)


def histogram_percentile(buckets: dict[int, int], q: float) -> float | None:
    """`histogram_percentiles` of one sparse histogram (bucket → count); None when empty."""
    dense = np.zeros(LATENCY_BUCKETS, dtype=np.int64)
    for index, count in buckets.items():
        dense[index] += count
    value = float(histogram_percentiles(dense, q))
    return None if math.isnan(value) else value
