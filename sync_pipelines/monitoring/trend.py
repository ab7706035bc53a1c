"""Error-rate trend: is the current window significantly worse than the trailing ones?

A one-sided two-proportion z-test of the current window's failures against the pooled trailing
windows, flagged only when (a) both sides have enough calls, (b) z exceeds the threshold and
(c) the rate rose by at least an absolute floor. (c) keeps a large, quiet integration from
paging on 0.1 % -> 0.3 %; (a) keeps 1 failure in 3 calls from paging on anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sync_pipelines.monitoring.integration_stats import CallWindow


@dataclass(frozen=True, slots=True)
class Trend:
    current_rate: float | None
    baseline_rate: float | None
    current_calls: int
    baseline_calls: int
    #: z statistic of (current - baseline); None without enough calls on either side
    z: float | None
    #: True when the worsening is significant and at least the absolute floor
    worsening: bool
    #: "up" / "down" / "flat" / "unknown": the arrow a report shows
    direction: str

    @property
    def delta(self) -> float | None:
        if self.current_rate is None or self.baseline_rate is None:
            return None
        return self.current_rate - self.baseline_rate


def two_proportion_z(failed_a: int, n_a: int, failed_b: int, n_b: int) -> float | None:
    """z of p_a - p_b with the pooled standard error; None when undefined."""
    if n_a == 0 or n_b == 0:
        return None
    pooled = (failed_a + failed_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return 0.0
    return (failed_a / n_a - failed_b / n_b) / se


def error_rate_trend(
    windows: Sequence[CallWindow],
    *,
    min_calls: int = 20,
    z_threshold: float = 3.0,
    min_increase: float = 0.05,
) -> Trend:
    """`windows` oldest first; the last is the current window, the rest the baseline."""
    if not windows:
        return Trend(None, None, 0, 0, None, False, "unknown")
    current, trailing = windows[-1], windows[:-1]
    base_calls = sum(w.calls for w in trailing)
    base_failed = sum(w.failed for w in trailing)
    base_rate = base_failed / base_calls if base_calls else None
    enough = current.calls >= min_calls and base_calls >= min_calls
    z = two_proportion_z(current.failed, current.calls, base_failed, base_calls) if enough else None
    delta = (current.failure_rate - base_rate) if enough and base_rate is not None else None
    worsening = bool(
        z is not None and z >= z_threshold and delta is not None and delta >= min_increase
    )
    if z is None:
        direction = "unknown"
    elif worsening:
        direction = "up"
    elif z <= -z_threshold and delta is not None and -delta >= min_increase:
        direction = "down"
    else:
        direction = "flat"
    return Trend(
        current_rate=current.failure_rate,
        baseline_rate=base_rate,
        current_calls=current.calls,
        baseline_calls=base_calls,
        z=z,
        worsening=worsening,
        direction=direction,
    )
