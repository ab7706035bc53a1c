"""An outage is one alert, not a thousand: 1,000 failing provider calls evaluated again and again
give one incident and one "firing" message at the real sink, a repeat only once the cooldown
has passed (showing the repeat count), and one "resolved" message when calls succeed again.
Times are injected; nothing sleeps."""

from __future__ import annotations

from datetime import timedelta

from sync_pipelines.alerts.evaluation import evaluate_alerts
from sync_pipelines.alerts.rules import PROVIDER_API_FAILURES
from sync_pipelines.store.alerts import list_incidents, list_notifications

from .alert_data import add_calls, add_integration
from .conftest import T0

S = timedelta(seconds=1)


def test_an_outage_of_1000_failing_calls_produces_one_alert_and_one_resolved_message(
    store, sink, settings
):
    integration = add_integration(store)
    add_calls(store, integration, 1000, start=T0 - 200 * S, end=T0, status_code=503)

    for k in range(5):  # five sensor ticks, 30 s apart, within the cooldown
        evaluate_alerts(store, settings, now=T0 + 30 * k * S)

    [firing] = sink.accepted()
    assert firing["kind"] == "firing"
    assert firing["incident"]["rule"] == PROVIDER_API_FAILURES
    assert firing["incident"]["severity"] == "critical"
    assert firing["incident"]["details"]["calls"] == 1000
    with store.connect() as conn:
        [incident] = list_incidents(conn, "org-a")
    assert (incident.status, incident.occurrences) == ("open", 5)

    later = T0 + 1000 * S  # the failures are out of the 300 s window; the provider answers again
    add_calls(
        store, integration, 50, start=later - 100 * S, end=later, status="success", status_code=200
    )
    evaluate_alerts(store, settings, now=later)
    evaluate_alerts(store, settings, now=later + 30 * S)

    assert [m["kind"] for m in sink.accepted()] == ["firing", "resolved"]
    resolved = sink.accepted()[1]
    assert resolved["incident"]["id"] == incident.id
    assert "Resolved after" in resolved["text"]
    with store.connect() as conn:
        [closed] = list_incidents(conn, "org-a")
        history = list_notifications(conn, "org-a", incident_id=incident.id)
    assert closed.status == "resolved" and closed.resolved_at == later
    assert [(n["kind"], n["status"], n["channel"]) for n in history] == [
        ("firing", "sent", "webhook"),
        ("resolved", "sent", "webhook"),
    ]


def test_an_open_incident_is_notified_again_only_after_the_cooldown_with_its_repeat_count(
    store, sink, settings
):
    integration = add_integration(store)
    cooldown = timedelta(seconds=settings.cooldown_s)
    # an outage going on past the cooldown: every 300 s window sees ~150 failing calls
    add_calls(store, integration, 400, start=T0 - 200 * S, end=T0 + cooldown, status_code=503)

    for offset in (0 * S, 60 * S, cooldown - S):
        evaluate_alerts(store, settings, now=T0 + offset)
    assert [m["kind"] for m in sink.accepted()] == ["firing"]

    evaluate_alerts(store, settings, now=T0 + cooldown)
    evaluate_alerts(store, settings, now=T0 + cooldown + 30 * S)

    assert [m["kind"] for m in sink.accepted()] == ["firing", "repeat"]
    repeat = sink.accepted()[1]
    assert repeat["incident"]["occurrences"] == 4
    assert "seen 4 times" in repeat["title"]
