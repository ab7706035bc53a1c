"""Webhook inbox processing on SQLite and Postgres: events become device and telemetry rows with
the event id as provenance, processed_at makes the delay measurable, nothing is applied twice,
and an event that cannot be applied is failed, dead-lettered and recorded."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_pipelines.clock import utc_now
from sync_pipelines.observability.activity import WEBHOOK_PROCESSING
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.dead_letters import list_dead_letters
from sync_pipelines.store.devices import get_device
from sync_pipelines.store.telemetry import telemetry_rows
from sync_pipelines.store.webhook_events import (
    claim_events,
    event_counts,
    list_events,
    mark_processed,
    oldest_pending_age_s,
    processing_delay,
    requeue_events,
)
from sync_pipelines.sync.webhook_processing import (
    UnapplicableEvent,
    _aws_version,
    _azure_sequence,
    _epoch_ms_time,
    _iso_time,
    _proto_time,
    process_webhook_events,
)
from sync_pipelines_tests.webhook_support import (
    azure_event,
    insert_pending,
    register_webhook_integration,
)


def _event(store, row_id, integration_id):
    with store.connect() as conn:
        return next(e for e in list_events(conn, "org-a", integration_id) if e.id == row_id)


def _device(store, integration_id, external_id):
    with store.connect() as conn:
        return get_device(conn, "org-a", integration_id, external_id)


def test_azure_lifecycle_events_update_devices_with_the_event_as_provenance(
    store, monkeypatch, open_session
):
    integ, _ = register_webhook_integration(
        store, monkeypatch, provider="azure_iot", integration_id="az-p"
    )
    created = azure_event(
        "DeviceCreated",
        "dev-1",
        {
            "twin": {
                "deviceId": "dev-1",
                "status": "enabled",
                "connectionState": "Disconnected",
                "statusUpdateTime": "0001-01-01T00:00:00",
            }
        },
    )
    connected = azure_event("DeviceConnected", "dev-1", event_time="2026-03-01T10:00:00Z")
    rows = [
        insert_pending(
            store,
            integ,
            event_type=e["eventType"],
            payload=e,
            external_id="dev-1",
            event_id=e["id"],
        )
        for e in (created, connected)
    ]
    with store.connect() as conn:
        assert event_counts(conn, "org-a", "az-p")["pending"] == 2
        assert oldest_pending_age_s(conn, "org-a", "az-p", now=utc_now()) >= 0
    with open_session(store, "az-p", run_id="run-az") as session:
        result = process_webhook_events(session)
    assert (result.status, result.counts.fetched, result.counts.created, result.counts.updated) == (
        "success",
        2,
        1,
        1,
    )
    device = _device(store, "az-p", "dev-1")
    assert (
        device["status"],
        device["enabled"],
        device["last_request_id"],
        device["last_run_id"],
    ) == ("connected", True, connected["id"], "run-az")
    assert device["last_seen_at"] is not None
    for row in rows:
        event = _event(store, row.id, "az-p")
        assert (event.status, event.run_id, event.attempts) == ("processed", "run-az", 1)
        assert event.processed_at >= event.received_at
    with store.connect() as conn:
        delay = processing_delay(conn, "org-a", "az-p")
        assert event_counts(conn, "org-a", "az-p")["processed"] == 2
        assert oldest_pending_age_s(conn, "org-a", "az-p", now=utc_now()) is None
        assert event_counts(conn, "org-b", "az-p")["processed"] == 0  # another tenant sees nothing
    assert delay.count == 2 and 0 <= delay.p50_s <= delay.max_s


def test_a_golioth_reading_becomes_telemetry_of_its_ce_source_device(
    store, monkeypatch, open_session
):
    integ, _ = register_webhook_integration(
        store, monkeypatch, provider="golioth", integration_id="gl-p"
    )
    envelope = {
        "data": {"temp": 21.5},
        "device_id": "gd-1",
        "project_id": "p",
        "timestamp": {"seconds": "1767225600", "nanos": 500000000},
    }
    event = insert_pending(
        store, integ, event_type="io.golioth.data.v1/.s/env", payload=envelope, external_id="gd-1"
    )
    with open_session(store, "gl-p", run_id="run-gl") as session:
        process_webhook_events(session)
    with store.connect() as conn:
        [reading] = telemetry_rows(conn, "org-a", "gl-p")
    assert (
        reading["external_id"],
        reading["message_key"],
        reading["request_id"],
        reading["run_id"],
    ) == ("gd-1", f"webhook:{event.event_id}", event.event_id, "run-gl")
    assert reading["topic"] == "io.golioth.data.v1/.s/env"
    device = _device(
        store, "gl-p", "gd-1"
    )  # not inventoried yet: a placeholder the next sync rewrites
    assert (device["name"], device["content_hash"], device["last_request_id"]) == (
        "gd-1",
        "",
        event.event_id,
    )
    seen = device["last_seen_at"]
    assert (seen if isinstance(seen, datetime) else datetime.fromisoformat(seen)) == datetime(
        2026, 1, 1, 0, 0, 0, 500000, tzinfo=UTC
    )


def test_aws_presence_and_rule_readings(store, monkeypatch, open_session):
    integ, _ = register_webhook_integration(
        store, monkeypatch, provider="aws_iot", integration_id="aws-p"
    )
    insert_pending(
        store,
        integ,
        event_type="connected",
        external_id="thing-1",
        payload={"clientId": "thing-1", "eventType": "connected", "timestamp": 1767225600000},
    )
    insert_pending(
        store,
        integ,
        event_type="aws.iot.rule",
        external_id="thing-1",
        payload={"thingName": "thing-1", "topic": "dt/thing-1/env", "temp": 3},
    )
    with open_session(store, "aws-p") as session:
        result = process_webhook_events(session)
    assert (result.counts.created, result.counts.updated, result.counts.failed) == (1, 1, 0)
    assert _device(store, "aws-p", "thing-1")["status"] == "connected"
    with store.connect() as conn:
        assert [r["topic"] for r in telemetry_rows(conn, "org-a", "aws-p")] == ["dt/thing-1/env"]


def test_processing_twice_applies_nothing_twice(store, monkeypatch, open_session):
    integ, _ = register_webhook_integration(
        store, monkeypatch, provider="golioth", integration_id="gl-twice"
    )
    insert_pending(store, integ, event_type="t", payload={"temp": 1}, external_id="d")
    with open_session(store, "gl-twice") as session:
        first = process_webhook_events(session)
    before = _device(store, "gl-twice", "d")
    with open_session(store, "gl-twice") as session:
        second = process_webhook_events(session)
    assert (first.counts.fetched, second.counts.fetched) == (1, 0)
    assert _device(store, "gl-twice", "d") == before
    with store.connect() as conn:
        assert len(telemetry_rows(conn, "org-a", "gl-twice")) == 1


def test_a_run_that_lost_its_claim_cannot_apply_the_event(store, monkeypatch, open_session):
    """Run A claims and stalls past the lease; run B reclaims and applies; A's late mark fails."""
    integ, _ = register_webhook_integration(
        store, monkeypatch, provider="golioth", integration_id="gl-lease"
    )
    event = insert_pending(store, integ, event_type="t", payload={"temp": 1}, external_id="d")
    with store.transaction() as conn:
        [claimed] = claim_events(
            conn, "org-a", "gl-lease", limit=10, run_id="run-a", now=utc_now(), lease_s=60
        )
    with open_session(store, "gl-lease", run_id="run-b") as session:
        assert process_webhook_events(session, lease_s=60).counts.fetched == 0  # A's lease holds
    with store.transaction() as conn:
        conn.execute(
            sa.text("UPDATE webhook_events SET claimed_at = :t WHERE id = :id"),
            {"t": utc_now() - timedelta(seconds=120), "id": event.id},
        )
    with open_session(store, "gl-lease", run_id="run-b") as session:
        assert process_webhook_events(session, lease_s=60).counts.fetched == 1
    with store.transaction() as conn:
        assert mark_processed(conn, "org-a", claimed.id, run_id="run-a", now=utc_now()) is False
    processed = _event(store, event.id, "gl-lease")
    assert (processed.status, processed.run_id, processed.attempts) == ("processed", "run-b", 2)
    with store.connect() as conn:
        assert len(telemetry_rows(conn, "org-a", "gl-lease")) == 1


