"""Each alert rule fires on real rows and clears when they say the problem is over: error rate
(warning, then critical), provider API failures (5xx, 429, timeouts — not auth), failure streak,
webhook processing delay, inbox backlog; thresholds overridden per integration; too few calls
neither open nor resolve; a disabled integration's incidents resolve."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sync_pipelines.alerts.evaluation import evaluate_alerts
from sync_pipelines.alerts.rules import (
    ERROR_RATE,
    FAILURE_STREAK,
    INBOX_BACKLOG,
    PROCESSING_DELAY,
    PROVIDER_API_FAILURES,
)
from sync_pipelines.store.alerts import list_incidents
from sync_pipelines.store.integrations import save_integration

from .alert_data import (
    add_calls,
    add_inbox_events,
    add_integration,
    add_syncs,
    minutes,
    process_inbox,
)
from .conftest import T0

S = timedelta(seconds=1)


def _incidents(store, organization_id="org-a"):
    with store.connect() as conn:
        return {(i.rule, i.status): i for i in list_incidents(conn, organization_id)}


def _window(store, integration, now, *, ok: int, failed: int, status_code=401, error_type="auth"):
    """One 300 s window ending at `now` with this many good and failing calls."""
    add_calls(
        store, integration, ok, start=now - 250 * S, end=now, status="success", status_code=200
    )
    if failed:
        add_calls(
            store,
            integration,
            failed,
            start=now - 250 * S,
            end=now,
            status_code=status_code,
            error_type=error_type,
        )


def test_error_rate_warns_above_5_percent_turns_critical_above_10_and_clears(store, sink, settings):
    integration = add_integration(store)
    _window(store, integration, T0, ok=92, failed=8)  # 8 %: auth failures, ours not the provider's
    evaluate_alerts(store, settings, now=T0)
    assert _incidents(store)[(ERROR_RATE, "open")].severity == "warning"

    t1 = T0 + minutes(5)  # the next window, within the cooldown: the same incident, now critical
    _window(store, integration, t1, ok=85, failed=15)  # 15 %
    evaluate_alerts(store, settings, now=t1)
    incident = _incidents(store)[(ERROR_RATE, "open")]
    assert (incident.severity, incident.occurrences) == ("critical", 2)
    assert PROVIDER_API_FAILURES not in {rule for rule, _ in _incidents(store)}

    t2 = T0 + minutes(20)
    _window(store, integration, t2, ok=100, failed=1)  # 1 %
    evaluate_alerts(store, settings, now=t2)
    assert (ERROR_RATE, "resolved") in _incidents(store)
    assert [m["kind"] for m in sink.accepted()] == [
        "firing",
        "escalated",
        "resolved",
    ]  # critical is announced at once


def test_too_few_calls_neither_open_nor_resolve_an_incident(store, sink, settings):
    integration = add_integration(store)
    _window(store, integration, T0, ok=0, failed=10)  # 100 % of 10 calls: below min_calls (20)
    evaluate_alerts(store, settings, now=T0)
    assert _incidents(store) == {}

    t1 = T0 + minutes(10)
    _window(store, integration, t1, ok=0, failed=30)
    evaluate_alerts(store, settings, now=t1)
    evaluate_alerts(store, settings, now=t1 + minutes(10))  # a quiet window: no calls at all
    assert (ERROR_RATE, "open") in _incidents(store)
    assert [m["kind"] for m in sink.accepted()] == ["firing"]


def test_provider_failures_5xx_429_and_timeouts_are_one_provider_incident(store, sink, settings):
    integration = add_integration(store)
    add_calls(store, integration, 70, start=T0 - 250 * S, end=T0, status="success", status_code=200)
    add_calls(store, integration, 10, start=T0 - 250 * S, end=T0, status_code=503)
    add_calls(
        store,
        integration,
        5,
        start=T0 - 250 * S,
        end=T0,
        status="retrying",
        status_code=429,
        error_type="rate_limited",
    )
    add_calls(store, integration, 5, start=T0 - 250 * S, end=T0, status_code=None)  # timeouts
    evaluate_alerts(store, settings, now=T0)

    incidents = _incidents(store)
    assert set(incidents) == {(PROVIDER_API_FAILURES, "open")}, "the error rate is folded into it"
    details = incidents[(PROVIDER_API_FAILURES, "open")].details
    assert (details["calls"], details["provider_failed"]) == (90, 20)

    t1 = T0 + minutes(10)
    _window(store, integration, t1, ok=50, failed=0)
    evaluate_alerts(store, settings, now=t1)
    assert set(_incidents(store)) == {(PROVIDER_API_FAILURES, "resolved")}


def test_auth_failures_are_an_error_rate_not_a_provider_failure(store, settings):
    integration = add_integration(store)
    _window(store, integration, T0, ok=70, failed=30, status_code=403, error_type="auth")
    evaluate_alerts(store, settings, now=T0)
    assert set(_incidents(store)) == {(ERROR_RATE, "open")}


def test_failure_streak_warns_at_2_is_critical_at_3_and_clears_on_a_good_sync(
    store, sink, settings
):
    integration = add_integration(store)
    add_syncs(store, integration, "success", "failed", "failed")
    evaluate_alerts(store, settings, now=T0)
    assert _incidents(store)[(FAILURE_STREAK, "open")].severity == "warning"

    add_syncs(store, integration, "failed")
    evaluate_alerts(store, settings, now=T0 + S)
    incident = _incidents(store)[(FAILURE_STREAK, "open")]
    assert incident.severity == "critical" and incident.details["failure_streak"] == 3
    assert "HTTP 401" in incident.summary

    add_syncs(store, integration, "success")
    evaluate_alerts(store, settings, now=T0 + 2 * S)
    assert set(_incidents(store)) == {(FAILURE_STREAK, "resolved")}


def test_webhook_processing_delay_over_10_minutes_fires_and_clears_once_processed(
    store, sink, settings
):
    integration = add_integration(store)
    add_inbox_events(store, integration, 1, received_at=T0 - minutes(9))
    evaluate_alerts(store, settings, now=T0)
    assert _incidents(store) == {}

    evaluate_alerts(store, settings, now=T0 + minutes(2))  # now 11 minutes old
    incident = _incidents(store)[(PROCESSING_DELAY, "open")]
    assert incident.details["oldest_pending_age_s"] == 660.0

    process_inbox(store, integration, at=T0 + minutes(3))
    evaluate_alerts(store, settings, now=T0 + minutes(3))
    assert set(_incidents(store)) == {(PROCESSING_DELAY, "resolved")}


def test_inbox_backlog_uses_the_integrations_threshold_overrides(store, sink, settings):
    integration = add_integration(
        store, monitoring={"inbox_backlog_warn": 2, "inbox_backlog_critical": 4}
    )
    add_inbox_events(store, integration, 3, received_at=T0 - S)
    evaluate_alerts(store, settings, now=T0)
    assert _incidents(store)[(INBOX_BACKLOG, "open")].severity == "warning"

    add_inbox_events(store, integration, 2, received_at=T0)
    evaluate_alerts(store, settings, now=T0 + S)
    incident = _incidents(store)[(INBOX_BACKLOG, "open")]
    assert (incident.severity, incident.details["pending"], incident.details["threshold"]) == (
        "critical",
        5,
        4,
    )

    process_inbox(store, integration, at=T0 + 2 * S)
    evaluate_alerts(store, settings, now=T0 + 2 * S)
    assert set(_incidents(store)) == {(INBOX_BACKLOG, "resolved")}
    assert [m["kind"] for m in sink.accepted()] == ["firing", "escalated", "resolved"]


def test_the_incidents_of_a_disabled_integration_resolve(store, sink, settings):
    integration = add_integration(store)
    add_syncs(store, integration, "failed", "failed")
    evaluate_alerts(store, settings, now=T0)
    with store.transaction() as conn:
        save_integration(conn, replace(integration, enabled=False))
    evaluate_alerts(store, settings, now=T0 + S)
    incident = _incidents(store)[(FAILURE_STREAK, "resolved")]
    assert incident.details["resolution"] == "the integration is disabled or was removed"


def test_an_invalid_threshold_setting_skips_that_integration_and_names_the_key(store, settings):
    add_integration(store, "golioth-bad", monitoring={"error_rate_warm": 0.1})
    good = add_integration(store, "golioth-good")
    add_syncs(store, good, "failed", "failed")
    summary = evaluate_alerts(store, settings, now=T0)
    assert "error_rate_warm" in summary.skipped["golioth-bad"]
    assert summary.integrations == 1
    assert (FAILURE_STREAK, "open") in _incidents(store)
