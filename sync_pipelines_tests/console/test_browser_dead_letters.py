"""Dead letters in a real browser (Debian's headless Chromium via Playwright, as
test_browser.py), over a Postgres store of its own: an operator with a write credential walks
overview → integration page → its dead letters → one letter → Replay, and sees it resolved (the
device it carried is then stored); a read-only operator sees no buttons and is refused the POST;
another organization's letter is 404 by editing the URL. Screenshots: dead-letters.png,
dead-letter.png under $SYNC_TEST_ARTIFACTS/console (default test-artifacts/console)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing

import pytest
from playwright.sync_api import expect
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.console.server import create_console_server
from sync_pipelines.store.devices import get_device
from sync_pipelines_tests.console.conftest import ORG_A_TOKEN
from sync_pipelines_tests.console.test_browser import _page, _shot, artifacts, browser
from sync_pipelines_tests.console.test_dead_letters import ENV, ORG_A_WRITER, _seed, _status

pytestmark = pytest.mark.parametrize("store", ["postgres"], indirect=True)
__all__ = ["artifacts", "browser"]  # the browser and screenshot fixtures, shared


@pytest.fixture
def console(store, golioth_factory, register_golioth) -> Iterator[tuple[str, object]]:
    seeded = _seed(store, golioth_factory, register_golioth)
    app = create_console_server(store, environ=ENV)
    with closing(app.state.console), EmulatorServer(app) as server:
        yield f"{server.url}/console", seeded


def test_a_write_operator_replays_a_dead_letter_and_sees_it_resolved(
    browser, console, store, artifacts
):
    base, seeded = console
    page = _page(browser, "org-a", ORG_A_WRITER)
    page.goto(f"{base}/overview")
    page.locator("#overview a.dead-letters-link").first.click()
    page.wait_for_url("**/console/integrations/golioth-a?dl_status=pending,retrying#dead-letters")
    letters = page.locator("#dead-letters-table tr.dead-letter")
    expect(letters).to_have_count(2)
    expect(page.locator("#operator")).to_contain_text("may replay and quarantine")
    expect(page.locator("#replay-due")).to_be_visible()
    page.locator("#dead-letters").scroll_into_view_if_needed()
    _shot(page, artifacts, "dead-letters")

    page.locator(f"tr[data-id='{seeded.good.id}'] a.dead-letter-link").click()
    page.wait_for_url(f"**/dead-letters/{seeded.good.id}")
    expect(page.locator("#letter-status")).to_have_text("pending")
    expect(page.locator("#letter-payload")).to_contain_text(seeded.good_device)
    page.click("#replay")
    page.wait_for_url(f"**/dead-letters/{seeded.good.id}?done=replay")
    expect(page.locator("#letter-status")).to_have_text("resolved")
    expect(page.locator("#action-notice")).to_contain_text("is resolved")
    expect(page.locator("#letter-history")).to_contain_text("writer of org-a")
    expect(page.locator("#replay")).to_have_count(0)
    _shot(page, artifacts, "dead-letter")
    assert _status(store, seeded.good) == "resolved"
    with store.scoped("org-a").connect() as conn:
        assert get_device(conn, "org-a", "golioth-a", seeded.good_device) is not None

    # the one still broken: replayed, it fails again and says why
    page.goto(f"{base}/integrations/golioth-a/dead-letters/{seeded.broken.id}")
    page.click("#replay")
    expect(page.locator("#letter-status")).to_have_text("retrying")
    expect(page.locator("#action-notice")).to_contain_text("failed again")

    # another organization's letter, by editing the URL
    page.goto(f"{base}/integrations/golioth-b/dead-letters/{seeded.org_b.id}")
    expect(page.locator("#error-message")).to_contain_text("no dead letter")


def test_a_read_only_operator_sees_no_buttons_and_is_refused(browser, console, store):
    base, seeded = console
    page = _page(browser, "org-a", ORG_A_TOKEN)
    page.goto(f"{base}/integrations/golioth-a")
    expect(page.locator("#dead-letters-table tr.dead-letter")).to_have_count(2)
    expect(page.locator("#dead-letters-table button")).to_have_count(0)
    expect(page.locator("#replay-due")).to_have_count(0)
    page.goto(f"{base}/integrations/golioth-a/dead-letters/{seeded.good.id}")
    expect(page.locator("#letter-status")).to_have_text("pending")
    expect(page.locator("form[method=post]")).to_have_count(0)
    # the same POST the write operator's button sends, from the page
    status = page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST', body: new URLSearchParams(
            {csrf_token: 'x'})})).status""",
        f"{base}/integrations/golioth-a/dead-letters/{seeded.good.id}/replay",
    )
    assert status == 403
    assert _status(store, seeded.good) == "pending"
