"""When an integration's checks are due outside a sync run: after a failed sync nobody judged,
and when nothing has judged it for a freshness SLA."""

from __future__ import annotations

from datetime import timedelta

from sync_pipelines.checks.due import (
    NOT_CHECKED_WITHIN_SLA,
    SYNC_FAILED,
    SYNC_PARTIAL,
    check_due_reason,
)
from sync_pipelines.checks.integration_checks import check_integration
from sync_pipelines_tests.checks.check_support import NOW, add_sync


def _due(store, integ, now=NOW):
    with store.connect() as conn:
        return check_due_reason(conn, integ, now=now)


def test_a_sync_failing_after_the_last_check_makes_the_checks_due(store, integ):
    check_integration(store, integ, now=NOW - timedelta(minutes=10), run_id="run-1")
    assert _due(store, integ) is None
    add_sync(store, integ, NOW - timedelta(minutes=2), "failed")
    assert _due(store, integ) == SYNC_FAILED
    check_integration(store, integ, now=NOW, run_id=None)
    assert _due(store, integ) is None


def test_a_sync_ending_partial_after_the_last_check_makes_the_checks_due(store, integ):
    """A states or telemetry sync ends after its run's checks: its partial is judged now, so the
    partition shows the WARN, not one sync later."""
    check_integration(store, integ, now=NOW - timedelta(minutes=10), run_id="run-1")
    add_sync(store, integ, NOW - timedelta(minutes=2), "partial")
    assert _due(store, integ) == SYNC_PARTIAL
    (complete,) = [
        o
        for o in check_integration(store, integ, now=NOW, run_id=None)
        if o.name == "last_syncs_complete"
    ]
    assert (complete.passed, complete.severity) == (False, "WARN")
    assert _due(store, integ) is None


def test_no_check_within_the_freshness_sla_makes_the_checks_due(store, integ):
    assert _due(store, integ) == NOT_CHECKED_WITHIN_SLA  # created a week ago, never checked
    check_integration(store, integ, now=NOW - timedelta(minutes=14), run_id="run-1")
    assert _due(store, integ) is None  # SLA: 3 × 300 s
    assert _due(store, integ, now=NOW + timedelta(minutes=2)) == NOT_CHECKED_WITHIN_SLA
