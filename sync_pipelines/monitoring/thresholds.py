"""Monitoring thresholds: the seeds' defaults, overridable per integration.

Defaults (seeds 002/003): error rate > 5 % over 5 min warns, > 10 % is critical; provider API
failures > 10 %; p95 latency > 2 s warns, > 5 s is critical; webhook processing delay > 10 min;
inbox backlog > 500 warns, > 1000 is critical. An integration overrides any of them under its
`monitoring` setting, e.g. `{"monitoring": {"error_rate_warn": 0.02, "freshness_sla_s": 900}}`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

MONITORING_SETTING = "monitoring"


@dataclass(frozen=True, slots=True)
class Thresholds:
    #: the window error rates are measured over, and the trend's window length
    window_s: int = 300
    error_rate_warn: float = 0.05
    error_rate_critical: float = 0.10
    #: provider-side failures (5xx, 429, timeouts, connection errors) among the window's calls
    provider_failure_rate: float = 0.10
    #: calls a window needs before its error rate counts (1 failure in 3 calls is not an incident)
    min_calls: int = 20
    #: consecutive failed syncs
    failure_streak_warn: int = 2
    failure_streak_critical: int = 3
    p95_latency_warn_ms: float = 2000.0
    p95_latency_critical_ms: float = 5000.0
    #: open (pending + retrying) dead letters
    dead_letters_warn: int = 1
    dead_letters_critical: int = 100
    inbox_backlog_warn: int = 500
    inbox_backlog_critical: int = 1000
    processing_delay_warn_s: float = 600.0
    #: last successful sync no older than this; None means 3 poll intervals
    freshness_sla_s: float | None = None
    #: trend: trailing windows compared against, the test's significance, and the absolute
    #: worsening below which nothing is flagged however significant
    trend_windows: int = 6
    trend_z: float = 3.0
    trend_min_increase: float = 0.05
    #: expected volume: a sync fetching less than this share of the previous good inventory
    volume_drop_ratio: float = 0.5
    #: a `running` sync row older than this is a sync that died without finishing
    stale_running_s: float = 3600.0

    def freshness_sla_for(self, poll_interval_s: int) -> float:
        return self.freshness_sla_s if self.freshness_sla_s is not None else 3.0 * poll_interval_s

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> Thresholds:
        """The defaults with the integration's `monitoring` overrides; a ValueError names an
        unknown or non-numeric key."""
        overrides = (settings or {}).get(MONITORING_SETTING) or {}
        if isinstance(overrides, str):  # stored as text before settings were typed
            try:
                overrides = json.loads(overrides)
            except ValueError:
                raise ValueError(f"setting {MONITORING_SETTING!r} is not a JSON object") from None
        if not isinstance(overrides, Mapping):
            raise ValueError(
                f"setting {MONITORING_SETTING!r} must be an object, got {type(overrides).__name__}"
            )
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in known:
                raise ValueError(
                    f"unknown monitoring threshold {key!r}; known: {', '.join(sorted(known))}"
                )
            if value is None and key == "freshness_sla_s":
                values[key] = None
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(
                    f"monitoring threshold {key!r} must be a non-negative number, got {value!r}"
                )
            values[key] = int(value) if known[key].type == "int" else float(value)
        return replace(cls(), **values)
