"""The console's incidents over a store whose alerts were raised (and one cleared) by the alert
engine, on SQLite and Postgres: newest first, keyset pages, the status and integration filters,
each incident's notifications channel by channel, and a scoped operator who sees only its own
organization's — not by editing the URL, and on Postgres not even through a query without a filter."""

from __future__ import annotations

import csv
import io

import pytest
import sqlalchemy as sa

from sync_pipelines.console.access import reading
from sync_pipelines.console.auth import Operator
from sync_pipelines.console.incidents import IncidentFilter, incident_page
from sync_pipelines_tests.console.conftest import ADMIN_TOKEN, ORG_A_TOKEN, bearer

ADMIN = bearer(ADMIN_TOKEN)
TENANT_A = bearer(ORG_A_TOKEN)


def _incidents(client, headers=ADMIN, **params):
    response = client.get("/api/incidents", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["incidents"]


def test_incidents_are_newest_first_and_keyset_pages_cover_each_once(client, seeded):
    everything = _incidents(client)
    assert [i["id"] for i in everything] == [
        seeded.org_b_incident,
        seeded.open_incident,
        seeded.resolved_incident,
    ]
    seen, after = [], None
    while True:
        page = client.get(
            "/api/incidents",
            params={"limit": 1, **({"after": after} if after else {})},
            headers=ADMIN,
        ).json()
        assert len(page["incidents"]) <= 1
        seen += page["incidents"]
        after = page["next_cursor"]
        if after is None:
            break
    assert [i["id"] for i in seen] == [i["id"] for i in everything]


def test_status_and_integration_filters_narrow_the_incidents(client, seeded):
    assert [i["id"] for i in _incidents(client, status="resolved")] == [seeded.resolved_incident]
    assert {i["status"] for i in _incidents(client, status="open")} == {"open"}
    assert [i["id"] for i in _incidents(client, integration="golioth-bad")] == [
        seeded.open_incident
    ]
    assert _incidents(client, integration="golioth-a", status="open") == []
    response = client.get("/api/incidents", params={"status": "closed"}, headers=ADMIN)
    assert response.status_code == 400 and "status must be one of" in response.json()["error"]


def test_an_incident_shows_its_fields_and_every_notification_per_channel(client, seeded):
    incident = client.get(f"/api/incidents/{seeded.open_incident}", headers=ADMIN).json()
    assert incident["rule"] == "failure_streak" and incident["severity"] == "critical"
    assert incident["status"] == "open" and incident["resolved_at"] is None
    assert incident["occurrences"] == 2
    assert incident["first_seen_at"] < incident["last_seen_at"]
    deliveries = [
        (n["kind"], n["channel"], n["status"], n["status_code"]) for n in incident["notifications"]
    ]
    # the first firing reached no channel (the sink answered 500), so the next sighting fired again
    assert deliveries == [
        ("firing", "slack", "failed", 500),
        ("firing", "webhook", "failed", 500),
        ("firing", "slack", "sent", 200),
        ("firing", "webhook", "sent", 200),
    ]
    resolved = client.get(f"/api/incidents/{seeded.resolved_incident}", headers=ADMIN).json()
    assert resolved["status"] == "resolved" and resolved["resolved_at"]
    assert resolved["resolution"] == "error rate back under the threshold"
    assert [n["kind"] for n in resolved["notifications"]] == [
        "firing",
        "firing",
        "resolved",
        "resolved",
    ]
    assert "payload" not in str(incident) and "details" not in incident


def test_the_incident_pages_render_and_link_to_the_integrations_activity(client, seeded):
    listing = client.get("/incidents", headers=ADMIN)
    assert listing.status_code == 200
    for ident in (seeded.open_incident, seeded.resolved_incident, seeded.org_b_incident):
        assert f"/incidents/{ident}" in listing.text
    page = client.get(f"/incidents/{seeded.open_incident}", headers=ADMIN)
    assert page.status_code == 200
    assert "golioth-bad failed 3 syncs in a row" in page.text
    assert "activity?integration=golioth-bad&amp;organization=org-a" in page.text
    assert "xoxb-secret" not in listing.text + page.text  # the slack URL's token
    assert 'id="nav-incidents"' in client.get("/overview", headers=ADMIN).text
    assert client.get("/incidents/no-such-incident", headers=ADMIN).status_code == 404


def test_a_scoped_operator_sees_and_opens_only_its_own_incidents(client, seeded):
    mine = _incidents(client, TENANT_A)
    assert {i["id"] for i in mine} == {seeded.open_incident, seeded.resolved_incident}
    assert _incidents(client, TENANT_A, integration="golioth-b") == []
    for path in (f"/incidents/{seeded.org_b_incident}", f"/api/incidents/{seeded.org_b_incident}"):
        response = client.get(path, headers=TENANT_A)
        assert response.status_code == 404, path
        assert "inbox of golioth-b" not in response.text
    for path in ("/incidents", "/api/incidents"):
        response = client.get(path, params={"organization": "org-b"}, headers=TENANT_A)
        assert response.status_code == 403 and "scoped to organization" in response.text
    assert client.get("/incidents").status_code == 401


@pytest.mark.parametrize("seeded", ["postgres"], indirect=True)
def test_row_level_security_holds_a_scoped_operators_incidents_without_a_filter(seeded):
    with reading(seeded.store, Operator("tenant", "org-a")) as conn:
        unfiltered = incident_page(conn, IncidentFilter(), after=None, limit=100).incidents
        notified = conn.execute(
            sa.text("SELECT DISTINCT organization_id FROM alert_notifications")
        ).scalars()
        assert set(notified) == {"org-a"}
    assert {v.incident.organization_id for v in unfiltered} == {"org-a"}
    with reading(seeded.store, Operator("admin", None)) as conn:
        everyone = incident_page(conn, IncidentFilter(), after=None, limit=100).incidents
    assert {v.incident.organization_id for v in everyone} == {"org-a", "org-b"}


def test_the_html_pages_follow_the_keyset_cursor(client, seeded):
    first = client.get("/incidents", params={"limit": 2}, headers=ADMIN)
    assert f"/incidents/{seeded.org_b_incident}" in first.text
    assert f"/incidents/{seeded.resolved_incident}" not in first.text
    link = first.text.split('id="next-page-incidents" href="')[1].split('"')[0]
    second = client.get(link.replace("&amp;", "&").removeprefix("/console"), headers=ADMIN)
    assert f"/incidents/{seeded.resolved_incident}" in second.text
    assert f"/incidents/{seeded.org_b_incident}" not in second.text
    assert 'id="next-page-incidents"' not in second.text


def test_the_csv_export_follows_the_filter_and_the_scope(client, seeded):
    exported = client.get("/export/incidents.csv", params={"status": "open"}, headers=ADMIN)
    assert exported.status_code == 200
    assert exported.headers["content-disposition"].startswith('attachment; filename="incidents-')
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {r["id"] for r in rows} == {seeded.open_incident, seeded.org_b_incident}
    bad = next(r for r in rows if r["id"] == seeded.open_incident)
    assert (bad["notifications_sent"], bad["notifications_failed"]) == ("2", "2")
    mine = client.get("/export/incidents.csv", headers=TENANT_A).text
    assert "org-b" not in mine and seeded.resolved_incident in mine
    assert client.get("/export/incidents.json", headers=ADMIN).status_code == 400
