"""`build_chain` over a real webhook → processing run → sync chain (see conftest.py), on SQLite
and Postgres: each kind of id leads to the right webhook, runs, provider calls, rows, dead
letters, check results and alerts — and only within its organization."""

from __future__ import annotations

import pytest

from sync_pipelines.tracing.chain import (
    DEVICE,
    REQUEST,
    RUN,
    WEBHOOK_EVENT,
    TraceNotFound,
    build_chain,
    matching_kinds,
)
from sync_pipelines_tests.owners import own_integrations
from sync_pipelines_tests.tracing.conftest import INTEGRATION, ORG
from sync_pipelines_tests.tracing.monitoring_rows import insert_alert, insert_check_result


def _chain(traced, ident, **options):
    with traced.store.connect() as conn:
        return build_chain(conn, ORG, ident, **options)


def _call(chain, request_id):
    (call,) = [c for c in chain.calls if c.request_id == request_id]
    return call


def test_a_device_trace_shows_the_webhook_both_runs_and_the_calls_that_wrote_it(traced):
    chain = _chain(traced, traced.device_id)
    assert (chain.kind, chain.also_matches) == (DEVICE, ())
    (webhook,) = chain.webhooks
    assert webhook.event["event_id"] == traced.event_id
    assert (webhook.event["status"], webhook.event["run_id"]) == ("processed", traced.webhook_run)
    (delivery,) = webhook.deliveries
    assert (delivery["activity_type"], delivery["status_code"], delivery["request_id"]) == (
        "webhook_received",
        202,
        traced.event_id,
    )
    assert [r.run_id for r in chain.runs] == [traced.webhook_run, traced.sync_run]
    webhook_run, sync_run = chain.runs
    assert [(r["stream"], r["status"]) for r in webhook_run.sync_logs] == [
        ("webhook_events", "success")
    ]
    assert [r["activity_type"] for r in webhook_run.operations] == ["webhook_processing"]
    assert {r["stream"] for r in sync_run.sync_logs} == {"devices", "device_states"}
    assert {"import", "state_import"} <= {r["activity_type"] for r in sync_run.operations}
    # the calls that wrote the device: the inventory page and the state read, with both attempts
    assert {c.request_id for c in chain.calls} == {traced.page_request_id, traced.state_request_id}
    state_call = _call(chain, traced.state_request_id)
    assert [(a["attempt"], a["status"], a["status_code"]) for a in state_call.attempts] == [
        (1, "retrying", 503),
        (2, "success", 200),
    ]
    assert state_call.run_id == traced.sync_run and state_call.method == "GET"
    assert traced.device_id in state_call.endpoint
    (device,) = chain.devices
    assert (device.integration_id, device.external_id) == (INTEGRATION, traced.device_id)
    assert (device.device["last_run_id"], device.device["last_request_id"]) == (
        traced.sync_run,
        traced.page_request_id,
    )
    assert device.state["last_request_id"] == traced.state_request_id
    assert chain.dead_letters == ()


def test_a_request_trace_shows_its_attempts_its_run_and_the_rows_it_wrote(traced):
    chain = _chain(traced, traced.state_request_id)
    assert chain.kind == REQUEST
    assert [c.request_id for c in chain.calls] == [traced.state_request_id]
    assert [a["attempt"] for a in chain.calls[0].attempts] == [1, 2]
    assert [r.run_id for r in chain.runs] == [traced.sync_run]
    assert chain.runs[0].calls_total > 2 and chain.runs[0].calls_failed == 1
    (device,) = chain.devices
    assert device.external_id == traced.device_id
    assert device.state["last_request_id"] == traced.state_request_id
    assert device.device["last_request_id"] == traced.page_request_id  # written by another call
    assert chain.webhooks == ()


def test_a_page_request_trace_shows_every_device_row_it_wrote_and_its_poison_record(traced):
    chain = _chain(traced, traced.page_request_id)
    written = {
        d.external_id
        for d in chain.devices
        if d.device and d.device["last_request_id"] == traced.page_request_id
    }
    assert traced.device_id in written and len(written) == 4  # a page of five, one poisoned
    (letter,) = chain.dead_letters
    assert (letter["external_id"], letter["stream"], letter["request_id"]) == (
        traced.poisoned_device_id,
        "devices",
        traced.page_request_id,
    )
    (run,) = chain.runs
    assert any(r["activity_type"] == "record_rejected" for r in run.operations)


@pytest.mark.parametrize("by", ["provider event id", "inbox row id"])
def test_an_event_trace_shows_its_delivery_its_processing_run_and_its_device(traced, by):
    ident = traced.event_id if by == "provider event id" else traced.event_row_id
    chain = _chain(traced, ident)
    assert chain.kind == WEBHOOK_EVENT
    # a single-event delivery's request id is the event id: it is a request too
    assert chain.also_matches == ((REQUEST,) if by == "provider event id" else ())
    (webhook,) = chain.webhooks
    assert webhook.event["id"] == traced.event_row_id
    assert [d["request_id"] for d in webhook.deliveries] == [traced.event_id]
    assert [r.run_id for r in chain.runs] == [traced.webhook_run]
    assert chain.runs[0].sync_logs[0]["created"] == 1
    (device,) = chain.devices
    assert device.external_id == traced.device_id
    assert device.device["last_run_id"] == traced.sync_run  # the sync rewrote it since


