"""Dead letters on the integration page and their own page, and the write operator's replay and
quarantine buttons — on SQLite and Postgres, against the console's own server on a loopback port
and a store of its own per test (the actions write): letters made by the store's own dead-letter
writer, replayed through the replay job's code with a Golioth emulator as the integration's peer.

Read-only credentials see no buttons and are refused the POST (403); an action needs the
operator's CSRF token and a same-origin request; another organization's letter is 404 whatever
the URL says; each action leaves an activity row naming the operator."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.clock import utc_now
from sync_pipelines.console.app import create_console_app
from sync_pipelines.observability.activity import REPLAY
from sync_pipelines.observability.redaction import register_secret
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.database import Store
from sync_pipelines.store.dead_letters import (
    DeadLetter,
    DeadLetterPolicy,
    FailedRecord,
    get_dead_letter,
    list_dead_letters,
    mark_resolved,
    record_dead_letters,
)
from sync_pipelines.store.devices import get_device
from sync_pipelines_tests.console.conftest import ADMIN_TOKEN, ORG_A_TOKEN, ORG_B_TOKEN, bearer

WRITER_TOKEN = "writer-all-" + "w" * 32
ORG_A_WRITER = "writer-a-" + "x" * 32
ORG_B_WRITER = "writer-b-" + "y" * 32
ENV = {
    "SYNC_CONSOLE_TOKEN": ADMIN_TOKEN,
    "SYNC_CONSOLE_TENANT_TOKENS": f"org-a={ORG_A_TOKEN},org-b={ORG_B_TOKEN}",
    "SYNC_CONSOLE_WRITE_TOKEN": WRITER_TOKEN,
    "SYNC_CONSOLE_TENANT_WRITE_TOKENS": f"org-a={ORG_A_WRITER},org-b={ORG_B_WRITER}",
}
#: a value the provider might echo back in a payload: never shown
PAYLOAD_SECRET = "sk-live-" + "p" * 24


@dataclass
class Letters:
    store: Store
    url: str
    client: httpx.Client
    #: golioth-a's letters: a device whose payload is fine now, one still broken, and org-b's
    good: DeadLetter
    broken: DeadLetter
    resolved: DeadLetter
    org_b: DeadLetter
    good_device: str


def _fail(
    store: Store, org: str, iid: str, device: str, payload: object, *, when=None
) -> DeadLetter:
    with store.scoped(org).transaction() as conn:
        record_dead_letters(
            conn,
            organization_id=org,
            integration_id=iid,
            provider="golioth",
            records=[
                FailedRecord(
                    stream="devices",
                    dedupe_key=device,
                    error_type="validation",
                    error_message=f"device {device}: hardwareIds must be a list",
                    payload=payload,
                    external_id=device,
                    request_id=f"req-{device}",
                )
            ],
            policy=DeadLetterPolicy(),
            run_id="run-sync",
            now=when or utc_now(),
        )
        [letter] = [
            d
            for d in list_dead_letters(conn, org)
            if d.external_id == device and d.integration_id == iid
        ]
    return letter


@dataclass
class Seeded:
    good: DeadLetter
    broken: DeadLetter
    resolved: DeadLetter
    org_b: DeadLetter
    good_device: str


def _seed(store: Store, golioth_factory, register_golioth) -> Seeded:
    running = golioth_factory(device_count=3)
    register_golioth(store, running)  # org-a / golioth-a
    register_golioth(store, running, organization_id="org-b", integration_id="golioth-b")
    good_device = next(running.emulator.device_ids())
    register_secret(PAYLOAD_SECRET)
    good = _fail(store, "org-a", "golioth-a", good_device, running.emulator.get_device(good_device))
    broken = _fail(
        store,
        "org-a",
        "golioth-a",
        "broken-1",
        {"id": "broken-1", "hardwareIds": "oops", "api_key": PAYLOAD_SECRET},
    )
    resolved = _fail(store, "org-a", "golioth-a", "fixed-1", {"id": "fixed-1"})
    with store.scoped("org-a").transaction() as conn:
        mark_resolved(conn, "org-a", [resolved.id], run_id="run-fixed", now=utc_now())
    org_b = _fail(store, "org-b", "golioth-b", "b-1", {"id": "b-1", "hardwareIds": "oops"})
    return Seeded(good, broken, resolved, org_b, good_device)


@contextmanager
def _console(store: Store, console_store: Store, seeded: Seeded) -> Iterator[Letters]:
    """The console's server over `console_store` (the login it reads and writes with)."""
    app = create_console_app(console_store, environ=ENV)
    with (
        closing(app.state.console),
        EmulatorServer(app) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield Letters(
            store,
            server.url,
            client,
            seeded.good,
            seeded.broken,
            seeded.resolved,
            seeded.org_b,
            seeded.good_device,
        )


@pytest.fixture
def letters(store, golioth_factory, register_golioth) -> Iterator[Letters]:
    with _console(store, store, _seed(store, golioth_factory, register_golioth)) as seeded:
        yield seeded


def _letter_url(letter: DeadLetter) -> str:
    return f"/integrations/{letter.integration_id}/dead-letters/{letter.id}"


def _token(letters: Letters, letter: DeadLetter, credential: str) -> str:
    """The CSRF token the letter's page hands this operator."""
    page = letters.client.get(_letter_url(letter), headers=bearer(credential))
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, "no action form on the page"
    return found.group(1)


def _post(
    letters: Letters,
    path: str,
    credential: str,
    token: str | None,
    *,
    origin: str | None = "same",
) -> httpx.Response:
    headers = bearer(credential)
    if origin == "same":
        headers["origin"] = letters.url
    elif origin is not None:
        headers["origin"] = origin
    return letters.client.post(
        path,
        data={"csrf_token": token} if token is not None else {},
        headers=headers,
        follow_redirects=False,
    )


def _status(store: Store, letter: DeadLetter) -> str:
    with store.scoped(letter.organization_id).connect() as conn:
        found = get_dead_letter(conn, letter.organization_id, letter.id)
    assert found is not None
    return found.status


def _operator_rows(store: Store, org: str) -> list[dict]:
    with store.scoped(org).connect() as conn:
        rows = activity_rows(conn, org, activity_type=REPLAY)
    return [r for r in rows if r["metadata"].get("by") == "console"]


# -- reading -----------------------------------------------------------------------------------


def test_the_section_lists_the_letters_not_resolved_newest_first_with_their_fields(letters):
    listed = letters.client.get(
        "/api/integrations/golioth-a/dead-letters", headers=bearer(ORG_A_TOKEN)
    ).json()
    assert [d["id"] for d in listed["dead_letters"]] == [letters.broken.id, letters.good.id]
    broken = listed["dead_letters"][0]
    assert (broken["status"], broken["stream"], broken["external_id"], broken["attempts"]) == (
        "pending",
        "devices",
        "broken-1",
        0,
    )
    assert broken["request_id"] == "req-broken-1"
    assert broken["error_message"] == "device broken-1: hardwareIds must be a list"
    assert broken["first_failed_at"] and broken["next_attempt_at"] and not broken["due"]
    assert listed["statuses"] == ["pending", "retrying", "quarantined"]

    resolved = letters.client.get(
        "/api/integrations/golioth-a/dead-letters",
        params={"dl_status": "resolved"},
        headers=bearer(ORG_A_TOKEN),
    ).json()
    assert [d["id"] for d in resolved["dead_letters"]] == [letters.resolved.id]
    everything = letters.client.get(
        "/api/integrations/golioth-a/dead-letters",
        params={"dl_status": "all"},
        headers=bearer(ADMIN_TOKEN),
    ).json()
    assert len(everything["dead_letters"]) == 3


def test_the_section_pages_by_keyset_each_letter_once(letters):
    seen, after = [], None
    while True:
        params = {"dl_status": "all", "dl_limit": 1, **({"dl_after": after} if after else {})}
        page = letters.client.get(
            "/api/integrations/golioth-a/dead-letters", params=params, headers=bearer(ORG_A_TOKEN)
        ).json()
        seen += [d["id"] for d in page["dead_letters"]]
        after = page["next_cursor"]
        if after is None:
            break
    assert seen == [letters.resolved.id, letters.broken.id, letters.good.id]
    html = letters.client.get(
        "/integrations/golioth-a", params={"dl_limit": 1}, headers=bearer(ORG_A_TOKEN)
    ).text
    assert 'id="dead-letters-older"' in html and "dl_after=" in html


def test_a_bad_filter_or_cursor_is_400_naming_the_parameter(letters):
    for params, named in (({"dl_status": "lost"}, "dl_status"), ({"dl_after": "x"}, "dl_after")):
        response = letters.client.get(
            "/api/integrations/golioth-a/dead-letters", params=params, headers=bearer(ADMIN_TOKEN)
        )
        assert response.status_code == 400 and named in response.json()["error"]


def test_the_integration_page_shows_the_section_and_the_overview_count_links_to_it(letters):
    html = letters.client.get("/integrations/golioth-a", headers=bearer(ORG_A_TOKEN)).text
    # the counts say open (pending, retrying) as health does, and link to exactly those letters
    open_link = "?dl_status=pending,retrying#dead-letters"
    assert 'id="dead-letters"' in html
    assert f'id="dead-letter-count" href="{open_link}">2 open</a>' in html
    assert 'id="quarantined-count" href="?dl_status=quarantined#dead-letters">0 quarantined' in html
    assert html.count('class="dead-letter letter-') == 2
    assert f'/integrations/golioth-a/dead-letters/{letters.good.id}"' in html
    overview = letters.client.get("/overview", headers=bearer(ORG_A_TOKEN)).text
    assert f'href="/integrations/golioth-a{open_link}">2</a>' in overview


def test_a_letter_page_shows_its_payload_and_error_redacted(letters):
    page = letters.client.get(_letter_url(letters.broken), headers=bearer(ORG_A_TOKEN))
    api = letters.client.get(
        f"/api{_letter_url(letters.broken)}", headers=bearer(ORG_A_TOKEN)
    ).json()
    assert page.status_code == 200
    assert api["payload"]["id"] == "broken-1" and api["payload"]["hardwareIds"] == "oops"
    assert api["payload"]["api_key"] != PAYLOAD_SECRET
    assert PAYLOAD_SECRET not in page.text and PAYLOAD_SECRET not in str(api)
    assert "hardwareIds must be a list" in page.text and "req-broken-1" in page.text
    assert api["csrf_token"] is None  # a read-only operator gets no token


# -- who may act -------------------------------------------------------------------------------


def test_read_only_operators_see_no_buttons_and_are_refused_the_action(letters):
    for credential in (ORG_A_TOKEN, ADMIN_TOKEN):
        for path in ("/integrations/golioth-a", _letter_url(letters.good)):
            html = letters.client.get(path, headers=bearer(credential)).text
            assert "csrf_token" not in html and 'class="replay"' not in html, path
        for action in ("replay", "quarantine"):
            refused = _post(letters, f"{_letter_url(letters.good)}/{action}", credential, "x")
            assert refused.status_code == 403 and "read-only credential" in refused.text
        due = _post(letters, "/integrations/golioth-a/dead-letters/replay-due", credential, "x")
        assert due.status_code == 403
    assert _status(letters.store, letters.good) == "pending"
    assert _operator_rows(letters.store, "org-a") == []


def test_write_operators_see_the_buttons(letters):
    html = letters.client.get("/integrations/golioth-a", headers=bearer(ORG_A_WRITER)).text
    assert html.count('class="replay"') == 2 and 'id="replay-due"' in html
    assert "may replay and quarantine" in html


def test_an_action_without_a_valid_token_or_from_another_origin_is_403_and_changes_nothing(
    letters,
):
    path = f"{_letter_url(letters.good)}/replay"
    token = _token(letters, letters.good, ORG_A_WRITER)
    other_operators = _token(letters, letters.good, WRITER_TOKEN)
    forged = token.split(".")[0] + ".AAAA"
    for attempt, kwargs in (
        ("no token", {"token": None}),
        ("a forged token", {"token": forged}),
        ("another operator's token", {"token": other_operators}),
        ("another site", {"token": token, "origin": "https://evil.example"}),
        ("an opaque origin", {"token": token, "origin": "null"}),
        ("no origin nor referer", {"token": token, "origin": None}),
    ):
        response = _post(letters, path, ORG_A_WRITER, **kwargs)
        assert response.status_code == 403, attempt
    assert _status(letters.store, letters.good) == "pending"
    assert _operator_rows(letters.store, "org-a") == []
    # a referer from the console's own page is enough without an Origin
    referred = letters.client.post(
        path,
        data={"csrf_token": token},
        headers={**bearer(ORG_A_WRITER), "referer": f"{letters.url}{_letter_url(letters.good)}"},
        follow_redirects=False,
    )
    assert referred.status_code == 303


def test_another_organizations_letter_is_404_whatever_the_url_says(letters):
    token = _token(letters, letters.org_b, ORG_B_WRITER)
    a_token = _token(letters, letters.good, ORG_A_WRITER)
    for path in (
        _letter_url(letters.org_b),
        f"/api{_letter_url(letters.org_b)}",
        f"/integrations/golioth-a/dead-letters/{letters.org_b.id}",
    ):
        assert letters.client.get(path, headers=bearer(ORG_A_WRITER)).status_code == 404, path
    for path in (
        f"{_letter_url(letters.org_b)}/replay",
        f"{_letter_url(letters.org_b)}/quarantine",
        f"/integrations/golioth-a/dead-letters/{letters.org_b.id}/replay",
    ):
        assert _post(letters, path, ORG_A_WRITER, a_token).status_code == 404, path
    # org-b's writer on org-a's letter, with its own valid token
    assert (
        _post(letters, f"{_letter_url(letters.good)}/replay", ORG_B_WRITER, token).status_code
        == 404
    )
    assert (
        _post(
            letters, "/integrations/golioth-a/dead-letters/replay-due", ORG_B_WRITER, token
        ).status_code
        == 404
    )
    assert _status(letters.store, letters.org_b) == "pending"
    assert _status(letters.store, letters.good) == "pending"


# -- the actions -------------------------------------------------------------------------------


def test_a_replay_that_goes_through_resolves_the_letter_and_names_the_operator(letters):
    token = _token(letters, letters.good, ORG_A_WRITER)
    response = _post(letters, f"{_letter_url(letters.good)}/replay", ORG_A_WRITER, token)
    assert response.status_code == 303
    assert response.headers["location"] == f"{_letter_url(letters.good)}?done=replay"

    assert _status(letters.store, letters.good) == "resolved"
    with letters.store.scoped("org-a").connect() as conn:
        assert get_device(conn, "org-a", "golioth-a", letters.good_device) is not None
    [row] = _operator_rows(letters.store, "org-a")
    assert row["metadata"]["actor"] == "writer of org-a"
    assert (row["metadata"]["action"], row["metadata"]["outcome"]) == ("replay", "resolved")
    assert row["metadata"]["dead_letter_id"] == letters.good.id
    assert row["run_id"].startswith("console-") and row["integration_id"] == "golioth-a"

    page = letters.client.get(response.headers["location"], headers=bearer(ORG_A_WRITER)).text
    assert "is resolved" in page and "writer of org-a" in page
    assert 'id="replay"' not in page  # nothing left to replay


def test_a_replay_that_fails_again_shows_the_letter_retrying_with_its_error(letters):
    token = _token(letters, letters.broken, WRITER_TOKEN)
    response = _post(letters, f"{_letter_url(letters.broken)}/replay", WRITER_TOKEN, token)
    assert response.status_code == 303
    assert _status(letters.store, letters.broken) == "retrying"
    page = letters.client.get(response.headers["location"], headers=bearer(WRITER_TOKEN)).text
    assert "failed again: the letter is retrying" in page
    [row] = _operator_rows(letters.store, "org-a")
    assert (row["metadata"]["actor"], row["metadata"]["outcome"]) == (
        "writer (all organizations)",
        "retrying",
    )


def test_a_replay_that_cannot_start_is_409_and_still_a_row_naming_the_operator(letters):
    # the integration's stored settings are broken under the console's feet: the replay's
    # session refuses them before it claims anything
    with letters.store.transaction() as conn:
        conn.execute(
            sa.text("UPDATE integrations SET settings = :s WHERE integration_id = 'golioth-a'"),
            {"s": '{"base_url": "http://127.0.0.1:9", "project_id": "p", "page_size": "lots"}'},
        )
    token = _token(letters, letters.good, WRITER_TOKEN)
    response = _post(letters, f"{_letter_url(letters.good)}/replay", WRITER_TOKEN, token)
    assert response.status_code == 409 and "page_size" in response.text
    assert _status(letters.store, letters.good) == "pending"
    [row] = _operator_rows(letters.store, "org-a")
    assert row["status"] == "failed" and "page_size" in row["metadata"]["reason"]
    assert (row["metadata"]["actor"], row["metadata"]["outcome"]) == (
        "writer (all organizations)",
        "pending",
    )


def test_quarantine_sets_the_letter_aside_and_names_the_operator(letters):
    token = _token(letters, letters.broken, ORG_A_WRITER)
    response = _post(letters, f"{_letter_url(letters.broken)}/quarantine", ORG_A_WRITER, token)
    assert response.status_code == 303
    assert response.headers["location"].endswith("?done=quarantine")
    assert _status(letters.store, letters.broken) == "quarantined"
    [row] = _operator_rows(letters.store, "org-a")
    assert (row["metadata"]["action"], row["metadata"]["actor"]) == (
        "quarantine",
        "writer of org-a",
    )
    # quarantined: it can still be replayed, not quarantined again
    again = _post(letters, f"{_letter_url(letters.broken)}/quarantine", ORG_A_WRITER, token)
    assert again.headers["location"].endswith("?done=nothing")
    assert len(_operator_rows(letters.store, "org-a")) == 1


def test_replay_all_due_replays_the_due_letters_only(letters):
    with letters.store.scoped("org-a").transaction() as conn:
        conn.execute(
            sa.text("UPDATE dead_letters SET next_attempt_at = :t WHERE id = :id"),
            {"t": utc_now(), "id": letters.good.id},
        )
    token = _token(letters, letters.good, ORG_A_WRITER)
    response = _post(
        letters, "/integrations/golioth-a/dead-letters/replay-due", ORG_A_WRITER, token
    )
    assert response.status_code == 303
    assert response.headers["location"] == (
        "/integrations/golioth-a?replayed=1&resolved=1#dead-letters"
    )
    assert _status(letters.store, letters.good) == "resolved"
    assert _status(letters.store, letters.broken) == "pending"  # not due yet
    assert [r["metadata"]["dead_letter_id"] for r in _operator_rows(letters.store, "org-a")] == [
        letters.good.id
    ]
    page = letters.client.get(response.headers["location"], headers=bearer(ORG_A_WRITER)).text
    assert "Replayed 1 due letter(s): 1 resolved." in page


# -- Postgres: which login writes ------------------------------------------------------------


@contextmanager
def _login(postgres_url: str, *roles: str) -> Iterator[Store]:
    """A login role of the console's kind: a member of `roles` only (no superuser, owns nothing)."""
    name = f"console_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {name} LOGIN IN ROLE {', '.join(roles)}")
    store = Store(postgres_url.replace("postgres@", f"{name}@", 1))
    try:
        yield store
    finally:
        store.dispose()
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (name,),
            )
            admin.execute(f"DROP OWNED BY {name}")
            admin.execute(f"DROP ROLE {name}")


