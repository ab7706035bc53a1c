"""The dedupe is the database's: one open incident per (organization, dedupe key), however many
evaluations see the condition at the same moment, and exactly one of them owes the firing
notification. Once resolved, the same condition opens a new incident. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace

import pytest
import sqlalchemy as sa

from sync_pipelines.alerts.incidents import clear, sight
from sync_pipelines.alerts.rules import WARNING, Condition
from sync_pipelines.store.alerts import list_incidents
from sync_pipelines_tests.owners import own_integrations

from .alert_data import minutes
from .conftest import T0

CONDITION = Condition(
    organization_id="org-a",
    integration_id="golioth-a",
    rule="inbox_backlog",
    subject="golioth-a",
    severity=WARNING,
    summary="600 webhook events wait in the inbox (threshold 500)",
)


@pytest.fixture(autouse=True)
def _owned(store) -> None:
    own_integrations(store, "org-a", "golioth-a")
    own_integrations(store, "org-b", "golioth-b")


def test_racing_sightings_share_one_open_incident_and_one_notification(store, settings):
    racers = 4
    barrier = threading.Barrier(racers)
    owed, errors = [], []

    def evaluate() -> None:
        try:
            barrier.wait(timeout=10)
            with store.transaction() as conn:
                _incident, notification = sight(conn, CONDITION, now=T0, settings=settings)
            owed.append(notification)
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=evaluate) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert errors == []
    with store.connect() as conn:
        [incident] = list_incidents(conn, "org-a")
    assert (incident.status, incident.occurrences) == ("open", racers)
    kinds = [o.kind for o in owed if o is not None]
    assert kinds == ["firing"], "exactly one evaluation owes the firing notification"


def test_the_index_refuses_a_second_open_incident_for_the_same_condition(store, settings):
    with store.transaction() as conn:
        sight(conn, CONDITION, now=T0, settings=settings)
    # the unique index, not a key: golioth-a is org-a's
    with pytest.raises(sa.exc.IntegrityError, match="(?i)unique"), store.transaction() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO alert_incidents (id, organization_id, integration_id, rule, dedupe_key, "
                "severity, status, summary, occurrences, first_seen_at, last_seen_at, updated_at) "
                "VALUES (:id, 'org-a', 'golioth-a', 'inbox_backlog', :key, 'warning', 'open', 's', 1, "
                ":t, :t, :t)"
            ),
            {"id": str(uuid.uuid4()), "key": CONDITION.dedupe_key, "t": T0},
        )


def test_a_resolved_condition_seen_again_is_a_new_incident(store, settings):
    with store.transaction() as conn:
        first, _ = sight(conn, CONDITION, now=T0, settings=settings)
        clear(
            conn,
            "org-a",
            CONDITION.dedupe_key,
            now=T0 + minutes(1),
            reason="cleared",
            settings=settings,
        )
        second, owed = sight(conn, CONDITION, now=T0 + minutes(2), settings=settings)
    assert second.id != first.id and second.occurrences == 1
    assert owed is not None and owed.kind == "firing"
    with store.connect() as conn:
        assert [i.status for i in list_incidents(conn, "org-a")] == ["open", "resolved"]


def test_the_same_condition_in_another_organization_is_another_incident(store, settings):
    # the same rule and subject (dedupe key) in org-b, on org-b's own integration: an id is
    # one organization's (integration_owners)
    other = replace(CONDITION, organization_id="org-b", integration_id="golioth-b")
    assert other.dedupe_key == CONDITION.dedupe_key
    with store.transaction() as conn:
        a, _ = sight(conn, CONDITION, now=T0, settings=settings)
        b, _ = sight(conn, other, now=T0, settings=settings)
    assert a.id != b.id and (a.occurrences, b.occurrences) == (1, 1)
