"""The console's page of one integration over the seeded store, on SQLite and Postgres: its
settings with secret references by variable name (never a value), its next scheduled sync and
health, and its 90-day timeline — syncs, alerts opened and resolved, configuration changes —
newest first in keyset pages that show every entry exactly once; a scoped operator cannot open
another organization's integration by editing the URL."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import sqlalchemy as sa

from sync_pipelines.clock import utc_now
from sync_pipelines.console.integration_page import (
    TimelineCursor,
    integration_timeline,
    shown_settings,
)
from sync_pipelines.store.integrations import Integration
from sync_pipelines_tests.conftest import GOLIOTH_KEY_ENV
from sync_pipelines_tests.console.conftest import ADMIN_TOKEN, ORG_A_TOKEN, bearer
from sync_pipelines_tests.owners import own_integrations

ADMIN = bearer(ADMIN_TOKEN)
TENANT_A = bearer(ORG_A_TOKEN)


def _integration(client, iid="golioth-a", headers=ADMIN, **params):
    response = client.get(f"/api/integrations/{iid}", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_page_shows_settings_and_secret_references_by_name_never_a_value(client, seeded):
    view = _integration(client)
    assert view["organization_id"] == "org-a" and view["provider"] == "golioth"
    assert view["enabled"] is True and view["poll_interval_s"] > 0
    assert view["settings"]["project_id"] and view["settings"]["page_size"] == 5
    assert view["secret_refs"]["api_key"] == GOLIOTH_KEY_ENV
    page = client.get("/integrations/golioth-a", headers=ADMIN)
    assert page.status_code == 200
    assert f"${GOLIOTH_KEY_ENV}" in page.text
    assert seeded.api_key not in page.text and seeded.api_key not in str(view)


def test_the_next_sync_is_a_poll_interval_after_the_last_sync_started(client, seeded):
    view = _integration(client)
    assert view["last_sync_started_at"] is not None
    assert view["next_sync_at"] > view["last_sync_started_at"]
    assert view["health"]["state"] and isinstance(view["health"]["reasons"], list)


def test_the_timeline_holds_syncs_alerts_and_configuration_changes_newest_first(client, seeded):
    timeline = _integration(client, limit=500)["timeline"]
    kinds = {e["kind"] for e in timeline}
    assert {"sync", "alert_opened", "alert_resolved", "config_change"} <= kinds
    keys = [(e["at"], e["kind"], e["id"]) for e in timeline]
    assert keys == sorted(keys, reverse=True)
    sync = next(e for e in timeline if e["kind"] == "sync" and e["run_id"] == seeded.sync_run)
    assert "deleted" in sync["details"] and "deleted" in sync["summary"]
    assert sync["run_url"] == f"http://dagster.example:3000/runs/{seeded.sync_run}"
    resolved = next(e for e in timeline if e["kind"] == "alert_resolved")
    assert resolved["id"] == seeded.resolved_incident
    assert "error rate back under the threshold" in resolved["summary"]
    change = next(e for e in timeline if e["kind"] == "config_change")
    assert (
        change["details"]["action"] == "add" and "settings.base_url" in change["details"]["changed"]
    )


def test_keyset_pages_of_the_timeline_show_every_entry_exactly_once_in_order(client, seeded):
    everything = _integration(client, limit=500)["timeline"]
    assert len(everything) > 3
    seen, after = [], None
    while True:
        page = _integration(client, limit=2, **({"after": after} if after else {}))
        assert len(page["timeline"]) <= 2
        seen += page["timeline"]
        after = page["next_cursor"]
        if after is None:
            break
    assert [(e["kind"], e["id"]) for e in seen] == [(e["kind"], e["id"]) for e in everything]


def test_the_timeline_exports_as_csv(client, seeded):
    response = client.get("/export/integrations/golioth-a/timeline.csv", headers=ADMIN)
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == len(_integration(client, limit=500)["timeline"])
    assert {"sync", "config_change"} <= {r["kind"] for r in rows}


def test_a_scoped_operator_cannot_open_another_organizations_integration(client, seeded):
    assert _integration(client, "golioth-a", TENANT_A)["organization_id"] == "org-a"
    for path in (
        "/api/integrations/golioth-b",
        "/integrations/golioth-b",
        "/export/integrations/golioth-b/timeline.csv",
    ):
        response = client.get(path, headers=TENANT_A)
        assert response.status_code == 404, path
        assert "golioth-b" in response.text and "org-b" not in response.text.replace(
            "golioth-b", ""
        )
    assert client.get("/api/integrations/nope", headers=ADMIN).status_code == 404


def test_a_cursor_the_console_did_not_write_is_refused(client, seeded):
    response = client.get("/api/integrations/golioth-a", params={"after": "bm9wZQ"}, headers=ADMIN)
    assert response.status_code == 400


def test_settings_urls_lose_their_passwords_and_query_tokens():
    shown = shown_settings(
        {"base_url": "https://user:hunter2@peer.example/api?token=s3cr3t&page=1", "page_size": 5}
    )
    assert "hunter2" not in shown["base_url"] and "s3cr3t" not in shown["base_url"]
    assert "peer.example/api" in shown["base_url"] and "page=1" in shown["base_url"]
    assert shown["page_size"] == 5


def test_entries_sharing_a_timestamp_are_paged_once_each_across_sources(store):
    """Ties on `at`, within a source and across sources, are ordered by (kind, id) bytewise."""
    own_integrations(store, "org-t", "tied")
    at = utc_now().replace(microsecond=0) - timedelta(hours=1)
    with store.transaction() as conn:
        for n, row_id in enumerate(("s-B", "s-a", "s-A", "s_1")):
            conn.execute(
                sa.text(
                    "INSERT INTO integration_sync_log (id, organization_id, integration_id, stream, "
                    "status, started_at, fetched, created, updated, unchanged, failed, conflicts, "
                    "pages) VALUES (:id, 'org-t', 'tied', 'devices', 'success', :at, "
                    ":n, 0, 0, 0, 0, 0, 1)"
                ),
                {"id": row_id, "at": at, "n": n},
            )
        for row_id in ("c-a", "c-B"):
            conn.execute(
                sa.text(
                    "INSERT INTO integration_activity_log (id, organization_id, integration_id, "
                    "direction, activity_type, status, attempt, metadata, created_at) VALUES "
                    "(:id, 'org-t', 'tied', 'internal', 'config_change', 'success', 1, :m, :at)"
                ),
                {"id": row_id, "at": at, "m": '{"action": "update", "changed": ["name"]}'},
            )
    integration = Integration("tied", "org-t", "golioth", "tied")
    with store.connect() as conn:
        everything = integration_timeline(conn, integration, now=utc_now(), after=None, limit=50)
        seen, after = [], None
        while True:
            page = integration_timeline(conn, integration, now=utc_now(), after=after, limit=2)
            seen += page.entries
            if page.next_cursor is None:
                break
            after = TimelineCursor.decode(page.next_cursor.encode())
    assert [(e.kind, e.id) for e in everything.entries] == [
        ("sync", "s_1"),
        ("sync", "s-a"),
        ("sync", "s-B"),
        ("sync", "s-A"),
        ("config_change", "c-a"),
        ("config_change", "c-B"),
    ]
    assert [(e.kind, e.id) for e in seen] == [(e.kind, e.id) for e in everything.entries]