def test_a_console_login_granted_sync_app_replays_under_row_security(
    owner_store, postgres_url, golioth_factory, register_golioth
):
    seeded = _seed(owner_store, golioth_factory, register_golioth)
    with (
        _login(postgres_url, "sync_tenant", "sync_operator", "sync_app") as login,
        _console(owner_store, login, seeded) as letters,
    ):
        token = _token(letters, letters.good, WRITER_TOKEN)
        replayed = _post(letters, f"{_letter_url(letters.good)}/replay", WRITER_TOKEN, token)
        token = _token(letters, letters.broken, ORG_A_WRITER)
        quarantined = _post(
            letters, f"{_letter_url(letters.broken)}/quarantine", ORG_A_WRITER, token
        )
    assert (replayed.status_code, quarantined.status_code) == (303, 303)
    assert _status(owner_store, seeded.good) == "resolved"
    assert _status(owner_store, seeded.broken) == "quarantined"
    actors = [
        (r["metadata"]["action"], r["metadata"]["actor"])
        for r in _operator_rows(owner_store, "org-a")
    ]
    assert actors == [("replay", "writer (all organizations)"), ("quarantine", "writer of org-a")]
    assert _status(owner_store, seeded.org_b) == "pending"


def test_a_console_login_without_sync_app_is_told_what_to_grant_and_changes_nothing(
    owner_store, postgres_url, golioth_factory, register_golioth
):
    seeded = _seed(owner_store, golioth_factory, register_golioth)
    with (
        _login(postgres_url, "sync_tenant", "sync_operator") as login,
        _console(owner_store, login, seeded) as letters,
    ):
        assert (
            letters.client.get("/integrations/golioth-a", headers=bearer(ORG_A_WRITER)).status_code
            == 200
        )
        token = _token(letters, letters.good, ORG_A_WRITER)
        for action in ("replay", "quarantine"):
            refused = _post(letters, f"{_letter_url(letters.good)}/{action}", ORG_A_WRITER, token)
            assert refused.status_code == 500
            assert "GRANT sync_app TO &lt;console login role&gt;" in refused.text
    assert _status(owner_store, seeded.good) == "pending"
    assert _operator_rows(owner_store, "org-a") == []


