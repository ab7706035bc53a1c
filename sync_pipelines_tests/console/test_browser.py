"""The console in a real browser: Debian's headless Chromium driven by Playwright against the
console's own server on a loopback port, over a Postgres store seeded by real syncs. Filters, searches a
request id, follows it into the trace, downloads the exports, pages with the JSON API, walks
overview → incidents → one incident → its integration's activity, and saves screenshots of the
activity, overview, trace, incidents, incident and integration pages (and its devices) under $SYNC_TEST_ARTIFACTS (default
<repo>/test-artifacts/) — their paths are printed."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from sync_pipelines_tests.console.conftest import ADMIN_PASSWORD, ORG_A_TOKEN

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
]
pytestmark = pytest.mark.parametrize("seeded", ["postgres"], indirect=True)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    default = Path(__file__).resolve().parents[2] / "test-artifacts"
    path = Path(os.environ.get("SYNC_TEST_ARTIFACTS") or default) / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"the browser tests need Debian's chromium at {CHROMIUM} (make services installs it)"
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _page(browser: Browser, user: str | None = None, password: str | None = None) -> Page:
    credentials = {"username": user, "password": password} if user else None
    context = browser.new_context(
        http_credentials=credentials,
        accept_downloads=True,
        viewport={"width": 1600, "height": 1000},
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page


def _shot(page: Page, artifacts: Path, name: str) -> None:
    path = artifacts / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def test_an_operator_filters_searches_traces_and_exports(
    browser, console_server, seeded, artifacts
):
    page = _page(browser, "operator", ADMIN_PASSWORD)
    base = f"{console_server.url}/console"
    page.goto(f"{base}/activity")
    rows = page.locator("#activity tbody tr")
    expect(rows.first).to_be_visible()
    _shot(page, artifacts, "activity")

    # a filter, applied through the form, lands in the URL
    page.select_option("select[name=status]", "failed")
    page.click("form#filters button[type=submit]")
    page.wait_for_url("**status=failed**")
    badges = page.locator("#activity .badge").all_inner_texts()
    assert badges and set(badges) == {"failed"}
    _shot(page, artifacts, "activity-failed")

    # the filter's CSV export
    with page.expect_download() as download:
        page.click("#export-csv")
    exported = artifacts / "activity-failed.csv"
    download.value.save_as(exported)
    assert {r["status"] for r in csv.DictReader(exported.open())} == {"failed"}

    # search a request id, then follow it into the trace
    page.goto(f"{base}/activity")
    page.fill("input[name=q]", seeded.retried_request_id)
    page.press("input[name=q]", "Enter")
    page.wait_for_url(f"**q={seeded.retried_request_id}**")
    assert sorted(page.locator("#activity .badge").all_inner_texts()) == ["retrying", "success"]
    page.locator("#activity a.trace-request").first.click()
    expect(page.locator("#trace-title")).to_contain_text(
        f"Trace of request {seeded.retried_request_id}"
    )
    expect(page.locator("#trace-text")).to_contain_text(seeded.sync_run)
    _shot(page, artifacts, "trace")

    # the trace's support bundle
    with page.expect_download() as download:
        page.click("#export-trace-json")
    bundle_path = artifacts / "trace-bundle.json"
    download.value.save_as(bundle_path)
    bundle = json.loads(bundle_path.read_text())
    assert bundle["kind"] == "request" and bundle["id"] == seeded.retried_request_id
    assert seeded.api_key not in bundle_path.read_text()
    print(f"export: {exported}\nexport: {bundle_path}")

    page.goto(f"{base}/overview")
    expect(page.locator("#failed-count b")).to_have_text("1")
    expect(page.locator("#overview")).to_contain_text("golioth-bad")
    _shot(page, artifacts, "overview")


def test_older_rows_are_appended_from_the_json_api(browser, console_server):
    page = _page(browser, "operator", ADMIN_PASSWORD)
    page.goto(f"{console_server.url}/console/activity?limit=5")
    rows = page.locator("#activity tbody tr")
    expect(rows).to_have_count(5)
    with page.expect_response("**/console/api/activity?**") as answer:
        page.click("#next-page")
    assert answer.value.status == 200
    expect(rows).to_have_count(10)
    ids = [rows.nth(i).get_attribute("data-id") for i in range(10)]
    assert len(set(ids)) == 10


def test_the_browser_without_credentials_gets_401(browser, console_server):
    page = _page(browser)
    # a navigation would open the browser's credentials prompt (headless: refused outright), so
    # the request goes through the context's own HTTP client, with the context's (no) credentials
    for path in ("/console/activity", "/console/api/activity"):
        response = page.request.get(f"{console_server.url}{path}")
        assert response.status == 401
        assert response.headers["www-authenticate"].startswith("Basic")
    try:
        page.goto(f"{console_server.url}/console/activity")
    except Exception as exc:  # noqa: BLE001 - Playwright's error type for a refused navigation
        assert "ERR_INVALID_AUTH_CREDENTIALS" in str(exc)
    else:
        pytest.fail("the browser opened the console without credentials")


def test_a_scoped_operator_cannot_reach_another_organization_by_editing_the_url(
    browser, console_server, seeded
):
    page = _page(browser, "org-a", ORG_A_TOKEN)
    page.goto(f"{console_server.url}/console/activity?limit=500")
    organizations = set(page.locator("#activity tbody tr td:nth-child(2)").all_inner_texts())
    assert organizations == {"org-a"}
    response = page.goto(f"{console_server.url}/console/activity?organization=org-b")
    assert response is not None and response.status == 403
    expect(page.locator("#error-message")).to_contain_text("scoped to organization")
    response = page.goto(f"{console_server.url}/console/trace?id={seeded.org_b_run}")
    assert response is not None and response.status == 404


def test_an_operator_walks_from_the_overview_to_an_incident_and_its_integration(
    browser, console_server, seeded, artifacts
):
    page = _page(browser, "operator", ADMIN_PASSWORD)
    page.goto(f"{console_server.url}/console/overview")
    page.click("#nav-incidents")
    page.wait_for_url("**/console/incidents")
    rows = page.locator("#incidents tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("#incidents")).to_contain_text("slack: failed")
    _shot(page, artifacts, "incidents")

    # the status filter, applied through the form, lands in the URL
    page.select_option("#incident-filters select[name=status]", "resolved")
    page.click("#incident-filters button[type=submit]")
    page.wait_for_url("**status=resolved**")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".badge").first).to_have_text("resolved")

    page.goto(f"{console_server.url}/console/incidents?integration=golioth-bad")
    page.locator("#incidents a.incident-link").first.click()
    page.wait_for_url(f"**/console/incidents/{seeded.open_incident}")
    expect(page.locator("#incident-title")).to_contain_text("golioth-bad failed 3 syncs in a row")
    expect(page.locator("#notifications tbody tr")).to_have_count(4)
    _shot(page, artifacts, "incident")

    page.click("#integration-activity")
    page.wait_for_url("**/console/activity?integration=golioth-bad**")
    integrations = set(page.locator("#activity tbody tr td:nth-child(3)").all_inner_texts())
    assert integrations == {"golioth-bad"}


def test_a_scoped_operator_cannot_open_another_organizations_incident(
    browser, console_server, seeded
):
    page = _page(browser, "org-a", ORG_A_TOKEN)
    page.goto(f"{console_server.url}/console/incidents")
    organizations = set(page.locator("#incidents tbody tr td:nth-child(6)").all_inner_texts())
    assert organizations == {"org-a"}
    response = page.goto(f"{console_server.url}/console/incidents/{seeded.org_b_incident}")
    assert response is not None and response.status == 404
    expect(page.locator("#error-message")).to_contain_text("no incident")


def test_an_operator_walks_from_the_overview_to_an_integration_and_its_timeline(
    browser, console_server, seeded, artifacts
):
    page = _page(browser, "operator", ADMIN_PASSWORD)
    page.goto(f"{console_server.url}/console/overview")
    page.locator("#overview a.integration-link", has_text="golioth-a").click()
    page.wait_for_url("**/console/integrations/golioth-a")
    expect(page.locator("#integration-title")).to_contain_text("golioth-a")
    expect(page.locator("#secret-refs")).to_contain_text("api_key → $")
    expect(page.locator("#next-sync")).not_to_be_empty()
    expect(page.locator("#timeline tr.timeline-sync").first).to_contain_text("deleted")
    expect(page.locator("#timeline tr.timeline-alert_resolved")).to_have_count(1)
    expect(page.locator("#timeline tr.timeline-config_change")).to_have_count(1)
    assert seeded.api_key not in page.content()
    _shot(page, artifacts, "integration")

    page.goto(f"{console_server.url}/console/integrations/golioth-a?limit=2")
    expect(page.locator("#timeline tbody tr")).to_have_count(2)
    page.click("#timeline-older")
    page.wait_for_url("**after=**")
    expect(page.locator("#timeline tbody tr")).not_to_have_count(0)

    page.goto(f"{console_server.url}/console/incidents/{seeded.resolved_incident}")
    page.click("#integration-page")
    page.wait_for_url("**/console/integrations/golioth-a")


def test_an_operator_searches_and_filters_an_integration_s_devices(
    browser, console_server, seeded, artifacts
):
    page = _page(browser, "operator", ADMIN_PASSWORD)
    page.goto(f"{console_server.url}/console/integrations/golioth-a")
    rows = page.locator("#devices tbody tr.device")
    expect(rows).not_to_have_count(0)
    listed = rows.count()
    first = rows.first.locator("a.device-link").inner_text()
    page.fill("#device-search input[name=q]", first.upper())
    page.click("#device-search button")
    page.wait_for_url("**q=**")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("a.device-link")).to_have_attribute(
        "href", f"/console/integrations/golioth-a/devices/{first}"
    )
    page.click("#device-search-clear")
    expect(rows).to_have_count(listed)
    # the poison record: refused from its first sync, so the store never held the device
    page.click("#device-filters a.device-filter-failing")
    page.wait_for_url("**devices=failing**")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("not stored")
    expect(rows.first.locator("td.error")).to_contain_text("hardwareIds")
    _shot(page, artifacts, "integration-devices")


def test_a_scoped_operator_cannot_open_another_organizations_integration(
    browser, console_server, seeded
):
    page = _page(browser, "org-a", ORG_A_TOKEN)
    response = page.goto(f"{console_server.url}/console/integrations/golioth-a")
    assert response is not None and response.status == 200
    response = page.goto(f"{console_server.url}/console/integrations/golioth-b")
    assert response is not None and response.status == 404
    expect(page.locator("#error-message")).to_contain_text("no integration")
