"""Who gets in and what they see: credentials from the environment only, 401 without them, 503
when none are configured, and an operator scoped to one organization never sees another's rows —
not by editing the URL, and on Postgres not even through a query that forgets its filter (RLS)."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import ProgrammingError
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.clock import utc_now
from sync_pipelines.console.access import reading
from sync_pipelines.console.app import create_console_app
from sync_pipelines.console.auth import ConsoleAuth, ConsoleConfigError, Operator
from sync_pipelines.console.filters import ActivityFilter
from sync_pipelines.console.overview import integration_overview
from sync_pipelines.console.queries import activity_page
from sync_pipelines_tests.console.conftest import (
    ADMIN_PASSWORD,
    ADMIN_TOKEN,
    CONSOLE_ENV,
    ORG_A_TOKEN,
    basic,
    bearer,
)

TENANT_A = bearer(ORG_A_TOKEN)


def test_credentials_map_to_an_operator_and_anything_else_to_nobody():
    auth = ConsoleAuth.from_env(CONSOLE_ENV)
    assert auth.authenticate(f"Bearer {ADMIN_TOKEN}") == Operator(
        "operator (all organizations)", None
    )
    assert (
        auth.authenticate(basic("operator", ADMIN_PASSWORD)["authorization"]).organization_id
        is None
    )
    assert auth.authenticate(f"Bearer {ORG_A_TOKEN}").organization_id == "org-a"
    assert (
        auth.authenticate(basic("org-a", ORG_A_TOKEN)["authorization"]).organization_id == "org-a"
    )
    for header in (
        None,
        "",
        f"Bearer {ADMIN_TOKEN}x",
        f"Bearer {ADMIN_PASSWORD}",  # a basic-auth password is not a bearer token
        basic("org-b", ORG_A_TOKEN)["authorization"],  # org-a's secret under org-b's name
        basic("operator", ADMIN_TOKEN)["authorization"],
        "Basic !!!not-base64",
        f"Token {ADMIN_TOKEN}",
    ):
        assert auth.authenticate(header) is None, header


def test_short_or_malformed_secrets_are_refused_at_start():
    with pytest.raises(ConsoleConfigError, match="SYNC_CONSOLE_TOKEN is shorter than 16"):
        ConsoleAuth.from_env({"SYNC_CONSOLE_TOKEN": "hunter2"})
    with pytest.raises(ConsoleConfigError, match="organization_id=secret"):
        ConsoleAuth.from_env({"SYNC_CONSOLE_TENANT_TOKENS": "x" * 40})
    assert not ConsoleAuth.from_env({}).enabled


def test_a_request_without_valid_credentials_gets_401(client):
    for path in ("/activity", "/api/activity", "/overview", "/export/activity.csv", "/trace?id=x"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Basic realm=")
        assert client.get(path, headers=bearer("wrong-" + "x" * 30)).status_code == 401
    assert client.get("/static/console.css").status_code == 200  # no data in it


def test_the_console_is_disabled_with_503_when_no_credentials_are_configured(seeded):
    with EmulatorServer(create_console_app(seeded.store, environ={})) as server:
        response = httpx.get(f"{server.url}/api/activity", headers=bearer(ADMIN_TOKEN))
    assert response.status_code == 503
    assert "SYNC_CONSOLE_TOKEN" in response.json()["error"]


def test_a_scoped_operator_sees_only_its_organization_whatever_the_url_says(client, seeded):
    rows = client.get("/api/activity", params={"limit": 500}, headers=TENANT_A).json()["rows"]
    assert rows and {r["organization_id"] for r in rows} == {"org-a"}
    for path, params in (
        ("/api/activity", {"organization": "org-b"}),
        ("/activity", {"organization": "org-b"}),
        ("/export/activity.json", {"organization": "org-b"}),
        ("/api/overview", {"organization": "org-b"}),
        ("/trace", {"id": seeded.org_b_run, "organization": "org-b"}),
    ):
        response = client.get(path, params=params, headers=TENANT_A)
        assert response.status_code == 403, path
        assert "scoped to organization" in response.text and "org-a" in response.text
    # another organization's ids and integration lead nowhere
    assert (
        client.get("/api/activity", params={"q": seeded.org_b_run}, headers=TENANT_A).json()["rows"]
        == []
    )
    assert (
        client.get("/api/activity", params={"integration": "golioth-b"}, headers=TENANT_A).json()[
            "rows"
        ]
        == []
    )
    assert (
        client.get("/api/trace", params={"id": seeded.org_b_run}, headers=TENANT_A).status_code
        == 404
    )
    overview = client.get("/api/overview", headers=TENANT_A).json()
    assert {i["organization_id"] for i in overview["integrations"]} == {"org-a"}
    export = client.get("/export/activity.csv", headers=TENANT_A).text
    assert "org-b" not in export


@pytest.mark.parametrize("seeded", ["postgres"], indirect=True)
def test_row_level_security_holds_a_scoped_operator_even_without_a_filter(seeded):
    store, now = seeded.store, utc_now()
    with reading(store, Operator("tenant", "org-a")) as conn:
        unfiltered = activity_page(conn, ActivityFilter(), now=now, limit=500).rows
        other = conn.execute(
            sa.text("SELECT count(*) FROM integration_activity_log WHERE organization_id = 'org-b'")
        ).scalar_one()
        integrations = {
            r.integration_id for r in integration_overview(conn, "org-a", now=now).integrations
        }
        forgetful = conn.execute(sa.text("SELECT DISTINCT organization_id FROM integrations"))
        assert set(forgetful.scalars()) == {"org-a"}
        role = conn.execute(sa.text("SELECT current_user")).scalar_one()
    assert unfiltered and {r["organization_id"] for r in unfiltered} == {"org-a"}
    assert other == 0
    assert integrations == {"golioth-a", "golioth-bad"}
    assert role == "sync_tenant"
    # and the way across tenants (sql/026's named functions) is closed to a tenant: an overview
    # that forgot its organization is refused, not answered with another tenant's rows
    with (
        pytest.raises(ProgrammingError, match="permission denied for function"),
        reading(store, Operator("tenant", "org-a")) as conn,
    ):
        integration_overview(conn, None, now=now)
    with reading(store, Operator("admin", None)) as conn:
        everyone = activity_page(conn, ActivityFilter(), now=now, limit=500).rows
    assert {r["organization_id"] for r in everyone} == {"org-a", "org-b"}


def test_the_console_server_points_its_root_at_the_console(console_server):
    response = httpx.get(f"{console_server.url}/", follow_redirects=False, timeout=10)
    assert (response.status_code, response.headers["location"]) == (307, "/console/")
