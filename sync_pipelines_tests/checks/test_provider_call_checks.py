"""Error rate, its trend and p95 latency of provider calls, judged on real activity rows."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from sync_pipelines.checks.outcome import ERROR, WARN
from sync_pipelines.checks.provider_calls import (
    call_failure_rate_below_threshold,
    call_failure_rate_not_trending_up,
    p95_latency_below_threshold,
)
from sync_pipelines_tests.checks.check_support import (
    NOW,
    add_binomial_windows,
    add_calls,
    judge,
    save,
)


@pytest.mark.parametrize(
    ("failed", "passed", "severity"),
    [(2, True, WARN), (7, False, WARN), (15, False, ERROR)],
    ids=["2%-passes", "7%-warns", "15%-errors"],
)
def test_error_rate_is_graded_by_the_warn_and_critical_thresholds(
    store, integ, failed, passed, severity
):
    add_calls(store, integ, NOW, calls=100, failed=failed)
    outcome = judge(store, integ, call_failure_rate_below_threshold)
    assert (outcome.passed, outcome.severity) == (passed, severity)
    assert outcome.metadata["calls"] == 100
    assert outcome.metadata["failed"] == failed
    assert outcome.metadata["call_failure_rate"] == pytest.approx(failed / 100)


def test_calls_before_the_window_do_not_count(store, integ):
    add_calls(store, integ, NOW - timedelta(seconds=600), calls=100, failed=50)
    add_calls(store, integ, NOW, calls=100, failed=0)
    outcome = judge(store, integ, call_failure_rate_below_threshold)
    assert outcome.passed and outcome.metadata["failed"] == 0


def test_the_monitoring_setting_overrides_the_thresholds(store):
    strict = save(store, "golioth-strict", monitoring={"error_rate_warn": 0.01})
    add_calls(store, strict, NOW, calls=100, failed=2)
    outcome = judge(store, strict, call_failure_rate_below_threshold)
    assert (outcome.passed, outcome.severity) == (False, WARN)
    assert outcome.metadata["warn_rate"] == 0.01


def test_one_failure_in_three_calls_fires_neither_the_rate_nor_the_trend(store, integ):
    add_binomial_windows(
        store, integ, NOW - timedelta(seconds=300), [0.0] * 6, calls=200, rng=random.Random(1)
    )
    add_calls(store, integ, NOW, calls=3, failed=1)
    rate = judge(store, integ, call_failure_rate_below_threshold)
    trend = judge(store, integ, call_failure_rate_not_trending_up)
    assert rate.passed and rate.metadata["call_failure_rate"] == pytest.approx(1 / 3)
    assert trend.passed and trend.metadata["z"] is None
    assert trend.metadata["current_calls"] == 3


def test_trend_does_not_fire_on_a_noisy_but_stable_error_rate(store, integ):
    rng = random.Random(20261122)
    add_binomial_windows(store, integ, NOW, [0.04] * 7, calls=200, rng=rng)
    outcome = judge(store, integ, call_failure_rate_not_trending_up)
    assert outcome.passed, outcome.description
    assert outcome.metadata["baseline_calls"] == 1200 and outcome.metadata["current_calls"] == 200
    assert outcome.metadata["z"] is not None and outcome.metadata["z"] < 3.0
    assert outcome.metadata["baseline_rate"] == pytest.approx(0.04, abs=0.015)


def test_trend_fires_on_a_real_regression(store, integ):
    rng = random.Random(20261122)
    add_binomial_windows(store, integ, NOW, [0.02] * 6 + [0.20], calls=200, rng=rng)
    outcome = judge(store, integ, call_failure_rate_not_trending_up)
    assert not outcome.passed
    assert outcome.severity == ERROR  # the current rate is also above the critical 10 %
    assert outcome.metadata["z"] >= 3.0
    assert outcome.metadata["delta"] >= 0.05


@pytest.mark.parametrize(
    ("ms", "passed", "severity"),
    [(150.0, True, WARN), (3000.0, False, WARN), (6000.0, False, ERROR)],
    ids=["fast-passes", "3s-warns", "6s-errors"],
)
def test_p95_latency_is_graded_by_the_warn_and_critical_thresholds(
    store, integ, ms, passed, severity
):
    add_calls(store, integ, NOW, calls=30, ms=ms)
    outcome = judge(store, integ, p95_latency_below_threshold)
    assert (outcome.passed, outcome.severity) == (passed, severity)
    assert outcome.metadata["p95_ms"] == ms and outcome.metadata["calls"] == 30
