"""The device page in a real browser (Chromium, as console/test_browser.py): an operator opens a
device of golioth-a, reads its history (the webhook's creation, the sync's changes old → new),
pages it, follows a change's run into the trace, and saves `device.png`; a scoped operator
cannot open another organization's device by editing the URL."""

# ruff: noqa: F811 - the browser fixtures are test_browser.py's, imported, then named as arguments

from __future__ import annotations

from playwright.sync_api import expect

from sync_pipelines_tests.console.conftest import ADMIN_PASSWORD, ORG_A_TOKEN
from sync_pipelines_tests.console.test_browser import (  # noqa: F401 - fixtures
    _page,
    _shot,
    artifacts,
    browser,
    pytestmark,
)


def test_an_operator_reads_a_devices_history_and_follows_its_run(
    browser,
    console_server,
    seeded,
    artifacts,
):
    page = _page(browser, "operator", ADMIN_PASSWORD)
    base = f"{console_server.url}/console"
    page.goto(f"{base}/integrations/golioth-a/devices/{seeded.device_id}")
    expect(page.locator("#device-title")).to_contain_text(seeded.device_id)
    expect(page.locator("#device-status")).to_contain_text("active")
    expect(page.locator("#open-dead-letters")).to_have_text("0")
    expect(page.locator("#history tr.change-created")).to_have_count(1)
    expect(page.locator("#history tr.change-created")).to_contain_text("webhook")
    renamed = page.locator("#history tr.change-updated", has_text=seeded.sync_run).last
    expect(renamed).to_contain_text("name")
    expect(renamed).to_contain_text("→")
    assert seeded.api_key not in page.content()
    _shot(page, artifacts, "device")

    page.goto(f"{base}/integrations/golioth-a/devices/{seeded.device_id}?limit=1")
    expect(page.locator("#history tbody tr")).to_have_count(1)
    page.click("#history-older")
    page.wait_for_url("**after=**")
    expect(page.locator("#history tbody tr")).to_have_count(1)

    page.goto(f"{base}/integrations/golioth-a/devices/{seeded.device_id}")
    page.locator("#history a", has_text=seeded.sync_run).first.click()
    page.wait_for_url("**/console/trace?id=**")
    page.goto(f"{base}/integrations/golioth-a/devices/{seeded.device_id}")
    page.click("#device-integration")
    page.wait_for_url("**/console/integrations/golioth-a")


def test_a_scoped_operator_cannot_open_another_organizations_device(
    browser,
    console_server,
    seeded,
):
    page = _page(browser, "org-a", ORG_A_TOKEN)
    own = page.goto(
        f"{console_server.url}/console/integrations/golioth-a/devices/{seeded.device_id}"
    )
    assert own is not None and own.status == 200
    other = page.goto(
        f"{console_server.url}/console/integrations/golioth-b/devices/{seeded.device_id}"
    )
    assert other is not None and other.status == 404
    expect(page.locator("#error-message")).to_contain_text("no integration")