def test_an_oversized_action_form_is_refused_before_it_is_read(letters):
    token = _token(letters, letters.good, ORG_A_WRITER)
    response = letters.client.post(
        f"{_letter_url(letters.good)}/replay",
        data={"csrf_token": token, "padding": "x" * 10_000},
        headers={**bearer(ORG_A_WRITER), "origin": letters.url},
    )
    assert response.status_code == 400 and "at most 4096 bytes" in response.text
    assert _status(letters.store, letters.good) == "pending"


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_a_superuser_login_that_copied_rows_itself_still_writes_as_the_held_role(letters):
    """The login COPYs straight into the activity log (it bypasses row security); acting as
    sync_app it may not, and must stage its rows instead (store/pg_copy.py keys by the role)."""
    from sync_pipelines.observability.activity import ActivityScope, activity_row
    from sync_pipelines.sync.activity_sink import StoreActivitySink

    row = activity_row(ActivityScope("org-a", "golioth-a"), "test_connection", created_at=utc_now())
    StoreActivitySink(letters.store).insert([row])  # the login's own COPY, remembered
    token = _token(letters, letters.good, ORG_A_WRITER)
    response = _post(letters, f"{_letter_url(letters.good)}/replay", ORG_A_WRITER, token)
    assert response.status_code == 303
    assert _status(letters.store, letters.good) == "resolved"
