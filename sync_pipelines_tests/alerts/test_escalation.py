"""A condition that worsens from warning to critical is announced at once ("escalated"), within
the cooldown that holds back repeats; easing back, or staying critical, is not announced again
until the cooldown passes. Through the real local sink, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sync_pipelines.alerts.channels import WEBHOOK, Channel
from sync_pipelines.alerts.incidents import raise_alert
from sync_pipelines.alerts.rules import CRITICAL, WARNING, Condition
from sync_pipelines.store.alerts import list_incidents
from sync_pipelines_tests.owners import own_integrations

from .alert_data import closed_port, minutes
from .conftest import T0

WARN = Condition(
    organization_id="org-a",
    integration_id="golioth-a",
    rule="error_rate",
    subject="golioth-a",
    severity=WARNING,
    summary="12% of calls failed (warn at 10%)",
)
CRIT = replace(WARN, severity=CRITICAL, summary="63% of calls failed (critical at 50%)")


@pytest.fixture(autouse=True)
def _owned(store) -> None:
    own_integrations(store, "org-a", "golioth-a")


def _kinds(sink) -> list[tuple[str, str]]:
    return [(m["kind"], m["incident"]["severity"]) for m in sink.accepted()]


def test_warning_to_critical_is_announced_at_once_and_only_once(store, sink, settings):
    assert settings.cooldown_s == 600
    raise_alert(store, WARN, settings, now=T0)
    outcome = raise_alert(store, CRIT, settings, now=T0 + minutes(1))
    assert outcome.kind == "escalated"
    assert _kinds(sink) == [("firing", "warning"), ("escalated", "critical")]
    assert sink.accepted()[1]["title"].startswith("[CRITICAL] escalated: error_rate on golioth-a")

    # still critical, back to warning, critical again: all within the cooldown, all quiet
    for offset, condition in ((2, CRIT), (3, WARN), (4, CRIT)):
        assert raise_alert(store, condition, settings, now=T0 + minutes(offset)).kind is None
    assert len(sink.accepted()) == 2

    # the cooldown counts from the escalation: then a repeat, as for any open incident
    assert raise_alert(store, CRIT, settings, now=T0 + minutes(10)).kind is None
    assert raise_alert(store, CRIT, settings, now=T0 + minutes(11)).kind == "repeat"
    with store.connect() as conn:
        [incident] = list_incidents(conn, "org-a")
    assert (incident.occurrences, incident.notified_severity) == (7, "critical")


def test_an_incident_first_seen_critical_is_not_escalated(store, sink, settings):
    raise_alert(store, CRIT, settings, now=T0)
    raise_alert(store, WARN, settings, now=T0 + minutes(1))
    assert raise_alert(store, CRIT, settings, now=T0 + minutes(2)).kind is None
    assert _kinds(sink) == [("firing", "critical")]


def test_an_escalation_no_channel_took_is_tried_again(store, sink, settings):
    raise_alert(store, WARN, settings, now=T0)
    dead = replace(
        settings,
        channels=(Channel("webhook", WEBHOOK, f"http://127.0.0.1:{closed_port()}/hook"),),
        max_attempts=1,
    )
    lost = raise_alert(store, CRIT, dead, now=T0 + minutes(1))
    assert lost.kind == "escalated" and not any(d.ok for d in lost.deliveries)
    with store.connect() as conn:
        [incident] = list_incidents(conn, "org-a")
    assert incident.notified_severity == "warning"  # the claim was given back

    again = raise_alert(store, CRIT, settings, now=T0 + minutes(2))
    assert again.kind == "escalated"
    assert _kinds(sink) == [("firing", "warning"), ("escalated", "critical")]
