"""Freshness, failure streak and inventory volume, judged on real sync-log rows."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sync_pipelines.checks.inventory_volume import inventory_volume_as_expected
from sync_pipelines.checks.outcome import ERROR, WARN
from sync_pipelines.checks.sync_outcomes import (
    failure_streak_below_threshold,
    synced_within_freshness_sla,
)
from sync_pipelines_tests.checks.check_support import NOW, add_sync, judge, save


def test_a_sync_within_the_sla_is_fresh(store, integ):
    add_sync(store, integ, NOW - timedelta(minutes=10), "success")  # SLA: 3 × 300 s
    outcome = judge(store, integ, synced_within_freshness_sla)
    assert outcome.passed
    assert outcome.metadata["age_s"] == pytest.approx(595) and outcome.metadata["sla_s"] == 900


def test_a_last_good_sync_older_than_the_sla_is_an_error(store, integ):
    add_sync(store, integ, NOW - timedelta(hours=2), "success")
    add_sync(store, integ, NOW - timedelta(minutes=5), "failed")  # a failure does not refresh
    outcome = judge(store, integ, synced_within_freshness_sla)
    assert (outcome.passed, outcome.severity) == (False, ERROR)
    assert outcome.metadata["age_s"] == pytest.approx(7195)


def test_the_freshness_sla_setting_overrides_three_poll_intervals(store):
    relaxed = save(store, "golioth-daily", monitoring={"freshness_sla_s": 86400})
    add_sync(store, relaxed, NOW - timedelta(hours=2), "success")
    outcome = judge(store, relaxed, synced_within_freshness_sla)
    assert outcome.passed and outcome.metadata["sla_s"] == 86400


def test_a_new_integration_has_one_sla_for_its_first_sync(store):
    new = save(store, "golioth-new", created_ago=timedelta(minutes=5))
    old = save(store, "golioth-never-synced", created_ago=timedelta(hours=1))
    assert judge(store, new, synced_within_freshness_sla).passed
    late = judge(store, old, synced_within_freshness_sla)
    assert (late.passed, late.severity) == (False, ERROR)
    assert late.metadata["since_created_s"] == pytest.approx(3600)


@pytest.mark.parametrize(
    ("failures", "passed", "severity"),
    [(1, True, WARN), (2, False, WARN), (3, False, ERROR)],
    ids=["1-passes", "2-warns", "3-errors"],
)
def test_failure_streak_is_graded_by_the_warn_and_critical_thresholds(
    store, integ, failures, passed, severity
):
    add_sync(store, integ, NOW - timedelta(hours=1), "success")
    for k in range(failures):
        add_sync(store, integ, NOW - timedelta(minutes=30 - k), "failed")
    outcome = judge(store, integ, failure_streak_below_threshold)
    assert (outcome.passed, outcome.severity) == (passed, severity)
    assert outcome.metadata["streak"] == failures
    if not passed:
        assert "401 from provider" in outcome.description


def test_a_good_sync_ends_the_streak(store, integ):
    for k in range(3):
        add_sync(store, integ, NOW - timedelta(minutes=30 - k), "failed")
    add_sync(store, integ, NOW - timedelta(minutes=5), "partial")
    outcome = judge(store, integ, failure_streak_below_threshold)
    assert outcome.passed and outcome.metadata["streak"] == 0


def _inventories(store, integ, *fetched: int, status: str = "success") -> None:
    """Full inventory syncs, oldest first, an hour apart, ending 10 minutes before NOW."""
    for k, n in enumerate(fetched):
        at = NOW - timedelta(minutes=10) - timedelta(hours=len(fetched) - 1 - k)
        add_sync(store, integ, at, status if k == len(fetched) - 1 else "success", fetched=n)


def test_a_steady_inventory_passes(store, integ):
    _inventories(store, integ, 5000, 4990, 5012)
    outcome = judge(store, integ, inventory_volume_as_expected)
    assert outcome.passed
    assert (outcome.metadata["fetched"], outcome.metadata["previous_fetched"]) == (5012, 4990)


@pytest.mark.parametrize("fetched", [0, 2000], ids=["empty", "dropped-to-40%"])
def test_an_inventory_far_below_the_previous_good_one_is_an_error(store, integ, fetched):
    _inventories(store, integ, 5000, fetched)
    outcome = judge(store, integ, inventory_volume_as_expected)
    assert (outcome.passed, outcome.severity) == (False, ERROR)
    assert outcome.metadata["ratio"] == pytest.approx(fetched / 5000)
    assert outcome.metadata["drop_ratio"] == 0.5


def test_failed_and_resumed_inventories_are_not_judged_on_volume(store, integ):
    _inventories(store, integ, 5000, 12, status="failed")
    assert judge(store, integ, inventory_volume_as_expected).passed
    add_sync(
        store, integ, NOW - timedelta(minutes=1), "success", fetched=700, cursor_before={"page": 43}
    )
    resumed = judge(store, integ, inventory_volume_as_expected)
    assert resumed.passed and "resumed" in resumed.description


def test_a_device_states_sync_is_not_an_inventory(store, integ):
    _inventories(store, integ, 5000)
    add_sync(store, integ, NOW - timedelta(minutes=1), "success", fetched=0, stream="device_states")
    assert judge(store, integ, inventory_volume_as_expected).metadata["fetched"] == 5000
