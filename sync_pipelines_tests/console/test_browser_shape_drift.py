"""Shape drift in a real browser (Chromium, as test_browser.py): an integration whose
`shape_drift_policy=pause` stopped it after a state key was renamed at the Golioth emulator shows
the pause with its reason beside "Enabled", the shape block, and the `shape_changed` entry in its
timeline. Screenshot: test-artifacts/console/integration-shape-drift.png."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.console.server import create_console_server
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines_tests.console.conftest import ADMIN_PASSWORD, CONSOLE_ENV
from sync_pipelines_tests.console.test_browser import _page, _shot, artifacts, browser  # noqa: F401
from sync_pipelines_tests.sync.test_shape_drift import _rename_at_peer


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_a_drift_pause_shows_its_reason_and_the_change_in_the_timeline(
    browser,  # noqa: F811
    artifacts,  # noqa: F811
    store,
    golioth,
    register_golioth,
    open_session,
):
    integ = register_golioth(store, golioth, shape_drift_policy="pause")
    with open_session(store, integ.integration_id) as session:
        sync_devices(session)
    _rename_at_peer(golioth)
    with open_session(store, integ.integration_id) as session:
        sync_devices(session)
    with EmulatorServer(create_console_server(store, environ=CONSOLE_ENV)) as server:
        page = _page(browser, "operator", ADMIN_PASSWORD)
        page.goto(f"{server.url}/console/integrations/golioth-a")
        expect(page.locator("#enabled")).to_contain_text("no")
        expect(page.locator("#drift-pause")).to_contain_text("paused for shape drift")
        expect(page.locator("#drift-pause")).to_contain_text(
            "sync-pipelines integrations enable --organization org-a --id golioth-a"
        )
        expect(page.locator("#next-sync")).to_have_text("not scheduled (paused for shape drift)")
        expect(page.locator("#health")).to_contain_text("unhealthy")
        expect(page.locator("#shape-drift-policy")).to_have_text("pause")
        expect(page.locator("#shapes tr.shape-device_states")).to_contain_text(
            "- reported.interval_s (number)"
        )
        shape_rows = page.locator("#timeline tr.timeline-shape_changed")
        expect(shape_rows).to_have_count(1)
        expect(shape_rows).to_contain_text(
            "device_states shape changed (paused): + reported.interval (number); "
            "- reported.interval_s (number)"
        )
        expect(
            page.locator("#timeline tr.timeline-config_change", has_text="pause")
        ).to_contain_text("paused for shape drift")
        _shot(page, artifacts, "integration-shape-drift")
