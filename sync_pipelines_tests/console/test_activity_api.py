"""The console's JSON API over a store seeded by real syncs, on SQLite and Postgres: keyset pages,
every filter and search kind, exports, the overview and the trace — all through the console's own server."""

from __future__ import annotations

import csv
import io
import json

from sync_pipelines_tests.console.conftest import ADMIN_TOKEN, bearer

ADMIN = bearer(ADMIN_TOKEN)


def _rows(client, **params):
    response = client.get("/api/activity", params={"limit": 500, **params}, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()["rows"]


def test_pages_are_newest_first_and_keyset_pages_cover_every_row_once(client):
    everything = _rows(client)
    assert len(everything) > 20
    seen, after = [], None
    while True:
        params = {"limit": 7, **({"after": after} if after else {})}
        page = client.get("/api/activity", params=params, headers=ADMIN).json()
        seen += page["rows"]
        after = page["next_cursor"]
        if after is None:
            break
    assert [r["id"] for r in seen] == [r["id"] for r in everything]
    keys = [(r["created_at"], r["id"]) for r in seen]
    assert keys == sorted(keys, reverse=True)


def test_each_filter_narrows_to_matching_rows(client, seeded):
    failed = _rows(client, status="failed")
    assert failed and {r["status"] for r in failed} == {"failed"}
    assert any(r["status_code"] == 401 and r["integration_id"] == "golioth-bad" for r in failed)
    assert {r["integration_id"] for r in _rows(client, integration="golioth-bad")} == {
        "golioth-bad"
    }
    assert {r["organization_id"] for r in _rows(client, organization="org-b")} == {"org-b"}
    assert {r["direction"] for r in _rows(client, direction="incoming")} == {"incoming"}
    assert {r["activity_type"] for r in _rows(client, activity_type="import")} == {"import"}
    assert len(_rows(client, provider="golioth")) == len(_rows(client))
    assert _rows(client, provider="mqtt") == []
    assert len(_rows(client, range="1h")) == len(_rows(client))
    assert _rows(client, since="2999-01-01T00:00:00Z") == []
    assert _rows(client, until="2000-01-01T00:00") == []


def test_search_finds_a_request_a_run_a_device_and_a_webhook_event(client, seeded):
    attempts = _rows(client, q=seeded.retried_request_id)
    assert sorted(r["status"] for r in attempts) == ["retrying", "success"]
    assert {r["request_id"] for r in attempts} == {seeded.retried_request_id}
    run = _rows(client, q=seeded.failed_run)
    assert run and {r["run_id"] for r in run} == {seeded.failed_run}
    device = _rows(client, q=seeded.device_id)
    assert seeded.retried_request_id in {r["request_id"] for r in device}
    assert "webhook_received" in {r["activity_type"] for r in device}
    event = _rows(client, q=seeded.event_id)
    assert "webhook_received" in {r["activity_type"] for r in event}
    assert seeded.webhook_run in {r["run_id"] for r in event}  # the inbox run that applied it
    assert _rows(client, q="no-such-id") == []


def test_a_filter_the_console_cannot_use_is_a_400_naming_it(client):
    for params, named in (
        ({"status": "exploded"}, "status"),
        ({"since": "yesterday"}, "since"),
        ({"after": "not-a-cursor"}, "cursor"),
        ({"limit": "100000"}, "limit"),
    ):
        response = client.get("/api/activity", params=params, headers=ADMIN)
        assert response.status_code == 400
        assert named in response.json()["error"]


def test_exports_hold_the_filtered_rows_redacted(client, seeded):
    expected = _rows(client, status="failed")
    response = client.get("/export/activity.csv", params={"status": "failed"}, headers=ADMIN)
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["id"] for r in table] == [r["id"] for r in expected]

    everything = client.get("/export/activity.json", headers=ADMIN)
    bundle = everything.json()
    assert bundle["kind"] == "activity_filter" and bundle["row_count"] == len(_rows(client))
    headers = [r["request_headers"] for r in bundle["activity_rows"] if r["request_headers"]]
    assert any(h.get("x-api-key") == "[REDACTED]" for h in headers)
    assert seeded.api_key not in everything.text


def test_the_overview_shows_each_integrations_health_and_the_failed_count(client):
    overview = client.get("/api/overview", headers=ADMIN).json()
    states = {i["integration_id"]: i for i in overview["integrations"]}
    assert set(states) == {"golioth-a", "golioth-bad", "golioth-b"}
    assert states["golioth-bad"]["state"] == "unhealthy"
    assert states["golioth-bad"]["last_error"].startswith("auth")
    assert states["golioth-a"]["dead_letters"] == 1
    assert states["golioth-b"]["state"] == "healthy"
    assert states["golioth-b"]["last_success_at"] is not None
    assert overview["failed_integrations"] == 1
    only_b = client.get("/api/overview", params={"organization": "org-b"}, headers=ADMIN).json()
    assert [i["integration_id"] for i in only_b["integrations"]] == ["golioth-b"]


def test_the_trace_is_the_support_bundle_of_the_chain(client, seeded):
    bundle = client.get(
        "/api/trace", params={"id": seeded.retried_request_id}, headers=ADMIN
    ).json()
    assert bundle["kind"] == "request" and bundle["organization_id"] == "org-a"
    assert sorted(
        r["status"] for r in bundle["activity_rows"] if r["request_id"] == seeded.retried_request_id
    ) == [
        "retrying",
        "success",
    ]
    download = client.get("/export/trace.json", params={"id": seeded.sync_run}, headers=ADMIN)
    assert json.loads(download.text)["kind"] == "run"
    assert client.get("/api/trace", params={"id": "no-such-id"}, headers=ADMIN).status_code == 404


def test_the_pages_render_with_dagster_run_links_and_never_the_api_key(client, seeded):
    page = client.get("/activity", params={"status": "failed"}, headers=ADMIN)
    assert page.status_code == 200 and "badge status-failed" in page.text
    assert "option selected>failed" in page.text
    trace = client.get(
        "/trace", params={"id": seeded.sync_run, "organization": "org-a"}, headers=ADMIN
    )
    assert f"http://dagster.example:3000/runs/{seeded.sync_run}" in trace.text
    overview = client.get("/overview", headers=ADMIN)
    assert "golioth-bad" in overview.text
    for response in (page, trace, overview):
        assert seeded.api_key not in response.text
        assert response.headers["cache-control"] == "no-store"
