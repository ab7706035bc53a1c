"""The webhook receiver under uvicorn on a loopback port, on SQLite and Postgres: what it accepts,
what it refuses and with which status, what lands in the inbox, and that every delivery is an
incoming activity row."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.devices import get_device
from sync_pipelines.store.telemetry import count_telemetry
from sync_pipelines.store.webhook_events import list_events
from sync_pipelines.sync.webhook_processing import process_webhook_events
from sync_pipelines.webhooks.app import WEBHOOK_RECEIVED, create_receiver_app
from sync_pipelines.webhooks.verification import (
    STANDARD_WEBHOOKS,
    public_key_setting,
    sign_standard_webhook,
    sign_standard_webhook_v1a,
)
from sync_pipelines_tests.webhook_support import (
    azure_event,
    new_signing_secret,
    register_webhook_integration,
    signed,
)

MAX_BODY = 32 * 1024


@pytest.fixture
def receiver(store):
    with (
        EmulatorServer(create_receiver_app(store, max_body_bytes=MAX_BODY)) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        yield client


@pytest.fixture
def signing(store, monkeypatch):
    """A Golioth integration whose deliveries are Standard-Webhooks-signed (e.g. via a relay)."""
    return register_webhook_integration(
        store, monkeypatch, provider="golioth", integration_id="gw-signed", scheme=STANDARD_WEBHOOKS
    )


def _rows(store, integration_id="gw-signed"):
    with store.connect() as conn:
        return activity_rows(
            conn, "org-a", integration_id=integration_id, activity_type=WEBHOOK_RECEIVED
        )


def _events(store, integration_id="gw-signed"):
    with store.connect() as conn:
        return list_events(conn, "org-a", integration_id)


def _assert_rejection_recorded(store, response, status, reason, integration_id="gw-signed"):
    assert response.status_code == status
    assert response.json()["error"] == reason and response.json()["detail"]
    [row] = _rows(store, integration_id)
    assert (row["direction"], row["status"], row["status_code"], row["error_type"]) == (
        "incoming",
        "failed",
        status,
        reason,
    )
    assert row["request_id"] == response.headers["x-request-id"]
    assert _events(store, integration_id) == []


# -- accepted ---------------------------------------------------------------------------------------


def test_a_signed_delivery_is_stored_once_and_answered_202(store, receiver, signing):
    _, secret = signing
    body, headers = signed(
        secret,
        {"temp": 21.5},
        msg_id="msg_one",
        ce_source="dev-1",
        ce_type="io.golioth.data.v1/.s/env",
    )
    response = receiver.post("/webhooks/golioth/gw-signed", content=body, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json() == {
        "status": "accepted",
        "duplicate": False,
        "events": 1,
        "new": 1,
        "request_id": "msg_one",
    }
    [event] = _events(store)
    assert (event.event_id, event.external_id, event.payload, event.status) == (
        "msg_one",
        "dev-1",
        {"temp": 21.5},
        "pending",
    )
    assert event.headers["webhook-signature"] == "[REDACTED]" and event.received_at is not None
    [row] = _rows(store)
    assert (
        row["direction"],
        row["status"],
        row["status_code"],
        row["request_id"],
        row["method"],
    ) == ("incoming", "success", 202, "msg_one", "POST")
    assert (
        row["metadata"]["new"] == 1 and row["request_headers"]["webhook-signature"] == "[REDACTED]"
    )


def test_the_same_delivery_three_times_is_one_event_and_one_device_update(
    store, receiver, signing, open_session
):
    _, secret = signing
    body, headers = signed(secret, {"temp": 20}, msg_id="msg_dup", ce_source="dev-dup")
    first = receiver.post("/webhooks/golioth/gw-signed", content=body, headers=headers)
    with open_session(store, "gw-signed") as session:
        assert process_webhook_events(session).counts.created == 1
    with store.connect() as conn:
        device_before = get_device(conn, "org-a", "gw-signed", "dev-dup")
    retries = [
        receiver.post("/webhooks/golioth/gw-signed", content=body, headers=headers)
        for _ in range(2)
    ]
    with open_session(store, "gw-signed") as session:
        again = process_webhook_events(session)
    assert first.status_code == 202
    assert [(r.status_code, r.json()["duplicate"]) for r in retries] == [(200, True), (200, True)]
    assert len(_events(store)) == 1 and again.counts.fetched == 0
    with store.connect() as conn:
        assert get_device(conn, "org-a", "gw-signed", "dev-dup") == device_before
        assert count_telemetry(conn, "org-a", "gw-signed") == 1
    assert device_before["last_request_id"] == "msg_dup"
    assert [r["status_code"] for r in _rows(store)] == [202, 200, 200]


def test_a_sender_rotating_keys_is_accepted_on_the_new_signature(store, receiver, signing):
    _, secret = signing
    body, timestamp = b'{"temp": 1}', int(time.time())
    old = sign_standard_webhook(new_signing_secret(), "msg_rot", timestamp, body)
    new = sign_standard_webhook(secret, "msg_rot", timestamp, body)
    headers = {
        "webhook-id": "msg_rot",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"{old} {new}",
        "ce-source": "dev-1",
    }
    assert (
        receiver.post("/webhooks/golioth/gw-signed", content=body, headers=headers).status_code
        == 202
    )


def test_a_non_utf8_body_passes_the_signature_and_is_refused_as_not_json(store, receiver, signing):
    _, secret = signing
    body, headers = signed(secret, b"\xff\xd8\xff binary", ce_source="dev-1")
    response = receiver.post("/webhooks/golioth/gw-signed", content=body, headers=headers)
    _assert_rejection_recorded(store, response, 400, "malformed_payload")
    assert "not UTF-8" in response.json()["detail"]


@pytest.mark.parametrize(
    "body, problem",
    [
        (b'{"temp": ', "not valid JSON"),
        (b'{"a": "\\u0000"}', "\\u0000"),
        (b'{"a": "\\ud800"}', "surrogate"),
        (b'{"a": NaN}', "NaN"),
        (b"[1e999]", "out of range"),
        (b"null", "JSON null"),
        # the limit the inbox processor reads with (json_limits): 65 levels, and 980 (deep
        # enough to exhaust the decoder's recursion in a run)
        (b'{"n":' * 65 + b"1" + b"}" * 65, "nested deeper than 64 levels"),
        (b"[" * 980 + b"]" * 980, "nested deeper than 64 levels"),
    ],
)
def test_a_verified_but_malformed_body_is_a_400_naming_the_problem(
    store, receiver, signing, body, problem
):
    _, secret = signing
    body, headers = signed(secret, body, ce_source="dev-1")
    response = receiver.post("/webhooks/golioth/gw-signed", content=body, headers=headers)
    _assert_rejection_recorded(store, response, 400, "malformed_payload")
    assert problem in response.json()["detail"]


# -- refused ----------------------------------------------------------------------------------------


def test_a_stale_timestamp_is_a_401_recorded(store, receiver, signing):
    _, secret = signing
    body, headers = signed(secret, {"temp": 1}, timestamp=int(time.time()) - 301)
    response = receiver.post("/webhooks/golioth/gw-signed", content=body, headers=headers)
    _assert_rejection_recorded(store, response, 401, "stale_timestamp")


def test_a_mutated_body_is_a_401_recorded(store, receiver, signing):
    _, secret = signing
    body, headers = signed(secret, {"temp": 1})
    response = receiver.post(
        "/webhooks/golioth/gw-signed", content=body.replace(b"1", b"9"), headers=headers
    )
    _assert_rejection_recorded(store, response, 401, "bad_signature")


def test_a_signature_with_another_key_is_a_401_recorded_without_the_signature(
    store, receiver, signing
):
    body, headers = signed(new_signing_secret(), {"temp": 1}, msg_id="msg_forged")
    response = receiver.post("/webhooks/golioth/gw-signed", content=body, headers=headers)
    _assert_rejection_recorded(store, response, 401, "bad_signature")
    [row] = _rows(store)
    assert headers["webhook-signature"] not in json.dumps(row, default=str)
    assert row["metadata"]["claimed_webhook_id"] == "msg_forged"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_oversized_body_is_a_413_recorded(store, receiver, signing, chunked):
    _, secret = signing
    body, headers = signed(secret, {"blob": "x" * (MAX_BODY + 1)})
    content = iter([body[i : i + 4096] for i in range(0, len(body), 4096)]) if chunked else body
    response = receiver.post("/webhooks/golioth/gw-signed", content=content, headers=headers)
    _assert_rejection_recorded(store, response, 413, "body_too_large")
    assert str(MAX_BODY) in response.json()["detail"]


def test_a_small_body_whose_numbers_written_out_are_over_the_limit_is_a_413_recorded(
    store, receiver, signing
):
    # PostgreSQL writes 1e300 out in 301 digits, and the inbox processor measures what it reads
    # back (json_limits.canonical_size): the receiver refuses what the processor would
    _, secret = signing
    body, headers = signed(secret, {"v": [1e300] * 200})
    assert len(body) < MAX_BODY
    response = receiver.post("/webhooks/golioth/gw-signed", content=body, headers=headers)
    _assert_rejection_recorded(store, response, 413, "body_too_large")
    assert f"over the limit of {MAX_BODY} bytes" in response.json()["detail"]


def test_unknown_integration_and_provider_mismatch_get_the_same_404(store, receiver, signing):
    _, secret = signing
    body, headers = signed(secret, {"temp": 1})
    unknown = receiver.post("/webhooks/golioth/no-such-integration", content=body, headers=headers)
    mismatch = receiver.post("/webhooks/azure_iot/gw-signed", content=body, headers=headers)
    assert unknown.status_code == mismatch.status_code == 404
    assert (
        unknown.json()
        == mismatch.json()
        == {"error": "not_found", "detail": "no webhook endpoint at this path"}
    )
    [row] = _rows(store)  # only the known integration has an organization to file a row under
    assert row["status_code"] == 404 and "azure_iot" in row["error_message"]


def test_a_weak_secret_is_refused_at_config_time_and_answered_503(store, receiver, monkeypatch):
    register_webhook_integration(
        store, monkeypatch, provider="golioth", integration_id="gw-weak", secret="too-short-secret"
    )
    response = receiver.post(
        "/webhooks/golioth/gw-weak", content=b"{}", headers={"x-webhook-secret": "too-short-secret"}
    )
    assert response.status_code == 503
    [row] = _rows(store, "gw-weak")
    assert row["error_type"] == "config" and "too weak" in row["error_message"]
    assert "too-short-secret" not in json.dumps(row, default=str)


# -- Golioth shared secret -----------------------------------------------------------------------------


def test_golioth_shared_secret_right_wrong_and_missing(store, receiver, monkeypatch):
    _, secret = register_webhook_integration(
        store, monkeypatch, provider="golioth", integration_id="gw-shared"
    )
    body = b'{"temp": 30}'
    ce = {"ce-source": "dev-7", "ce-type": "io.golioth.data.v1/.s/env", "ce-subject": "proj"}
    ok = receiver.post(
        "/webhooks/golioth/gw-shared", content=body, headers={**ce, "x-webhook-secret": secret}
    )
    again = receiver.post(
        "/webhooks/golioth/gw-shared", content=body, headers={**ce, "x-webhook-secret": secret}
    )
    wrong = receiver.post(
        "/webhooks/golioth/gw-shared",
        content=body,
        headers={**ce, "x-webhook-secret": secret[::-1]},
    )
    missing = receiver.post("/webhooks/golioth/gw-shared", content=body, headers=ce)
    assert [r.status_code for r in (ok, again, wrong, missing)] == [202, 200, 401, 401]
    assert [wrong.json()["error"], missing.json()["error"]] == ["bad_secret", "missing_secret"]
    [event] = _events(store, "gw-shared")  # no Ce-Id: the key is a digest of (Ce-Source, body)
    assert event.event_id.startswith("sha256:") and event.external_id == "dev-7"
    rows = _rows(store, "gw-shared")
    assert [r["status_code"] for r in rows] == [202, 200, 401, 401]
    assert secret not in json.dumps(rows, default=str) + json.dumps(event.headers)


def test_golioth_ce_id_is_the_idempotency_key_when_sent(store, receiver, monkeypatch):
    _, secret = register_webhook_integration(
        store, monkeypatch, provider="golioth", integration_id="gw-ce"
    )
    for body in (b'{"temp": 1}', b'{"temp": 2}'):  # same Ce-Id: a retry, whatever the body
        receiver.post(
            "/webhooks/golioth/gw-ce",
            content=body,
            headers={"ce-source": "d", "ce-id": "ce-42", "x-webhook-secret": secret},
        )
    assert [e.event_id for e in _events(store, "gw-ce")] == ["ce-42"]


def test_a_custom_secret_header_is_redacted_though_its_name_looks_harmless(
    store, receiver, monkeypatch
):
    _, secret = register_webhook_integration(
        store,
        monkeypatch,
        provider="golioth",
        integration_id="gw-hdr",
        webhook_auth_header="X-Golioth-Pipeline",
    )
    response = receiver.post(
        "/webhooks/golioth/gw-hdr",
        content=b'{"t": 1}',
        headers={"ce-source": "d", "x-golioth-pipeline": secret},
    )
    assert response.status_code == 202
    [event] = _events(store, "gw-hdr")
    assert event.headers["x-golioth-pipeline"] == "[REDACTED]"


# -- Azure Event Grid ------------------------------------------------------------------------------------


def test_event_grid_validation_is_answered_with_its_code_and_needs_the_secret(
    store, receiver, monkeypatch
):
    _, secret = register_webhook_integration(
        store, monkeypatch, provider="azure_iot", integration_id="az-1"
    )
    validation = [
        {
            "id": str(uuid.uuid4()),
            "topic": "t",
            "subject": "",
            "eventTime": "2026-01-01T00:00:00Z",
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "data": {
                "validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
                "validationUrl": "https://rp-eastus2.eventgrid.azure.net/validate?id=x",
            },
            "dataVersion": "",
            "metadataVersion": "1",
        }
    ]
    headers = {"aeg-event-type": "SubscriptionValidation", "content-type": "application/json"}
    ok = receiver.post(
        "/webhooks/azure_iot/az-1", params={"code": secret}, json=validation, headers=headers
    )
    refused = receiver.post(
        "/webhooks/azure_iot/az-1", params={"code": "guess"}, json=validation, headers=headers
    )
    assert ok.status_code == 200 and ok.json() == {
        "validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"
    }
    assert refused.status_code == 401
    assert _events(store, "az-1") == []  # a handshake is not work
    rows = _rows(store, "az-1")
    assert rows[0]["metadata"]["handshake"] == "event_grid_validation"
    assert secret not in rows[0]["endpoint"] and "code=[REDACTED]" in rows[0]["endpoint"]


def test_an_event_grid_batch_is_one_inbox_row_per_event_id(store, receiver, monkeypatch):
    _, secret = register_webhook_integration(
        store, monkeypatch, provider="azure_iot", integration_id="az-2"
    )
    batch = [
        azure_event("DeviceConnected", "dev-a"),
        azure_event("DeviceTelemetry", "dev-b", {"body": {"t": 1}}),
        azure_event("DeviceDisconnected", "dev-a"),
    ]
    headers = {"aeg-event-type": "Notification", "x-webhook-secret": secret}
    created = azure_event("DeviceCreated", "dev-c")
    first = receiver.post("/webhooks/azure_iot/az-2", json=batch, headers=headers)
    redelivered = receiver.post(
        "/webhooks/azure_iot/az-2", json=batch[1:] + [created], headers=headers
    )
    assert (first.status_code, first.json()["new"]) == (202, 3)
    assert (redelivered.status_code, redelivered.json()["new"], redelivered.json()["events"]) == (
        202,
        1,
        3,
    )
    events = _events(store, "az-2")
    assert sorted(e.event_id for e in events) == sorted(e["id"] for e in [*batch, created])
    assert {e.external_id for e in events} == {"dev-a", "dev-b", "dev-c"}
    assert len({e.delivery_id for e in events}) == 2  # one delivery id per POST


# -- AWS IoT rule destination ---------------------------------------------------------------------------------


def test_an_aws_destination_confirmation_is_recorded_with_its_enable_url(
    store, receiver, monkeypatch
):
    register_webhook_integration(store, monkeypatch, provider="aws_iot", integration_id="aws-1")
    arn = "arn:aws:iot:us-east-1:123456789012:ruledestination/http/8e0f3a1c"
    enable_url = (
        "https://iot.us-east-1.amazonaws.com/confirmdestination/AYADeMXLrPrNY2wqJAKsFNn-5rzlAAA"
    )
    confirmation = {
        "arn": arn,
        "confirmationToken": "AYADeMXLrPrNY2wqJAKsFNn-5rzlAAA",
        "enableUrl": enable_url,
        "messageType": "DestinationConfirmation",
    }
    headers = {
        "x-amz-rules-engine-message-type": "DestinationConfirmation",
        "x-amz-rules-engine-destination-arn": arn,
    }
    response = receiver.post(
        "/webhooks/aws_iot/aws-1",
        json=confirmation,
        headers=headers,
        params={"confirmationToken": confirmation["confirmationToken"]},
    )
    assert response.status_code == 200
    [event] = _events(store, "aws-1")
    assert (event.event_type, event.payload["enableUrl"]) == ("DestinationConfirmation", enable_url)
    [row] = _rows(store, "aws-1")
    assert row["metadata"]["handshake"] == "aws_destination_confirmation"
    assert row["metadata"]["enableUrl"] == enable_url and row["metadata"]["arn"] == arn


def test_aws_rule_deliveries_dedupe_on_the_newuuid_id(store, receiver, monkeypatch):
    _, secret = register_webhook_integration(
        store, monkeypatch, provider="aws_iot", integration_id="aws-2"
    )
    reading = {
        "id": "0b6f6a1e-3f0e-4d7e-9d8a-1e2f3a4b5c6d",
        "thingName": "thing-1",
        "temp": 22,
        "timestamp": 1767225600000,
    }
    codes = [
        receiver.post(
            "/webhooks/aws_iot/aws-2", json=reading, headers={"x-webhook-secret": secret}
        ).status_code
        for _ in range(2)
    ]
    assert codes == [202, 200]
    [event] = _events(store, "aws-2")
    assert (event.event_id, event.external_id) == (reading["id"], "thing-1")


def test_health_answers_ok(receiver):
    # the store part only: under `make test` DAGSTER_HOME may name no instance (that part is
    # judged in sync_pipelines_tests/health/)
    assert receiver.get("/health").json()["checks"]["store"]["status"] == "healthy"


def test_the_inbox_keeps_one_row_per_event_id_under_concurrent_retries(store, receiver, signing):
    """Senders retry in parallel (several workers): the unique key, not a lookup, decides."""
    from concurrent.futures import ThreadPoolExecutor

    _, secret = signing
    body, headers = signed(secret, {"temp": 5}, msg_id="msg_race", ce_source="dev-1")
    with ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(
                lambda _: (
                    receiver.post(
                        "/webhooks/golioth/gw-signed", content=body, headers=headers
                    ).status_code
                ),
                range(8),
            )
        )
    assert sorted(codes) == [200] * 7 + [202]
    with store.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM webhook_events WHERE event_id = 'msg_race'")
            ).scalar()
            == 1
        )


def test_a_confirmation_for_another_destination_arn_is_refused_when_one_is_configured(
    store, receiver, monkeypatch
):
    mine = "arn:aws:iot:us-east-1:123456789012:ruledestination/http/mine"
    register_webhook_integration(
        store, monkeypatch, provider="aws_iot", integration_id="aws-arn", aws_destination_arn=mine
    )
    other = "arn:aws:iot:us-east-1:999999999999:ruledestination/http/other"
    confirmation = {
        "arn": other,
        "confirmationToken": "tok",
        "enableUrl": "https://x/confirm",
        "messageType": "DestinationConfirmation",
    }
    headers = {
        "x-amz-rules-engine-message-type": "DestinationConfirmation",
        "x-amz-rules-engine-destination-arn": other,
    }
    response = receiver.post("/webhooks/aws_iot/aws-arn", json=confirmation, headers=headers)
    _assert_rejection_recorded(store, response, 401, "unexpected_destination", "aws-arn")


def test_a_disabled_integration_is_a_404_like_an_unknown_one(store, receiver, monkeypatch):
    _, secret = register_webhook_integration(
        store, monkeypatch, provider="golioth", integration_id="gw-off", enabled=False
    )
    response = receiver.post(
        "/webhooks/golioth/gw-off", content=b"{}", headers={"x-webhook-secret": secret}
    )
    assert response.status_code == 404
    assert response.json()["detail"] == "no webhook endpoint at this path"
    assert _events(store, "gw-off") == []


@pytest.mark.parametrize(
    "path",
    [
        "/webhooks/golioth/%00x",
        "/webhooks/golioth/gw%0Asigned",
        "/webhooks/golioth/%E2%80%AEgw",
        "/webhooks/golioth/" + "a" * 129,
        "/webhooks/gol%00ioth/gw-signed",
    ],
    ids=["nul", "newline", "bidi", "too-long", "nul-in-provider"],
)
def test_an_id_no_integration_can_have_is_a_404_that_never_reaches_the_store(
    store, receiver, signing, path
):
    _, secret = signing
    body, headers = signed(secret, {"temp": 1})
    with store.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM integration_activity_log")).scalar()
    unavailable_before = _outcomes(receiver, "store_unavailable")
    not_found_before = _outcomes(receiver, "not_found")
    response = receiver.post(path, content=body, headers=headers)
    assert response.status_code == 404, response.text
    assert response.json() == {"error": "not_found", "detail": "no webhook endpoint at this path"}
    with store.connect() as conn:
        after = conn.execute(sa.text("SELECT count(*) FROM integration_activity_log")).scalar()
    assert after == before
    # and no false store outage: none counted, and the receiver's health says the store is up
    assert _outcomes(receiver, "store_unavailable") == unavailable_before
    assert _outcomes(receiver, "not_found") == not_found_before + 1
    assert receiver.get("/health").json()["checks"]["store"]["status"] == "healthy"


def _outcomes(receiver, outcome: str) -> float:
    """Deliveries counted with `outcome`, over every provider label, from the receiver's /metrics."""
    total = 0.0
    for line in receiver.get("/metrics").text.splitlines():
        if line.startswith("sync_pipelines_webhook_events_received_total{") and (
            f'outcome="{outcome}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_an_ed25519_signed_delivery_is_accepted_with_the_senders_public_key(
    store, receiver, monkeypatch
):
    sender = Ed25519PrivateKey.generate()
    register_webhook_integration(
        store,
        monkeypatch,
        provider="golioth",
        integration_id="gw-v1a",
        scheme=STANDARD_WEBHOOKS,
        secret=public_key_setting(sender),
    )
    body, now = json.dumps({"temp": 4}).encode(), int(time.time())
    headers = {
        "webhook-id": "msg_v1a",
        "webhook-timestamp": str(now),
        "webhook-signature": sign_standard_webhook_v1a(sender, "msg_v1a", now, body),
        "content-type": "application/json",
    }
    accepted = receiver.post("/webhooks/golioth/gw-v1a", content=body, headers=headers)
    assert accepted.status_code == 202, accepted.text
    assert [e.event_id for e in _events(store, "gw-v1a")] == ["msg_v1a"]
    forged = receiver.post(
        "/webhooks/golioth/gw-v1a",
        content=body,
        headers={
            **headers,
            "webhook-id": "msg_v1b",
            "webhook-signature": sign_standard_webhook_v1a(
                Ed25519PrivateKey.generate(), "msg_v1b", now, body
            ),
        },
    )
    assert (forged.status_code, forged.json()["error"]) == (401, "bad_signature")


def test_the_receiver_serves_only_webhooks_health_and_metrics(receiver):
    # the operator console has its own listener (`sync-pipelines console`): nothing of it here
    for path in ("/console/", "/console/activity", "/console/api/overview", "/"):
        assert receiver.get(path).status_code == 404, path
    assert receiver.get("/metrics").status_code == 200
