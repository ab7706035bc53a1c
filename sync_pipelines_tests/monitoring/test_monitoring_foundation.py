"""The figures and classification every monitor shares, on real rows in both stores."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from sync_pipelines.monitoring.health import (
    HEALTHY,
    UNHEALTHY,
    UNKNOWN,
    WARNING,
    integration_health,
)
from sync_pipelines.monitoring.integration_stats import (
    CallWindow,
    call_window,
    call_windows,
    sync_history,
)
from sync_pipelines.monitoring.thresholds import Thresholds
from sync_pipelines.monitoring.trend import error_rate_trend, two_proportion_z
from sync_pipelines.store.activity import insert_activity_rows
from sync_pipelines.store.integrations import Integration, ensure_organization, save_integration
from sync_pipelines_tests.activity_rows import provider_call_row

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ORG, IID = "org-mon", "int-mon"


def _call(at: datetime, status: str, ms: float = 50.0, org: str = ORG, iid: str = IID) -> dict:
    return provider_call_row(org, iid, at, status=status, ms=ms)


def _sync(conn, at: datetime, status: str, fetched: int = 10, stream: str = "devices") -> None:
    conn.execute(
        sa.text(
            "INSERT INTO integration_sync_log (id, organization_id, integration_id, run_id, stream, "
            "status, started_at, completed_at, fetched, created, updated, unchanged, failed, conflicts, "
            "pages, error_type, error_message) VALUES (:id, :o, :i, 'r', :s, :st, :t, :done, :f, 0, 0, 0, "
            "0, 0, 1, :et, :em)"
        ),
        {
            "id": str(uuid.uuid4()),
            "o": ORG,
            "i": IID,
            "s": stream,
            "st": status,
            "t": at,
            "done": None if status == "running" else at + timedelta(seconds=5),
            "f": fetched,
            "et": "auth" if status == "failed" else None,
            "em": "401 from provider" if status == "failed" else None,
        },
    )


@pytest.fixture
def integration(store) -> Integration:
    integration = Integration(
        integration_id=IID, organization_id=ORG, provider="golioth", name="mon", poll_interval_s=300
    )
    with store.transaction() as conn:
        ensure_organization(conn, ORG)
        save_integration(conn, integration)
    return integration


def test_call_window_counts_failed_and_retried_attempts_of_one_tenant(store, integration):
    rows = [_call(NOW - timedelta(seconds=10 + i), "success", ms=float(i)) for i in range(18)]
    rows += [
        _call(NOW - timedelta(seconds=5), "failed"),
        _call(NOW - timedelta(seconds=6), "retrying"),
    ]
    rows += [_call(NOW - timedelta(seconds=5), "failed", org="other-org")]  # another tenant
    rows += [_call(NOW - timedelta(seconds=400), "failed")]  # before the window
    with store.transaction() as conn:
        insert_activity_rows(conn, rows)
        window = call_window(conn, ORG, IID, NOW - timedelta(seconds=300), NOW)
        windows = call_windows(conn, ORG, IID, end=NOW, window_s=300, count=3)
    assert (window.calls, window.failed) == (20, 2)
    assert window.failure_rate == pytest.approx(0.1)
    assert window.p95_latency_ms == 50.0  # nearest rank over 0..17 and two 50 ms failures
    assert [w.calls for w in windows] == [0, 1, 20]
    assert windows[-1].end == NOW


def test_sync_history_streak_counts_a_dead_running_row_as_failed(store, integration):
    with store.transaction() as conn:
        _sync(conn, NOW - timedelta(hours=5), "success", fetched=1000)
        _sync(conn, NOW - timedelta(hours=4), "success", fetched=900)
        _sync(conn, NOW - timedelta(hours=3), "failed")
        _sync(conn, NOW - timedelta(hours=2), "running")  # died: older than the stale limit
        _sync(conn, NOW - timedelta(minutes=1), "running")  # still going: not counted
        history = sync_history(conn, ORG, IID, now=NOW, stale_running_s=3600)
    assert history.failure_streak == 2
    assert history.stale_running == 1
    assert history.last_success_at == NOW - timedelta(hours=4) + timedelta(seconds=5)
    assert history.last_error_type == "stale_running"
    assert history.previous_inventory_fetched == 1000  # the good inventory before the newest one
    assert history.last_inventory_fetched == 900


def test_health_states_from_real_rows(store, integration):
    with store.connect() as conn:
        assert integration_health(conn, integration, now=NOW).state == UNKNOWN
    with store.transaction() as conn:
        _sync(conn, NOW - timedelta(minutes=2), "success")
        insert_activity_rows(
            conn, [_call(NOW - timedelta(seconds=30), "success") for _ in range(30)]
        )
    with store.connect() as conn:
        health = integration_health(conn, integration, now=NOW)
    assert (health.state, health.reasons) == (HEALTHY, [])
    with store.transaction() as conn:
        insert_activity_rows(conn, [_call(NOW - timedelta(seconds=20), "failed") for _ in range(3)])
    with store.connect() as conn:
        health = integration_health(conn, integration, now=NOW)  # 3 / 33 = 9 %: warn, not critical
    # health takes the check's verdict: WARN (above 5 %) is a warning, with the check's words
    assert (health.state, health.reasons) == (
        WARNING,
        ["9.1% of 33 provider calls failed in the last 300 s: above 5.0%"],
    )
    with store.transaction() as conn:
        for minutes in (3, 2, 1):
            _sync(conn, NOW - timedelta(seconds=minutes), "failed")
    with store.connect() as conn:
        health = integration_health(conn, integration, now=NOW)
    assert health.state == UNHEALTHY
    assert health.failure_streak == 3
    assert health.last_error == "auth: 401 from provider"
    assert health.as_json()["state"] == UNHEALTHY


def test_thresholds_overrides_and_bad_values_named():
    t = Thresholds.from_settings({"monitoring": {"error_rate_warn": 0.02, "min_calls": 5}})
    assert (t.error_rate_warn, t.min_calls, t.error_rate_critical) == (0.02, 5, 0.10)
    assert t.freshness_sla_for(300) == 900
    with pytest.raises(ValueError, match="unknown monitoring threshold 'eror_rate'"):
        Thresholds.from_settings({"monitoring": {"eror_rate": 1}})
    with pytest.raises(ValueError, match="'min_calls' must be a non-negative number"):
        Thresholds.from_settings({"monitoring": {"min_calls": "many"}})


def _windows(rates: list[float], calls: int, seed: int) -> list[CallWindow]:
    rng = random.Random(seed)
    return [
        CallWindow(NOW, NOW, calls, sum(rng.random() < rate for _ in range(calls)))
        for rate in rates
    ]


def test_trend_ignores_noise_and_small_samples_and_flags_a_regression():
    for seed in range(50):  # noisy but stable: ~4 % everywhere, never flagged
        assert not error_rate_trend(_windows([0.04] * 7, 200, seed)).worsening
    one_in_three = [CallWindow(NOW, NOW, 3, 0)] * 6 + [CallWindow(NOW, NOW, 3, 1)]
    assert error_rate_trend(one_in_three).direction == "unknown"
    regression = error_rate_trend(_windows([0.02] * 6 + [0.20], 200, 7))
    assert regression.worsening and regression.direction == "up" and regression.z > 3
    recovery = error_rate_trend(_windows([0.20] * 6 + [0.01], 200, 7))
    assert recovery.direction == "down" and not recovery.worsening
    assert two_proportion_z(0, 0, 1, 10) is None
