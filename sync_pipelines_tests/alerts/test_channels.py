"""Channels: the Slack payload is `text` + `blocks`, the generic one a JSON document; a channel
that answers 500 or does not answer at all is recorded as a failed notification and never
raises, and the firing is tried again by the next evaluation; the Slack URL (a secret) appears
in no row and no log line."""

from __future__ import annotations

import json
import logging

import sqlalchemy as sa
from sync_pipelines_peers.alert_sink import SLACK_PATH, WEBHOOK_PATH

from sync_pipelines.alerts.channels import SLACK, WEBHOOK, Channel
from sync_pipelines.alerts.evaluation import evaluate_alerts
from sync_pipelines.alerts.incidents import raise_alert
from sync_pipelines.alerts.rules import CRITICAL, Condition
from sync_pipelines.alerts.settings import AlertSettings
from sync_pipelines.store.alerts import list_incidents, list_notifications
from sync_pipelines_tests.owners import own_integrations

from .alert_data import add_integration, add_syncs, closed_port, minutes
from .conftest import T0


def _condition(subject: str = "golioth-a") -> Condition:
    return Condition(
        organization_id="org-a",
        integration_id=subject,
        rule="provider_api_failures",
        subject=subject,
        severity=CRITICAL,
        summary="the golioth API failed 100.0% of 1000 calls over the last 300 s",
        details={"calls": 1000, "provider_failed": 1000},
        run_id="run-42",
    )


def test_a_slack_message_has_fallback_text_and_blocks(sqlite_store, sink, slack_settings):
    raise_alert(sqlite_store, _condition(), slack_settings, now=T0)
    [message] = sink.accepted(SLACK_PATH)
    assert set(message) == {"text", "blocks"}
    assert "[CRITICAL] provider_api_failures on golioth-a (org-a)" in message["text"]
    header, section, fields, context = message["blocks"]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert len(header["text"]["text"]) <= 150
    assert section["text"]["type"] == "mrkdwn" and "1000 calls" in section["text"]["text"]
    assert {"*Organization*\norg-a", "*Seen*\n1 time(s)"} <= {f["text"] for f in fields["fields"]}
    assert context["type"] == "context" and "run `run-42`" in context["elements"][0]["text"]


def test_the_generic_webhook_gets_the_incident_as_json(sqlite_store, sink, settings):
    raise_alert(sqlite_store, _condition(), settings, now=T0)
    [message] = sink.accepted(WEBHOOK_PATH)
    assert message["source"] == "sync_pipelines" and message["kind"] == "firing"
    incident = message["incident"]
    assert (incident["organization_id"], incident["integration_id"], incident["status"]) == (
        "org-a",
        "golioth-a",
        "open",
    )
    assert incident["details"] == {"calls": 1000, "provider_failed": 1000}
    assert message["sent_at"] == T0.isoformat()


def test_a_channel_answering_500_is_recorded_as_failed_and_the_firing_is_retried(
    store, sink, settings
):
    own_integrations(store, "org-a", "golioth-a")
    sink.fail(500)
    outcome = raise_alert(store, _condition(), settings, now=T0)  # does not raise

    [delivery] = outcome.deliveries
    assert (delivery.status, delivery.status_code, delivery.attempts) == ("failed", 500, 2)
    assert len(sink.received) == 2, "one retry"
    with store.connect() as conn:
        [failed] = list_notifications(conn, "org-a")
    assert (failed["status"], failed["status_code"], failed["kind"]) == ("failed", 500, "firing")
    assert "sink told to fail" in failed["error_message"]

    sink.recover()
    raise_alert(store, _condition(), settings, now=T0 + minutes(1))  # within the cooldown
    assert [m["kind"] for m in sink.accepted()] == ["firing"], "nobody had been told: tried again"
    raise_alert(store, _condition(), settings, now=T0 + minutes(2))
    assert len(sink.accepted()) == 1


def test_a_closed_port_is_recorded_as_failed_without_raising(store):
    settings = AlertSettings(
        channels=(Channel("webhook", WEBHOOK, f"http://127.0.0.1:{closed_port()}/hook"),),
        timeout_s=1,
        max_attempts=2,
    )
    own_integrations(store, "org-a", "golioth-a")
    outcome = raise_alert(store, _condition(), settings, now=T0)
    [delivery] = outcome.deliveries
    assert delivery.status == "failed" and delivery.status_code is None
    assert delivery.error_message.startswith("ConnectError")
    with store.connect() as conn:
        [row] = list_notifications(conn, "org-a")
        [incident] = list_incidents(conn, "org-a")
    assert row["status"] == "failed" and row["error_message"].startswith("ConnectError")
    assert incident.last_notified_at is None, "the claim was given back"


def test_a_dead_channel_is_tried_once_per_evaluation_pass(sqlite_store):
    settings = AlertSettings(
        channels=(Channel("webhook", WEBHOOK, f"http://127.0.0.1:{closed_port()}/hook"),),
        max_attempts=1,
    )
    for integration_id in ("golioth-a", "golioth-b"):
        add_syncs(sqlite_store, add_integration(sqlite_store, integration_id), "failed", "failed")

    summary = evaluate_alerts(sqlite_store, settings, now=T0)

    assert summary.notified == {"firing": 2} and summary.deliveries_failed == 2
    with sqlite_store.connect() as conn:
        rows = list_notifications(conn, "org-a")
    assert sorted(r["error_message"].split(":")[0] for r in rows) == [
        "ConnectError",
        "not attempted",
    ]


def test_one_working_channel_is_enough_for_the_incident_to_count_as_notified(sqlite_store, sink):
    settings = AlertSettings(
        channels=(
            Channel("webhook", WEBHOOK, sink.webhook_url),
            Channel("broken", WEBHOOK, f"http://127.0.0.1:{closed_port()}/hook"),
        ),
        max_attempts=1,
    )
    outcome = raise_alert(sqlite_store, _condition(), settings, now=T0)
    assert [d.status for d in outcome.deliveries] == ["sent", "failed"]
    raise_alert(sqlite_store, _condition(), settings, now=T0 + minutes(1))
    assert len(sink.accepted()) == 1


def test_the_slack_url_appears_in_no_row_and_no_log_line(store, sink, capfd, caplog):
    caplog.set_level(logging.DEBUG)  # httpx logs each request's URL at INFO
    secret_path = "/services/T0SECRET/B0SECRET/xoxb-not-a-real-token-4f9a"
    url = sink.url + secret_path
    settings = AlertSettings(channels=(Channel("slack", SLACK, url),), max_attempts=2)
    own_integrations(store, "org-a", "golioth-a", "golioth-b")

    raise_alert(store, _condition("golioth-a"), settings, now=T0)  # 200
    sink.fail(500)
    raise_alert(store, _condition("golioth-b"), settings, now=T0)  # 500, retried
    assert [p.path for p in sink.received] == [secret_path] * 3

    out, err = capfd.readouterr()
    logged = out + err + "\n".join(r.getMessage() for r in caplog.records)
    with store.connect() as conn:
        stored = json.dumps(
            [
                dict(r)
                for t in ("alert_incidents", "alert_notifications")
                for r in conn.execute(sa.text(f"SELECT * FROM {t}")).mappings()
            ],
            default=str,
        )
    assert "HTTP Request" in logged, "httpx's own request line was captured (and masked)"
    for text in (logged, stored, repr(settings)):
        assert "xoxb-not-a-real-token" not in text and "T0SECRET" not in text
