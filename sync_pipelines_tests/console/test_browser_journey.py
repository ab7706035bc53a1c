"""The operator's journey of issue 21's "done when", in a real browser (Debian's headless Chromium
via Playwright, as test_browser.py) over a Postgres store of its own, seeded by real syncs of a
Golioth emulator: one device's state read fails at the peer until its retries are used, so the
sync dead-letters it; the peer then recovers and reports a new state.

An operator holding a write credential walks overview → the integration's page → its timeline
(the partial state sync) → the dead letter → Replay → the letter resolved → the device's page,
whose history shows the replay's change (reported state, source `replay`). The read-only
credential sees no buttons and is refused the POST (403); a tenant cannot open another
organization's integration, device or dead letter by editing the URL (404). Screenshots:
journey-integration.png, journey-letter.png, journey-device.png."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass

import pytest
from playwright.sync_api import expect
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.console.server import create_console_server
from sync_pipelines.store.dead_letters import DeadLetter, list_dead_letters
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.sync.session import RunContext, integration_session
from sync_pipelines_tests.console.conftest import ORG_A_TOKEN
from sync_pipelines_tests.console.test_browser import _page, _shot, artifacts, browser
from sync_pipelines_tests.console.test_dead_letters import ENV, ORG_A_WRITER

pytestmark = pytest.mark.parametrize("store", ["postgres"], indirect=True)
__all__ = ["artifacts", "browser"]  # the browser and screenshot fixtures, shared

#: retries short and few: the failing state read gives up in well under a second
FAST_RETRIES = {
    "state_source": "device",
    "retry_base_backoff_s": 0.01,
    "retry_max_backoff_s": 0.02,
    "retry_jitter_s": 0,
    "retry_max_total_s": 1,
}
NEW_STATE = {"temperature": 21.5, "firmware": "2.4.1"}


@dataclass(frozen=True)
class Journey:
    base: str
    device: str
    letter: DeadLetter
    org_b_device: str
    org_b_letter: DeadLetter


def _sync(store, integration_id: str) -> None:
    run = RunContext(run_id=f"run-{uuid.uuid4().hex[:8]}", step_key="journey", job_name="seed")
    with integration_session(store, integration_id, run) as session:
        sync_devices(session)
        sync_device_states(session)


def _state_letter(store, org: str, device: str) -> DeadLetter:
    with store.scoped(org).connect() as conn:
        (letter,) = [
            d
            for d in list_dead_letters(conn, org)
            if d.external_id == device and d.stream == "device_states"
        ]
    return letter


@pytest.fixture
def journey(store, golioth_factory, register_golioth) -> Iterator[Journey]:
    peers = {}
    api_key = f"gk-{uuid.uuid4().hex}"  # one key variable for both peers, as the fixture has
    for org, iid in (("org-a", "golioth-a"), ("org-b", "golioth-b")):
        running = golioth_factory(device_count=3, api_key=api_key)
        register_golioth(store, running, organization_id=org, integration_id=iid, **FAST_RETRIES)
        device = next(running.emulator.device_ids())
        # the device's state read fails at the peer whatever the retries do
        running.emulator.add_faults(
            {"kind": "server_error", "path": f"/devices/{device}/", "times": 1000}
        )
        _sync(store, iid)
        running.emulator.clear_faults()
        running.emulator.write_state(device, "reported", NEW_STATE)
        peers[org] = (device, _state_letter(store, org, device))
    app = create_console_server(store, environ=ENV)
    with closing(app.state.console), EmulatorServer(app) as server:
        yield Journey(f"{server.url}/console", *peers["org-a"], *peers["org-b"])


def test_a_write_operator_replays_a_dead_letter_and_finds_the_change_on_the_device_page(
    browser, journey, artifacts
):
    j = journey
    page = _page(browser, "org-a", ORG_A_WRITER)
    page.goto(f"{j.base}/overview")
    page.locator("#overview a.integration-link", has_text="golioth-a").click()
    page.wait_for_url("**/console/integrations/golioth-a")
    # the timeline: the state sync that dead-lettered the read is there, partial
    states_sync = page.locator("#timeline tr.timeline-sync", has_text="device_states sync")
    expect(states_sync).to_have_count(1)
    expect(states_sync).to_contain_text("partial")
    expect(states_sync).to_contain_text("1 failed")
    _shot(page, artifacts, "journey-integration")

    page.locator(f"#dead-letters-table tr[data-id='{j.letter.id}'] a.dead-letter-link").click()
    page.wait_for_url(f"**/dead-letters/{j.letter.id}")
    expect(page.locator("#letter-status")).to_have_text("pending")
    page.click("#replay")
    page.wait_for_url(f"**/dead-letters/{j.letter.id}?done=replay")
    expect(page.locator("#letter-status")).to_have_text("resolved")
    expect(page.locator("#letter-history")).to_contain_text("writer of org-a")
    _shot(page, artifacts, "journey-letter")

    page.click("#letter-device-link")
    page.wait_for_url(f"**/console/integrations/golioth-a/devices/{j.device}")
    expect(page.locator("#open-dead-letters")).to_have_text("0")
    expect(page.locator("#last-error-resolved")).to_have_text("resolved")
    newest = page.locator("#history tbody tr").first
    expect(newest).to_contain_text("replay")
    expect(newest).to_contain_text("reported")
    expect(newest).to_contain_text("2.4.1")
    # the failure that came before it is in the history too
    expect(page.locator("#history tr.change-rejected")).to_have_count(1)
    _shot(page, artifacts, "journey-device")


def test_the_read_only_credential_sees_no_buttons_and_is_refused(browser, journey):
    j = journey
    page = _page(browser, "org-a", ORG_A_TOKEN)
    page.goto(f"{j.base}/integrations/golioth-a/dead-letters/{j.letter.id}")
    expect(page.locator("#letter-status")).to_have_text("pending")
    expect(page.locator("form[method=post]")).to_have_count(0)
    status = page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST', body: new URLSearchParams(
            {csrf_token: 'x'})})).status""",
        f"{j.base}/integrations/golioth-a/dead-letters/{j.letter.id}/replay",
    )
    assert status == 403
    page.reload()
    expect(page.locator("#letter-status")).to_have_text("pending")


def test_a_tenant_cannot_open_another_organization_s_pages_by_editing_the_url(browser, journey):
    j = journey
    page = _page(browser, "org-a", ORG_A_WRITER)
    for path, says in (
        ("/integrations/golioth-b", "no integration"),
        (f"/integrations/golioth-b/devices/{j.org_b_device}", "no integration"),
        ("/integrations/golioth-a/devices/no-such-device", "no device"),
        (f"/integrations/golioth-b/dead-letters/{j.org_b_letter.id}", "no dead letter"),
        (f"/integrations/golioth-a/dead-letters/{j.org_b_letter.id}", "no dead letter"),
    ):
        response = page.goto(f"{j.base}{path}")
        assert response is not None and response.status == 404, path
        expect(page.locator("#error-message")).to_contain_text(says)
