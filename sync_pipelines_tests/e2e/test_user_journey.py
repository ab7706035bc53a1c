"""End to end as a user: the real `dagster-webserver` and `dagster-daemon` on a Postgres-backed
instance (deploy/dagster.yaml) over the repo's workspace.yaml. In the order a user meets it:
the integration sensor adds the partitions, a sync launched through GraphQL succeeds, the poll
schedule starts a run on its own tick, a run with bad credentials fails and the failure sensor
records it, the asset page in Chromium shows the checks and the sync's figures, and the
health report's chart renders there. Screenshots go to `$SYNC_TEST_ARTIFACTS`
(default `<repo>/test-artifacts/`)."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster_graphql import DagsterGraphQLClient
from playwright.sync_api import Locator, Page, expect, sync_playwright

from sync_pipelines.checks.integration_checks import CHECKS
from sync_pipelines.store.database import Store
from sync_pipelines.store.event_failures import event_failures
from sync_pipelines.store.integrations import get_integration
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines_tests.e2e.stack import (
    DEVICE_COUNT,
    LOCATION,
    ORGANIZATION,
    POLLED,
    REPOSITORY,
    SYNCED,
    WRONG_KEY_ENV,
    DagsterStack,
)
from sync_pipelines_tests.e2e.waiting import wait_for

# dagster-graphql's client calls gql in a way gql 4 deprecates, on every request
pytestmark = pytest.mark.filterwarnings("ignore:Using variable_values:DeprecationWarning")

SYNC_JOB = "sync_golioth_integration"
DEVICES_ASSET = "golioth_devices"
SCHEDULE = "golioth_poll_schedule"
PARTITIONS = "golioth_integrations"
REPORT_JOB = "report_integration_health"
REPORT_ASSET = "integration_health_report"
TERMINAL = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
# a queued run waits for the daemon, then a fresh process loads the code location
RUN_TIMEOUT_S = 150
# the schedule ticks on the minute; a run status sensor every 30 s (its minimum interval)
SCHEDULE_TICK_TIMEOUT_S = 75
FAILURE_SENSOR_TIMEOUT_S = 75
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
]


def _selector(kind: str, name: str) -> dict[str, str]:
    return {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, f"{kind}Name": name}


def _finished(client: DagsterGraphQLClient, run_id: str) -> dg.DagsterRunStatus:
    return wait_for(
        lambda: (status := client.get_run_status(run_id)) in TERMINAL and status,
        timeout_s=RUN_TIMEOUT_S,
        what=f"run {run_id} to finish",
    )


def _wait_for_partitions(instance: dg.DagsterInstance) -> None:
    wait_for(
        lambda: {SYNCED, POLLED} <= set(instance.get_dynamic_partitions(PARTITIONS)),
        timeout_s=60,
        what="the integrations' partitions",
    )


def _launch_sync(client: DagsterGraphQLClient, integration_id: str) -> str:
    return client.submit_job_execution(
        SYNC_JOB,
        repository_location_name=LOCATION,
        repository_name=REPOSITORY,
        tags={"dagster/partition": integration_id},
    )


@pytest.fixture(scope="module")
def poll_schedule(stack: DagsterStack, instance: dg.DagsterInstance) -> Iterator[str]:
    """The Golioth poll schedule, turned on through GraphQL once the integrations' partitions
    exist (its first tick comes on the minute, while the tests before it run); its state id."""
    _wait_for_partitions(instance)
    started = stack.graphql(
        """
        mutation ($selector: ScheduleSelector!) {
          startSchedule(scheduleSelector: $selector) {
            __typename ... on ScheduleStateResult { scheduleState { id status } }
            ... on PythonError { message }
          }
        }""",
        {"selector": _selector("schedule", SCHEDULE)},
    )["startSchedule"]
    assert started["__typename"] == "ScheduleStateResult", started
    assert started["scheduleState"]["status"] == "RUNNING"
    yield started["scheduleState"]["id"]
    stack.graphql(
        "mutation ($id: String!) { stopRunningSchedule(id: $id) { __typename } }",
        {"id": started["scheduleState"]["id"]},
    )


@pytest.fixture(scope="module")
def synced_run(
    stack: DagsterStack, client: DagsterGraphQLClient, instance: dg.DagsterInstance
) -> str:
    """A sync of SYNCED launched through GraphQL, once its partition exists; its run id."""
    _wait_for_partitions(instance)
    run_id = _launch_sync(client, SYNCED)
    _finished(client, run_id)
    return run_id


def test_the_integration_sensor_adds_a_partition_per_integration_under_the_daemon(
    stack: DagsterStack, poll_schedule: str
):
    query = """
    query ($selector: SensorSelector!) {
      sensorOrError(sensorSelector: $selector) {
        __typename
        ... on Sensor { sensorState { status ticks(limit: 10) {
          status dynamicPartitionsRequestResults { partitionsDefName partitionKeys type } } } }
      }
    }"""

    def added_keys() -> set[str]:
        sensor = stack.graphql(
            query, {"selector": _selector("sensor", "integration_partitions_sensor")}
        )
        ticks = sensor["sensorOrError"]["sensorState"]["ticks"]
        return {
            key
            for tick in ticks
            for request in tick["dynamicPartitionsRequestResults"]
            if request["type"] == "ADD_PARTITIONS" and request["partitionsDefName"] == PARTITIONS
            for key in request["partitionKeys"]
        }

    added = wait_for(
        lambda: {SYNCED, POLLED} <= (keys := added_keys()) and keys,
        timeout_s=60,
        what="the sensor's tick",
    )
    assert added == {SYNCED, POLLED}


def test_a_sync_launched_through_graphql_succeeds(
    client: DagsterGraphQLClient, instance: dg.DagsterInstance, synced_run: str
):
    assert client.get_run_status(synced_run) == dg.DagsterRunStatus.SUCCESS
    run = instance.get_run_by_id(synced_run)
    assert run.tags["dagster/partition"] == SYNCED and run.tags["provider"] == "golioth"
    records = instance.get_records_for_run(
        synced_run, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    events = [r.event_log_entry.asset_materialization for r in records]
    materializations = {m.asset_key.to_user_string(): m for m in events}
    assert set(materializations) == {DEVICES_ASSET, "golioth_device_states"}
    devices = materializations[DEVICES_ASSET]
    assert devices.partition == SYNCED
    assert devices.metadata["fetched"].value == DEVICE_COUNT


def test_the_poll_schedule_starts_runs_for_due_integrations_on_its_tick(
    stack: DagsterStack,
    client: DagsterGraphQLClient,
    instance: dg.DagsterInstance,
    poll_schedule: str,
):
    query = """
    query ($selector: ScheduleSelector!) {
      scheduleOrError(scheduleSelector: $selector) {
        ... on Schedule { scheduleState { ticks(limit: 10) { status runIds timestamp } } }
      }
    }"""

    def ticks_with_runs() -> list[dict]:
        schedule = stack.graphql(query, {"selector": _selector("schedule", SCHEDULE)})
        ticks = schedule["scheduleOrError"]["scheduleState"]["ticks"]
        return sorted(
            (t for t in ticks if t["status"] == "SUCCESS" and t["runIds"]),
            key=lambda t: t["timestamp"],
        )

    first, *_ = wait_for(
        ticks_with_runs, timeout_s=SCHEDULE_TICK_TIMEOUT_S, what=f"a tick of {SCHEDULE} with runs"
    )
    runs = [instance.get_run_by_id(run_id) for run_id in first["runIds"]]
    # one run per due integration. POLLED is due (never synced); SYNCED too when the tick came
    # before its sync above had started (if not, it was not due: it had just synced)
    partitions = [run.tags["dagster/partition"] for run in runs]
    assert POLLED in partitions and set(partitions) <= {SYNCED, POLLED}
    assert len(set(partitions)) == len(partitions)
    for run in runs:
        assert run.tags["dagster/schedule_name"] == SCHEDULE
        assert _finished(client, run.run_id) == dg.DagsterRunStatus.SUCCESS


@pytest.fixture(scope="module")
def report_run(client: DagsterGraphQLClient, synced_run: str) -> str:
    """The integration-health report of the organization, launched through GraphQL after its
    first sync; its run id (not waited for here)."""
    return client.submit_job_execution(
        REPORT_JOB,
        repository_location_name=LOCATION,
        repository_name=REPOSITORY,
        run_config={
            "ops": {REPORT_ASSET: {"config": {"organization_id": ORGANIZATION, "hours": 1}}}
        },
    )


# the report is launched now so that it runs while this test waits for the failure sensor
@pytest.mark.usefixtures("report_run")
def test_a_run_with_bad_credentials_fails_and_the_failure_sensor_records_it(
    stack: DagsterStack, client: DagsterGraphQLClient, synced_run: str
):
    store = Store(stack.store_url)
    with store.connect() as conn:
        integration = get_integration(conn, ORGANIZATION, SYNCED)
    wrong = dataclasses.replace(integration, secret_refs={"api_key": WRONG_KEY_ENV})
    register_integration(store, wrong)  # the user names the wrong variable: the provider says 401
    try:
        run_id = _launch_sync(client, SYNCED)
        assert _finished(client, run_id) == dg.DagsterRunStatus.FAILURE

        def recorded() -> list[dict]:
            with store.connect() as conn:
                rows = event_failures(conn, ORGANIZATION, integration_id=SYNCED)
            return [r for r in rows if r["run_id"] == run_id]

        [failure] = wait_for(
            recorded, timeout_s=FAILURE_SENSOR_TIMEOUT_S, what="the failure sensor's row"
        )
    finally:
        register_integration(store, integration)
        store.dispose()
    assert failure["job_name"] == SYNC_JOB and failure["partition_key"] == SYNCED
    assert failure["step_key"] == DEVICES_ASSET
    assert failure["error_type"] == "AuthError" and "401" in failure["error_message"]
    wrong_key = stack.env[WRONG_KEY_ENV]
    assert wrong_key not in failure["error_message"] + (failure["error_stack"] or "")


@pytest.fixture(scope="module")
def page(stack: DagsterStack) -> Iterator[Page]:
    # the first visit from localhost asks to join the community; a user who has seen it once
    # is not asked again, and that is recorded through the same mutation the dialog calls
    stack.graphql("mutation { setNuxSeen }")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        try:
            # tall: the UI scrolls inside its own panes, so the page is as long as the window
            page = browser.new_page(viewport={"width": 1440, "height": 1400})
            page.set_default_timeout(30_000)
            # expect() has its own 5 s default: on a busy 2-core CI machine the asset page first
            # renders from the workspace snapshot (shown as "External Asset") and fills in the
            # definition and materializations when its queries answer, which took longer once
            expect.set_options(timeout=30_000)
            yield page
        finally:
            browser.close()


def test_the_asset_page_shows_the_checks_and_the_sync_figures(
    stack: DagsterStack, page: Page, artifacts_dir: Path, synced_run: str
):
    page.goto(f"{stack.url}/assets/{DEVICES_ASSET}")
    with _screenshot_afterwards(page, artifacts_dir / f"{DEVICES_ASSET}_asset_page.png"):
        expect(page.get_by_text("Latest materialization")).to_be_visible()
        expect(page.get_by_text("Latest check results")).to_be_visible()
        # the latest materialization's figures (of whichever integration synced last)
        for key, value in {"fetched": DEVICE_COUNT, "failed": 0, "record_failure_rate": 0}.items():
            expect(_metadata_value(page, key)).to_have_text(str(value))
        for key in ("duration_s", "devices_per_s", "p95_latency_ms"):
            expect(_metadata_value(page, key)).to_have_text(re.compile(r"^\d+(\.\d+)?$"))

    page.goto(f"{stack.url}/assets/{DEVICES_ASSET}?view=checks")
    with _screenshot_afterwards(page, artifacts_dir / f"{DEVICES_ASSET}_checks.png"):
        expect(page.get_by_text(f"Checks ({len(CHECKS)})")).to_be_visible()
        for check in CHECKS:
            expect(page.get_by_text(check.name, exact=True).first).to_be_attached()


def test_the_health_report_chart_renders_in_the_browser(
    stack: DagsterStack,
    client: DagsterGraphQLClient,
    page: Page,
    artifacts_dir: Path,
    report_run: str,
):
    assert _finished(client, report_run) == dg.DagsterRunStatus.SUCCESS
    page.goto(f"{stack.url}/assets/{REPORT_ASSET}")
    with _screenshot_afterwards(page, artifacts_dir / f"{REPORT_ASSET}_chart.png"):
        report_row = page.locator("tr").filter(
            has=page.locator("td").get_by_text("report", exact=True)
        )
        report_row.get_by_text("[Show Markdown]").click()
        # the chart travels in the Markdown as a data: URI; the UI must not strip it
        chart = page.get_by_role("dialog").locator("img[src^='data:image/png;base64,']")
        expect(chart).to_be_visible()
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=chart.element_handle()
        )


def _metadata_value(page: Page, key: str) -> Locator:
    """The value cell of the metadata table's row `key` (key, timestamp, value)."""
    row = page.locator("tr").filter(has=page.locator("td").get_by_text(key, exact=True))
    return row.locator("td").last


@contextlib.contextmanager
def _screenshot_afterwards(page: Page, path: Path) -> Iterator[None]:
    """A full-page screenshot once the assertions are done; also when one fails, to see why."""
    try:
        yield
    finally:
        page.screenshot(path=path, full_page=True)
        print(f"screenshot: {path}")
