"""The console's page of one device over the seeded store, on SQLite and Postgres: the device as
stored (active, last synced, last error, open dead letters, attributes, state) and its history
written by the real syncs and the webhook run — newest first, keyset pages showing each change
once, each with its fields old → new, its source and its run — and a scoped operator cannot open
another organization's device by editing the URL."""

from __future__ import annotations

import csv
import io

import sqlalchemy as sa

from sync_pipelines_tests.console.conftest import ADMIN_TOKEN, ORG_A_TOKEN, ORG_B_TOKEN, bearer

ADMIN = bearer(ADMIN_TOKEN)
TENANT_A = bearer(ORG_A_TOKEN)
TENANT_B = bearer(ORG_B_TOKEN)


def _device(client, device_id, iid="golioth-a", headers=ADMIN, **params):
    response = client.get(
        f"/api/integrations/{iid}/devices/{device_id}", params=params, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def _poison_device(seeded) -> str:
    with seeded.store.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT external_id FROM dead_letters WHERE organization_id = 'org-a' "
                "AND integration_id = 'golioth-a' AND stream = 'devices'"
            )
        ).scalar_one()


def test_the_device_and_its_history_from_the_real_sync(client, seeded):
    view = _device(client, seeded.device_id)
    assert (view["device_id"], view["status"], view["organization_id"]) == (
        seeded.device_id,
        "active",
        "org-a",
    )
    assert view["name"] and view["last_synced_at"] and view["open_dead_letters"] == 0
    assert isinstance(view["attributes"], dict) and view["state"] is not None
    history = view["history"]
    keys = [(c["at"], c["id"]) for c in history]
    assert keys == sorted(keys, reverse=True)
    # the webhook event came first: it created the device (its id for a name), then the sync
    # wrote it whole
    created = [c for c in history if c["kind"] == "created"]
    assert len(created) == 1 and created[0]["source"] == "webhook"
    assert created[0]["run_id"] == seeded.webhook_run
    assert {"field": "name", "old": None, "new": seeded.device_id} in created[0]["fields"]
    synced = [c for c in history if c["run_id"] == seeded.sync_run and c["kind"] == "updated"]
    assert synced[-1]["source"] == "sync"
    assert synced[-1]["run_url"] == f"http://dagster.example:3000/runs/{seeded.sync_run}"
    assert {"field": "name", "old": seeded.device_id, "new": view["name"]} in synced[-1]["fields"]
    # the state read wrote its first state: its keys, old (none) -> new
    first_state = [
        c
        for c in synced
        if all(f["field"].startswith(("reported.", "desired.", "version")) for f in c["fields"])
    ]
    assert first_state and all(f["old"] is None for f in first_state[-1]["fields"])
    html = client.get(f"/integrations/golioth-a/devices/{seeded.device_id}", headers=ADMIN)
    assert html.status_code == 200 and 'id="history"' in html.text
    assert seeded.api_key not in html.text


def test_a_rejected_record_is_on_its_device_with_the_reason(client, seeded):
    poison = _poison_device(seeded)  # refused at first sight: never stored
    view = _device(client, poison)
    assert view["status"] == "never stored" and view["last_synced_at"] is None
    assert view["open_dead_letters"] == 1 and view["last_error"]
    rejected = [c for c in view["history"] if c["kind"] == "rejected"]
    assert len(rejected) == 1
    assert rejected[0]["reason"] == view["last_error"] and rejected[0]["dead_letter_id"]
    assert rejected[0]["run_id"] == seeded.sync_run


def test_keyset_pages_show_every_change_exactly_once(client, seeded):
    everything = _device(client, seeded.device_id, limit=500)["history"]
    assert len(everything) >= 2
    seen, after = [], None
    while True:
        page = _device(client, seeded.device_id, limit=1, **({"after": after} if after else {}))
        assert len(page["history"]) <= 1
        seen += page["history"]
        after = page["next_cursor"]
        if after is None:
            break
    assert [c["id"] for c in seen] == [c["id"] for c in everything]
    bad = client.get(
        f"/api/integrations/golioth-a/devices/{seeded.device_id}",
        params={"after": "bogus"},
        headers=ADMIN,
    )
    assert bad.status_code == 400 and "after" in bad.json()["error"]


def test_the_history_exports_as_csv_one_row_per_changed_field(client, seeded):
    view = _device(client, seeded.device_id, limit=500)
    response = client.get(
        f"/export/integrations/golioth-a/devices/{seeded.device_id}/history.csv", headers=ADMIN
    )
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == sum(max(1, len(c["fields"])) for c in view["history"])
    assert {"at", "kind", "field", "old", "new", "source", "run_id"} <= set(rows[0])


def test_another_organizations_device_is_not_found(client, seeded):
    device = seeded.device_id  # golioth-b (org-b) synced the same emulator: the same ids
    assert _device(client, device, iid="golioth-b", headers=TENANT_B)["organization_id"] == "org-b"
    for path in (
        f"/api/integrations/golioth-b/devices/{device}",
        f"/integrations/golioth-b/devices/{device}",
        f"/export/integrations/golioth-b/devices/{device}/history.csv",
    ):
        assert client.get(path, headers=TENANT_A).status_code == 404, path
    assert (
        client.get(f"/api/integrations/golioth-a/devices/{device}", headers=TENANT_B).status_code
        == 404
    )
    missing = client.get("/api/integrations/golioth-a/devices/no-such-device", headers=ADMIN)
    assert missing.status_code == 404 and "no-such-device" in missing.json()["error"]