def test_an_event_that_cannot_be_applied_is_failed_dead_lettered_and_recorded(
    store, monkeypatch, open_session
):
    integ, _ = register_webhook_integration(
        store, monkeypatch, provider="golioth", integration_id="gl-bad"
    )
    bad = insert_pending(
        store, integ, event_type="t", payload={"temp": 1}, external_id=None
    )  # no device
    good = insert_pending(store, integ, event_type="t", payload={"temp": 2}, external_id="d")
    with open_session(store, "gl-bad", run_id="run-bad") as session:
        result = process_webhook_events(session)
    assert (result.status, result.counts.failed, result.counts.created) == ("partial", 1, 1)
    failed = _event(store, bad.id, "gl-bad")
    assert (failed.status, failed.error_type, failed.processed_at) == ("failed", "validation", None)
    assert "names no device" in failed.error_message and bad.event_id in failed.error_message
    assert _event(store, good.id, "gl-bad").status == "processed"
    with store.connect() as conn:
        [letter] = list_dead_letters(conn, "org-a")
        rows = activity_rows(
            conn, "org-a", request_id=bad.event_id, activity_type=WEBHOOK_PROCESSING
        )
    assert (letter.stream, letter.dedupe_key, letter.source_id, letter.status) == (
        "webhook_events",
        bad.event_id,
        bad.id,
        "pending",
    )
    assert letter.payload["payload"] == {"temp": 1}
    assert [(r["status"], r["run_id"]) for r in rows] == [("failed", "run-bad")]


