"""`webhook_inbox_sensor`: pending inbox events → bounded run requests with batch run keys and a
cursor, one test per cursor scenario, against a real store (SQLite and Postgres) and a test
instance; and the run it requests really processes the batch."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import dagster as dg
import pytest

from sync_pipelines.clock import utc_now
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.webhook_inbox import (
    EVENTS_PER_RUN_ENV,
    OP_NAME,
    RUNS_PER_TICK_ENV,
    STALE_AFTER_S,
    process_webhook_inbox,
    webhook_inbox_sensor,
)
from sync_pipelines.store.devices import get_device
from sync_pipelines.store.webhook_events import list_events
from sync_pipelines_tests.webhook_support import insert_pending, register_webhook_integration


def _evaluate(store, instance, cursor=None) -> dg.SensorResult:
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"store": SyncStoreResource(database_url=store.url)},
    ) as context:
        return webhook_inbox_sensor(context)


def _cursor_id(result: dg.SensorResult) -> str:
    return json.loads(result.cursor)["id"]


def _events(store, integration, count, **kwargs):
    """`count` pending events, received in order (distinct received_at, as the receiver's clock gives)."""
    start = kwargs.pop("received_at", utc_now())
    return [
        insert_pending(
            store,
            integration,
            event_type="t",
            payload={"n": i},
            external_id="d",
            received_at=start + timedelta(milliseconds=i),
            **kwargs,
        )
        for i in range(count)
    ]


@pytest.fixture
def two_integrations(store, monkeypatch):
    a, _ = register_webhook_integration(
        store, monkeypatch, provider="golioth", integration_id="wh-a"
    )
    b, _ = register_webhook_integration(
        store, monkeypatch, provider="azure_iot", integration_id="wh-b"
    )
    return a, b


def test_first_events_become_one_run_per_integration_with_batch_keys(
    store, instance, two_integrations
):
    a, b = two_integrations
    a_events = _events(store, a, 3)
    # b's after a's (a fast machine may take both clock readings within a's 2 ms)
    b_events = _events(
        store, b, 2, received_at=a_events[-1].received_at + timedelta(milliseconds=1)
    )
    result = _evaluate(store, instance)
    requests = {r.tags["integration_id"]: r for r in result.run_requests}
    assert set(requests) == {"wh-a", "wh-b"}
    assert requests["wh-a"].run_key == f"wh-a:{a_events[0].id}..{a_events[-1].id}"
    assert requests["wh-b"].run_key == f"wh-b:{b_events[0].id}..{b_events[-1].id}"
    assert requests["wh-a"].run_config == {
        "ops": {OP_NAME: {"config": {"integration_id": "wh-a", "limit": 200}}}
    }
    assert _cursor_id(result) == b_events[-1].id  # the last event covered


def test_nothing_new_requests_nothing_and_keeps_the_cursor(store, instance, two_integrations):
    _events(store, two_integrations[0], 2)
    first = _evaluate(store, instance)
    again = _evaluate(store, instance, cursor=first.cursor)
    assert again.run_requests == [] and again.cursor == first.cursor


def test_only_events_after_the_cursor_are_requested(store, instance, two_integrations):
    a, _ = two_integrations
    _events(store, a, 2)
    first = _evaluate(store, instance)
    later = _events(store, a, 2, received_at=utc_now() + timedelta(seconds=1))
    result = _evaluate(store, instance, cursor=first.cursor)
    assert [r.run_key for r in result.run_requests] == [f"wh-a:{later[0].id}..{later[1].id}"]
    assert _cursor_id(result) == later[1].id


def test_runs_are_bounded_per_run_and_per_tick_and_the_rest_waits_for_the_next_tick(
    store, instance, two_integrations, monkeypatch
):
    monkeypatch.setenv(EVENTS_PER_RUN_ENV, "2")
    monkeypatch.setenv(RUNS_PER_TICK_ENV, "2")
    events = _events(store, two_integrations[0], 5)
    first = _evaluate(store, instance)
    assert [r.run_key for r in first.run_requests] == [
        f"wh-a:{events[0].id}..{events[1].id}",
        f"wh-a:{events[2].id}..{events[3].id}",
    ]
    assert {r.run_config["ops"][OP_NAME]["config"]["limit"] for r in first.run_requests} == {2}
    assert _cursor_id(first) == events[3].id
    second = _evaluate(store, instance, cursor=first.cursor)
    assert [r.run_key for r in second.run_requests] == [f"wh-a:{events[4].id}..{events[4].id}"]


def test_events_left_pending_behind_the_cursor_get_an_overdue_sweep(
    store, instance, two_integrations
):
    a, _ = two_integrations
    stuck = _events(store, a, 2, received_at=utc_now() - timedelta(seconds=STALE_AFTER_S + 60))
    fresh = _events(store, two_integrations[1], 1)
    cursor = json.dumps({"received_at": fresh[0].received_at.isoformat(), "id": fresh[0].id})
    result = _evaluate(store, instance, cursor=cursor)
    period = int(time.time() // STALE_AFTER_S)
    assert [r.run_key for r in result.run_requests] == [
        f"wh-a:overdue:{stuck[0].id}..{stuck[1].id}@{period}"
    ]
    assert result.cursor == cursor


def test_events_of_a_disabled_integration_wait(store, instance, monkeypatch):
    off, _ = register_webhook_integration(
        store, monkeypatch, provider="golioth", integration_id="wh-off", enabled=False
    )
    _events(store, off, 2)
    assert _evaluate(store, instance).run_requests == []


def test_the_requested_run_processes_the_batch(store, instance, two_integrations):
    a, _ = two_integrations
    events = _events(store, a, 3)
    [request] = [
        r for r in _evaluate(store, instance).run_requests if r.tags["integration_id"] == "wh-a"
    ]
    outcome = process_webhook_inbox.execute_in_process(
        run_config=request.run_config,
        instance=instance,
        tags=request.tags,
        resources={"store": SyncStoreResource(database_url=store.url)},
    )
    assert outcome.success
    with store.connect() as conn:
        processed = list_events(conn, "org-a", "wh-a")
        device = get_device(conn, "org-a", "wh-a", "d")
    assert [e.status for e in processed] == ["processed"] * 3
    assert {e.run_id for e in processed} == {outcome.run_id} == {device["last_run_id"]}
    assert device["last_request_id"] == events[-1].event_id
