"""A sync whose process died, closed as `abandoned`, is a failure everywhere failures are counted:
health (the last sync failed), the report's sync success rate, the failure-streak check and the
check scheduler."""

from __future__ import annotations

from datetime import timedelta

from sync_pipelines.checks.due import SYNC_FAILED, check_due_reason
from sync_pipelines.clock import utc_now
from sync_pipelines.monitoring.health import integration_health
from sync_pipelines.monitoring.integration_stats import sync_history
from sync_pipelines.observability.activity import IMPORT
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.reports.integration_report import build_integration_report
from sync_pipelines.store.sync_state import FAILED_SYNC_STATUSES, sync_log_rows
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.sync.stream_lease import close_abandoned_syncs
from sync_pipelines.sync.sync_run import SyncRun


def _abandon_a_sync(store, open_session, integration_id: str) -> str:
    """A sync that took its lease and wrote its started rows, then went silent (as a killed
    process does: no heartbeat, no exit)."""
    with open_session(store, integration_id, run_id="run-died") as session:
        dying = SyncRun(session, "devices", IMPORT, log=get_logger("test"), lease_heartbeat_s=0)
        dying.__enter__()
    return dying.sync_id


def test_an_abandoned_sync_counts_as_a_failure_in_health_report_and_checks(
    store, golioth, register_golioth, open_session
):
    integ = register_golioth(store, golioth)
    o, i = integ.organization_id, integ.integration_id
    with open_session(store, i, run_id="run-good") as session:
        assert sync_devices(session).status == "success"
    died = _abandon_a_sync(store, open_session, i)
    later = utc_now() + timedelta(minutes=5)  # past the lease's expiry
    assert close_abandoned_syncs(store, later) == [died]

    with store.connect() as conn:
        rows = {r["id"]: r for r in sync_log_rows(conn, o, i)}
        history = sync_history(conn, o, i, now=later)
        health = integration_health(conn, integ, now=later)
        report = build_integration_report(conn, organization_id=o, now=later)
    assert rows[died]["status"] == "abandoned" and "abandoned" in FAILED_SYNC_STATUSES
    assert "the stale-sync sensor" in rows[died]["error_message"]
    assert (history.last_status, history.failure_streak) == ("failed", 1)
    assert history.last_error_type == "abandoned"
    # one failure (the streak check warns from 2): a warning, saying the process died
    assert health.state == "warning"
    assert health.reasons == [f"the last sync failed ({health.last_error})"]
    assert health.last_error.startswith("abandoned: process died: no heartbeat since")
    (row,) = report.integrations
    assert (row.syncs.succeeded, row.syncs.failed, row.syncs.running) == (1, 1, 0)
    assert row.syncs.success_rate == 0.5


def test_an_abandoned_sync_makes_the_checks_due(store, golioth, register_golioth, open_session):
    integ = register_golioth(store, golioth)
    with open_session(store, integ.integration_id, run_id="run-good") as session:
        sync_devices(session)
    with store.connect() as conn:
        assert check_due_reason(conn, integ, now=utc_now()) != SYNC_FAILED
    _abandon_a_sync(store, open_session, integ.integration_id)
    close_abandoned_syncs(store, utc_now() + timedelta(minutes=5))
    with store.connect() as conn:
        assert check_due_reason(conn, integ, now=utc_now()) == SYNC_FAILED