def test_a_requeued_failed_event_that_now_applies_resolves_its_dead_letter(
    store, monkeypatch, open_session
):
    integ, _ = register_webhook_integration(
        store, monkeypatch, provider="azure_iot", integration_id="az-fix"
    )
    created = azure_event("DeviceCreated", "dev-9", {"twin": "not an object"})
    event = insert_pending(
        store,
        integ,
        event_type=created["eventType"],
        payload=created,
        external_id="dev-9",
        event_id=created["id"],
    )
    with open_session(store, "az-fix") as session:
        assert process_webhook_events(session).counts.failed == 1
    with (
        store.transaction() as conn
    ):  # an operator fixed the payload (a replay in earnest would re-fetch)
        created["data"]["twin"] = {"deviceId": "dev-9", "status": "enabled"}
        conn.execute(
            sa.text("UPDATE webhook_events SET payload = :p WHERE id = :id"),
            {"p": json.dumps(created), "id": event.id},
        )
        assert requeue_events(conn, "org-a", [event.id]) == 1
    with open_session(store, "az-fix") as session:
        assert process_webhook_events(session).counts.created == 1
    with store.connect() as conn:
        [letter] = list_dead_letters(conn, "org-a")
    assert letter.status == "resolved"
    assert _event(store, event.id, "az-fix").status == "processed"


def test_replaying_a_webhook_dead_letter_reprocesses_its_event_once(
    store, monkeypatch, open_session
):
    from sync_pipelines.sync.replay import replay_dead_letters

    integ, _ = register_webhook_integration(
        store, monkeypatch, provider="azure_iot", integration_id="az-replay"
    )
    created = azure_event("DeviceCreated", "dev-7", {"twin": "not an object"})
    event = insert_pending(
        store,
        integ,
        event_type=created["eventType"],
        payload=created,
        external_id="dev-7",
        event_id=created["id"],
    )
    with open_session(store, "az-replay") as session:
        assert process_webhook_events(session).counts.failed == 1
    with store.connect() as conn:
        [letter] = list_dead_letters(conn, "org-a")
    assert (letter.stream, letter.source_id, letter.status) == (
        "webhook_events",
        event.id,
        "pending",
    )

    with open_session(store, "az-replay") as session:  # still broken: stays a letter, retrying
        replay_dead_letters(session, ids=[letter.id])
    with store.connect() as conn:
        [letter] = list_dead_letters(conn, "org-a")
    assert letter.status == "retrying" and _event(store, event.id, "az-replay").status == "failed"

    created["data"]["twin"] = {"deviceId": "dev-7", "status": "enabled"}  # the sender's fix
    with store.transaction() as conn:
        conn.execute(
            sa.text("UPDATE webhook_events SET payload = :p WHERE id = :id"),
            {"p": json.dumps(created), "id": event.id},
        )
    for _ in range(2):  # the second replay finds nothing left to do
        with open_session(store, "az-replay") as session:
            replay_dead_letters(session, ids=[letter.id])
    with store.connect() as conn:
        [letter] = list_dead_letters(conn, "org-a")
    assert letter.status == "resolved"
    assert _event(store, event.id, "az-replay").status == "processed"
    assert _device(store, "az-replay", "dev-7")["last_request_id"] == event.event_id


def _make_nested(store, row_id: str, depth: int) -> None:
    """The inbox row's payload becomes a document `depth` objects deep, written as JSON text:
    too deep for this process to encode itself inside the test runner's stack."""
    text = '{"n":' * (depth - 1) + '{"leaf":1}' + "}" * (depth - 1)
    cast = "CAST(:p AS JSONB)" if store.engine.dialect.name == "postgresql" else ":p"
    with store.transaction() as conn:
        conn.execute(
            sa.text(f"UPDATE webhook_events SET payload = {cast} WHERE id = :id"),
            {"p": text, "id": row_id},
        )