def test_a_run_trace_shows_every_call_its_sync_logs_and_its_dead_letter(traced):
    chain = _chain(traced, traced.sync_run)
    assert chain.kind == RUN
    (run,) = chain.runs
    assert sum(len(c.attempts) for c in chain.calls) == run.calls_total
    assert run.calls_failed == 1
    assert {traced.page_request_id, traced.state_request_id} <= {c.request_id for c in chain.calls}
    assert [
        (r["stream"], r["status"]) for r in sorted(run.sync_logs, key=lambda r: r["stream"])
    ] == [
        ("device_states", "success"),
        ("devices", "partial"),
    ]
    assert [d["external_id"] for d in chain.dead_letters] == [traced.poisoned_device_id]
    assert chain.webhooks == () and chain.devices == ()


def test_a_run_trace_with_a_call_limit_keeps_the_failed_calls(traced):
    chain = _chain(traced, traced.sync_run, call_limit=1)
    # the retried call, and the page its dead letter came from; none of the other state reads
    assert {c.request_id for c in chain.calls} == {traced.state_request_id, traced.page_request_id}
    assert chain.runs[0].calls_total > 4


def test_the_webhook_run_trace_shows_the_events_it_processed(traced):
    chain = _chain(traced, traced.webhook_run)
    assert [w.event["event_id"] for w in chain.webhooks] == [traced.event_id]
    assert [r.run_id for r in chain.runs] == [traced.webhook_run]


def test_check_results_and_alerts_of_the_run_are_on_its_chain(traced):
    with traced.store.transaction() as conn:
        insert_check_result(
            conn, ORG, INTEGRATION, run_id=traced.sync_run, check_name="error_rate", passed=False
        )
        incident = insert_alert(conn, ORG, INTEGRATION, run_id=traced.sync_run, rule="error_rate")
        # another organization's alert naming the same run id (on its own integration: an id is
        # one organization's) is not on this organization's chain
        own_integrations(conn, "org-elsewhere", "golioth-elsewhere")
        insert_alert(
            conn, "org-elsewhere", "golioth-elsewhere", run_id=traced.sync_run, rule="error_rate"
        )
    chain = _chain(traced, traced.sync_run)
    assert [(c["check_name"], c["passed"]) for c in chain.check_results] == [("error_rate", False)]
    (alert,) = chain.alerts
    assert alert.incident["id"] == incident
    assert [n["kind"] for n in alert.notifications] == ["firing"]


def test_an_alert_of_the_integration_during_the_chain_is_on_a_device_trace(traced):
    with traced.store.transaction() as conn:
        incident = insert_alert(conn, ORG, INTEGRATION, run_id=None, rule="failure_streak")
    chain = _chain(traced, traced.device_id)
    assert [a.incident["id"] for a in chain.alerts] == [incident]


def test_an_id_of_another_organization_is_not_found(traced):
    with traced.store.connect() as conn:
        assert matching_kinds(conn, "org-other", traced.device_id) == []
        with pytest.raises(TraceNotFound, match="org-other"):
            build_chain(conn, "org-other", traced.device_id)


def test_an_unknown_id_and_a_wrong_kind_are_clear_errors(traced):
    with traced.store.connect() as conn:
        with pytest.raises(TraceNotFound, match="no webhook event, run, request or device 'nope'"):
            build_chain(conn, ORG, "nope")
        with pytest.raises(TraceNotFound, match="it is a device"):
            build_chain(conn, ORG, traced.device_id, kind=RUN)
        with pytest.raises(ValueError, match="unknown kind"):
            build_chain(conn, ORG, traced.device_id, kind="table")


def test_the_integration_filter_narrows_the_search(traced):
    with traced.store.connect() as conn:
        with pytest.raises(TraceNotFound, match="integration 'other'"):
            build_chain(conn, ORG, traced.device_id, integration_id="other")
        assert build_chain(conn, ORG, traced.device_id, integration_id=INTEGRATION).kind == DEVICE


def test_a_rejected_delivery_is_traced_by_its_request_id(traced):
    import httpx
    from sync_pipelines_peers.emulators.server import EmulatorServer

    from sync_pipelines.webhooks.app import create_receiver_app

    with EmulatorServer(create_receiver_app(traced.store)) as receiver:
        response = httpx.post(
            f"{receiver.url}/webhooks/golioth/{INTEGRATION}",
            content=b"{}",
            headers={"webhook-id": "x", "webhook-timestamp": "1", "webhook-signature": "v1,bad"},
            timeout=10,
        )
    assert response.status_code == 401
    chain = _chain(traced, response.headers["x-request-id"])
    (webhook,) = chain.webhooks
    assert webhook.event is None
    assert [(d["status"], d["status_code"]) for d in webhook.deliveries] == [("failed", 401)]
