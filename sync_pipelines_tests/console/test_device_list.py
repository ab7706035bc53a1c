"""The devices section of an integration's console page over the seeded store (real syncs of the
Golioth emulator, one poison record dead-lettered), on SQLite and Postgres: every synced device
listed with a link to its own page, the failing filter holding the device whose record was
dead-lettered with its error, a search narrowing the list, keyset pages, a bad parameter refused
naming it, and another organization's devices out of a scoped operator's reach."""

from __future__ import annotations

from urllib.parse import quote

from sync_pipelines_tests.console.conftest import ADMIN_TOKEN, ORG_B_TOKEN, bearer

ADMIN = bearer(ADMIN_TOKEN)


def _devices(client, iid="golioth-a", headers=ADMIN, **params):
    response = client.get(f"/api/integrations/{iid}/devices", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _stored(seeded, iid="golioth-a") -> dict[str, str]:
    with seeded.store.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT external_id, name FROM devices WHERE integration_id = %s ORDER BY external_id"
            if seeded.store.is_postgres
            else "SELECT external_id, name FROM devices WHERE integration_id = ? "
            "ORDER BY external_id",
            (iid,),
        ).all()
    return dict(rows)


def _open_letters(seeded, iid="golioth-a") -> dict[str, str]:
    with seeded.store.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT external_id, error_message FROM dead_letters WHERE integration_id = "
            + ("%s" if seeded.store.is_postgres else "?")
            + " AND status <> 'resolved' AND external_id IS NOT NULL",
            (iid,),
        ).all()
    return dict(rows)


def test_every_stored_device_is_listed_with_its_counts(client, seeded):
    stored = _stored(seeded)
    view = _devices(client, devices_limit=500)
    assert [d["external_id"] for d in view["devices"]] == sorted(stored)
    assert view["counts"]["all"] == len(stored) == view["counts"]["active"]
    assert view["counts"]["deleted"] == 0 and view["next_cursor"] is None
    assert {d["name"] for d in view["devices"]} == set(stored.values())


def test_the_failing_filter_holds_the_poison_record_the_store_never_held(client, seeded):
    letters = _open_letters(seeded)
    assert letters and not set(letters) & set(_stored(seeded))  # the seeded poison record
    view = _devices(client, devices="failing")
    assert [d["external_id"] for d in view["devices"]] == sorted(letters)
    assert view["counts"]["failing"] == len(letters)
    for d in view["devices"]:
        assert d["status"] == "not stored" and d["open_dead_letters"] == 1
        assert letters[d["external_id"]] in d["last_error"]
    html = client.get("/integrations/golioth-a", params={"devices": "failing"}, headers=ADMIN).text
    assert "not stored" in html and "hardwareIds" in html


def test_a_search_narrows_the_list_and_pages_show_each_device_once(client, seeded):
    stored = _stored(seeded)
    some = sorted(stored)[1]
    found = _devices(client, q=some.upper())["devices"]
    assert [d["external_id"] for d in found] == [e for e in sorted(stored) if some in e]
    seen, after = [], None
    while True:
        page = _devices(client, devices_limit=3, **({"devices_after": after} if after else {}))
        seen += [d["external_id"] for d in page["devices"]]
        after = page["next_cursor"]
        if after is None:
            break
    assert seen == sorted(stored)


def test_the_page_links_each_device_to_its_own_page_and_keeps_the_other_list_s_place(
    client, seeded
):
    stored = sorted(_stored(seeded))
    html = client.get(
        "/integrations/golioth-a", params={"devices_limit": 2, "limit": 1}, headers=ADMIN
    ).text
    assert 'id="device-search"' in html
    for device in stored[:2]:
        assert f'/integrations/golioth-a/devices/{quote(device)}"' in html
    assert stored[2] not in html.split('id="devices"')[1].split("</table>")[0]
    more = html.split('id="devices-more" href="')[1].split('"')[0]
    assert "devices_after=" in more and "limit=1" in more
    assert "failing (" in html and "deleted (0)" in html


def test_a_bad_filter_or_limit_is_refused_naming_the_parameter(client, seeded):
    for params, named in (
        ({"devices": "broken"}, "`devices`"),
        ({"devices_limit": "0"}, "`devices_limit`"),
    ):
        response = client.get("/api/integrations/golioth-a/devices", params=params, headers=ADMIN)
        assert response.status_code == 400 and named in response.json()["error"]
        page = client.get("/integrations/golioth-a", params=params, headers=ADMIN)
        assert page.status_code == 400 and named in page.text


def test_a_scoped_operator_cannot_list_another_organization_s_devices(client, seeded):
    response = client.get("/api/integrations/golioth-a/devices", headers=bearer(ORG_B_TOKEN))
    assert response.status_code == 404
    assert "golioth-a" not in str(_devices(client, "golioth-b", headers=bearer(ORG_B_TOKEN)))
