"""The alert path joins the health report as part "alerting" when `sync_pipelines.alerts`
provides `alert_path_health(conn, now)`; without the package the report has no such part. The
hook's handling of answers and failures is exercised through stand-in modules
(alert_path_stub.py over the real alert tables, alert_path_broken_stub.py); the real package's
own verdicts are its tests'."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from sync_pipelines.clock import utc_now
from sync_pipelines.monitoring.service_health import HealthOptions, check_service_health

STUB = "sync_pipelines_tests.health.alert_path_stub"


def _notification(store, status: str, error: str | None = None) -> None:
    with store.transaction() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO alert_notifications (id, organization_id, channel, kind, status, "
                "error_message, created_at) VALUES (:id, 'org-a', 'ops-slack', 'firing', :s, :e, :t)"
            ),
            {"id": str(uuid.uuid4()), "s": status, "e": error, "t": utc_now()},
        )


def test_without_the_alerts_package_there_is_no_alerting_part(sqlite_store):
    options = HealthOptions(alerts_module="sync_pipelines_tests.health.no_such_alerts_module")
    report = check_service_health(sqlite_store, options)
    assert report.check("alerting") is None and "alerting" not in report.as_json()["checks"]


def test_the_real_alert_path_is_a_part_when_installed(sqlite_store):
    alerting = check_service_health(sqlite_store, HealthOptions()).check("alerting")
    assert alerting is not None and alerting.status == "unknown"  # no channel configured here
    assert "no alert channel configured" in alerting.detail


def test_the_alert_paths_own_verdict_is_a_part_of_the_report(store):
    options = HealthOptions(alerts_module=STUB)
    _notification(store, "failed", "HTTP 500 from hooks.slack.example")
    report = check_service_health(store, options)
    alerting = report.as_json()["checks"]["alerting"]
    assert alerting == {
        "status": "degraded",
        "detail": "the last notification to ops-slack failed: HTTP 500 from hooks.slack.example",
        "channel": "ops-slack",
    }
    assert report.status == "degraded"
    _notification(store, "sent")
    assert check_service_health(store, options).check("alerting").status == "healthy"


def test_an_alert_path_check_that_raises_is_degraded_not_a_crash(sqlite_store):
    options = HealthOptions(alerts_module="sync_pipelines_tests.health.alert_path_broken_stub")
    alerting = check_service_health(sqlite_store, options).check("alerting")
    assert alerting.status == "degraded"
    assert (
        alerting.detail == "alert path check failed: RuntimeError: alert channel config unreadable"
    )