def test_an_event_nested_too_deep_is_dead_lettered_alone_and_the_rest_applied(
    store, monkeypatch, open_session
):
    # stored before the receiver refused such payloads (or written by hand): the run must not
    # fall over on it, and the events around it still apply
    integ, _ = register_webhook_integration(
        store, monkeypatch, provider="golioth", integration_id="gl-deep"
    )
    before = insert_pending(store, integ, event_type="t", payload={"temp": 1}, external_id="d1")
    deep = insert_pending(store, integ, event_type="t", payload={"temp": 2}, external_id="d2")
    _make_nested(store, deep.id, 980)
    after = insert_pending(store, integ, event_type="t", payload={"temp": 3}, external_id="d3")
    with open_session(store, "gl-deep", run_id="run-deep") as session:
        result = process_webhook_events(session)
    assert (result.status, result.counts.fetched, result.counts.failed) == ("partial", 3, 1)
    statuses = {
        e.id: e.status for e in (_event(store, r.id, "gl-deep") for r in (before, deep, after))
    }
    assert statuses == {before.id: "processed", deep.id: "failed", after.id: "processed"}
    failed = _event(store, deep.id, "gl-deep")
    assert failed.error_type == "validation" and "nested deeper than" in failed.error_message
    with store.connect() as conn:
        [letter] = list_dead_letters(conn, "org-a")
    assert (letter.dedupe_key, letter.source_id) == (deep.event_id, deep.id)


def test_an_event_over_the_size_limit_is_dead_lettered_alone_and_the_rest_applied(
    store, monkeypatch, open_session
):
    # stored by another writer, or before the integration's limit was lowered: the processor
    # measures what the receiver measures (json_limits.canonical_size), on either store — a
    # number PostgreSQL writes out in 301 digits counts as those digits on SQLite too
    integ, _ = register_webhook_integration(
        store, monkeypatch, provider="golioth", integration_id="gl-big", webhook_max_body_bytes=100
    )
    before = insert_pending(store, integ, event_type="t", payload={"temp": 1}, external_id="d1")
    long_text = insert_pending(
        store, integ, event_type="t", payload={"blob": "x" * 200}, external_id="d2"
    )
    long_number = insert_pending(store, integ, event_type="t", payload=[1e300], external_id="d3")
    at_limit = insert_pending(  # {"blob":"x…"} is 11 bytes + the x's: exactly 100
        store, integ, event_type="t", payload={"blob": "x" * 89}, external_id="d4"
    )
    with open_session(store, "gl-big", run_id="run-big") as session:
        result = process_webhook_events(session)
    assert (result.status, result.counts.fetched, result.counts.failed) == ("partial", 4, 2)
    statuses = {
        r.id: _event(store, r.id, "gl-big").status
        for r in (before, long_text, long_number, at_limit)
    }
    assert statuses == {
        before.id: "processed",
        long_text.id: "failed",
        long_number.id: "failed",
        at_limit.id: "processed",
    }
    for oversized, size in ((long_text, 211), (long_number, 303)):
        failed = _event(store, oversized.id, "gl-big")
        assert failed.error_type == "validation"
        assert (
            f"{size} bytes as canonical JSON, over the limit of 100 bytes "
            "(setting webhook_max_body_bytes" in failed.error_message
        )
    with store.connect() as conn:
        letters = list_dead_letters(conn, "org-a")
    assert {letter.source_id for letter in letters} == {long_text.id, long_number.id}


_field_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["2026-01-01T00:00:00Z", "2026-13-45T00:00:00", "ff" * 40, "0A1b"]),
    lambda inner: (
        st.dictionaries(st.sampled_from(["seconds", "nanos", "x"]), inner, max_size=3)
        | st.lists(inner, max_size=2)
    ),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(value=_field_values)
def test_any_event_field_is_read_or_refused_as_unapplicable(value):
    """The processor's readers of sender-written fields (times, sequence and version numbers):
    a value or UnapplicableEvent (which dead-letters the event with its reason), nothing else."""
    readers = (_iso_time, _proto_time, _epoch_ms_time, _azure_sequence)
    for read in (*readers, lambda v: _aws_version({"versionNumber": v})):
        try:
            read(value)
        except UnapplicableEvent as refused:
            assert str(refused)
