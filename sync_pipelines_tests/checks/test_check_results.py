"""Every check of an integration evaluated and recorded in `integration_check_results`, read back
scoped by organization, and the alert sensor's scan for failures across tenants."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sync_pipelines.alerts.check_results import check_results_after, position_of
from sync_pipelines.checks.integration_checks import CHECKS, check_integration
from sync_pipelines.store.check_results import check_results
from sync_pipelines_tests.checks.check_support import NOW, ORG, add_calls, add_sync, save


def test_every_check_is_recorded_with_its_figures_and_run_id(store, integ):
    add_sync(store, integ, NOW - timedelta(minutes=3), "success", fetched=40)
    add_calls(store, integ, NOW, calls=40, failed=8)  # 20 %: the error rate fails as ERROR
    outcomes = check_integration(store, integ, now=NOW, run_id="run-42")
    assert [o.name for o in outcomes] == [c.name for c in CHECKS]
    with store.connect() as conn:
        rows = check_results(conn, ORG, integration_id=integ.integration_id, run_id="run-42")
    assert [r.check_name for r in rows] == [c.name for c in CHECKS]
    assert all(r.provider == "golioth" and r.created_at == NOW for r in rows)
    by_name = {r.check_name: r for r in rows}
    error_rate = by_name["call_failure_rate_below_threshold"]
    assert (error_rate.passed, error_rate.severity) == (False, "ERROR")
    assert error_rate.metadata["call_failure_rate"] == pytest.approx(0.2)
    assert error_rate.metadata["calls"] == 40
    assert by_name["synced_within_freshness_sla"].passed
    for row in rows:  # numeric figures on every result
        assert any(isinstance(v, int | float) for v in row.metadata.values()), row.check_name


def test_reads_are_scoped_by_organization_and_the_scan_reads_every_tenant_in_order(store, integ):
    other = save(store, "golioth-other-org", organization_id="org-other")  # never synced: stale
    add_sync(store, integ, NOW - timedelta(minutes=3), "success")
    add_calls(store, integ, NOW, calls=40, failed=8)
    check_integration(store, integ, now=NOW, run_id="run-a")
    check_integration(store, other, now=NOW + timedelta(seconds=1), run_id="run-b")
    with store.connect() as conn:
        assert {r.run_id for r in check_results(conn, ORG)} == {"run-a"}
        assert {r.run_id for r in check_results(conn, "org-other")} == {"run-b"}
        first = check_results_after(conn, None, since=NOW, limit=len(CHECKS) + 1)
        rest = check_results_after(conn, position_of(first[-1]), since=NOW, limit=1000)
    assert [r.check_name for r in first[: len(CHECKS)]] == [c.name for c in CHECKS]
    assert [(r.organization_id, r.check_name) for r in first[len(CHECKS) :]] == [
        ("org-other", CHECKS[0].name)
    ]
    assert [r.check_name for r in rest] == [c.name for c in CHECKS[1:]]
    failures = [(r.organization_id, r.check_name) for r in first + rest if not r.passed]
    # the health check gives the model's verdict on the same figures: 20 % of calls failed is
    # an ERROR check, so degraded; never synced past its SLA is unhealthy
    assert failures == [
        (ORG, "integration_health"),
        (ORG, "call_failure_rate_below_threshold"),
        ("org-other", "integration_health"),
        ("org-other", "synced_within_freshness_sla"),
    ]
    health = {r.organization_id: r for r in first + rest if r.check_name == "integration_health"}
    assert health[ORG].description.startswith("degraded\n- 20.0% of 40 provider calls failed")
    assert health["org-other"].description.startswith(
        "unhealthy\n- never synced\n- no successful sync in the"
    )


def test_an_unusable_monitoring_setting_is_named(store):
    broken = save(store, "golioth-broken", monitoring={"error_rate_wran": 0.1})
    with pytest.raises(ValueError, match="golioth-broken.*error_rate_wran.*monitoring"):
        check_integration(store, broken, now=NOW, run_id=None)
