"""The heartbeat proves the alert path: `alert_path_health` is healthy while heartbeats arrive,
unhealthy when no channel takes them (each failure recorded and logged as an error), degraded
when one of two channels fails or heartbeats stop, unknown with nothing to judge."""

from __future__ import annotations

import json
from datetime import timedelta

from sync_pipelines.alerts.channels import WEBHOOK, Channel
from sync_pipelines.alerts.heartbeat import alert_path_health, heartbeat_due, send_heartbeat
from sync_pipelines.alerts.settings import AlertSettings
from sync_pipelines.store.alerts import list_notifications
from sync_pipelines.store.event_failures import SYSTEM_ORGANIZATION

from .alert_data import closed_port
from .conftest import T0

HOUR = timedelta(hours=1)


def _health(store, settings, now):
    with store.connect() as conn:
        return alert_path_health(conn, now, settings=settings)


def test_delivered_heartbeats_make_the_path_healthy(store, sink, settings):
    send_heartbeat(store, settings, now=T0)
    [beat] = sink.accepted()
    assert beat["kind"] == "heartbeat" and "incident" not in beat

    health = _health(store, settings, T0 + timedelta(minutes=5))
    assert health["state"] == "healthy" and health["reasons"] == []
    assert health["detail"] == "every channel took its last heartbeat (webhook)"
    channel = health["channels"]["webhook"]
    assert channel["last_success_at"] == T0.isoformat() and channel["consecutive_failures"] == 0


def test_a_failing_heartbeat_is_recorded_logged_and_makes_the_path_unhealthy(
    store, sink, settings, capfd
):
    send_heartbeat(store, settings, now=T0 - HOUR)
    sink.fail(500)
    send_heartbeat(store, settings, now=T0)
    send_heartbeat(store, settings, now=T0 + HOUR)

    health = _health(store, settings, T0 + HOUR)
    assert health["state"] == "unhealthy"
    channel = health["channels"]["webhook"]
    assert channel["consecutive_failures"] == 2
    assert channel["last_success_at"] == (T0 - HOUR).isoformat()
    assert "HTTP 500" in channel["last_error"]
    with store.connect() as conn:
        rows = list_notifications(conn, SYSTEM_ORGANIZATION, kind="heartbeat")
    assert [r["status"] for r in rows] == ["sent", "failed", "failed"]
    lines = [
        json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")
    ]
    errors = [line for line in lines if line["event"] == "alert_heartbeat_failed"]
    assert len(errors) == 2 and {e["level"] for e in errors} == {"error"}
    assert errors[0]["channel"] == "webhook" and errors[0]["status_code"] == 500

    sink.recover()
    send_heartbeat(store, settings, now=T0 + 2 * HOUR)
    assert _health(store, settings, T0 + 2 * HOUR)["state"] == "healthy"


def test_one_channel_of_two_failing_is_degraded(sqlite_store, sink, settings):
    two = AlertSettings(
        channels=(
            *settings.channels,
            Channel("backup", WEBHOOK, f"http://127.0.0.1:{closed_port()}/hook"),
        ),
        max_attempts=1,
    )
    send_heartbeat(sqlite_store, two, now=T0)
    health = _health(sqlite_store, two, T0)
    assert health["state"] == "degraded"
    assert health["channels"]["backup"]["consecutive_failures"] == 1
    assert any(r.startswith("channel backup: 1 heartbeat(s) failed") for r in health["reasons"])


def test_heartbeats_that_stop_make_the_path_degraded(sqlite_store, sink, settings):
    send_heartbeat(sqlite_store, settings, now=T0)
    health = _health(
        sqlite_store, settings, T0 + 3 * timedelta(seconds=settings.heartbeat_interval_s)
    )
    assert health["state"] == "degraded"
    assert "is the heartbeat sensor running?" in health["reasons"][0]


def test_nothing_to_judge_is_unknown(sqlite_store, settings):
    assert _health(sqlite_store, AlertSettings(), T0)["state"] == "unknown"
    health = _health(sqlite_store, settings, T0)
    assert health["state"] == "unknown" and health["reasons"] == [
        "channel webhook: no heartbeat sent yet"
    ]


def test_a_heartbeat_is_due_once_per_interval(sqlite_store, sink, settings):
    interval = timedelta(seconds=settings.heartbeat_interval_s)
    with sqlite_store.connect() as conn:
        assert heartbeat_due(conn, settings, now=T0)
    send_heartbeat(sqlite_store, settings, now=T0)
    with sqlite_store.connect() as conn:
        assert not heartbeat_due(conn, settings, now=T0 + interval - timedelta(seconds=1))
        assert heartbeat_due(conn, settings, now=T0 + interval)


def test_invalid_alert_settings_make_the_path_unhealthy_and_name_the_variable(
    sqlite_store, monkeypatch
):
    monkeypatch.setenv("SYNC_ALERT_SLACK_WEBHOOK_URL", "hooks.slack.com/services/T/B/secret-part")
    with sqlite_store.connect() as conn:
        health = alert_path_health(conn, T0)
    assert health["state"] == "unhealthy"
    assert health["reasons"][0].startswith("alert settings: SYNC_ALERT_SLACK_WEBHOOK_URL")
    assert "secret-part" not in json.dumps(health)
