"""Webhook verification: Standard Webhooks signatures on raw bytes, shared secrets, secret strength,
and — as properties — that no body or header set makes verification, parsing or the receiver
crash or answer 5xx: every refusal is a 4xx with a body that says why."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.errors import ConfigError
from sync_pipelines.store.integrations import Integration
from sync_pipelines.webhooks.app import create_receiver_app
from sync_pipelines.webhooks.events import Delivery, Handshake, PayloadError, read_delivery
from sync_pipelines.webhooks.verification import (
    SHARED_SECRET,
    STANDARD_WEBHOOKS,
    WebhookAuth,
    WebhookRejected,
    public_key_setting,
    sign_standard_webhook,
    sign_standard_webhook_v1a,
    standard_webhook_headers,
    verify_shared_secret,
    verify_standard_webhook,
    webhook_auth_for,
)
from sync_pipelines_tests.webhook_support import (
    new_shared_secret,
    new_signing_secret,
    register_webhook_integration,
    signed,
)

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def _verify(secret: str | list[str], headers: dict[str, str], body: bytes, now: float = NOW) -> str:
    secrets_ = [secret] if isinstance(secret, str) else secret
    return verify_standard_webhook(tuple(_key(s) for s in secrets_), headers, body, now=now)


def _integration(
    provider: str = "golioth", scheme: str = STANDARD_WEBHOOKS, **settings
) -> Integration:
    return Integration(
        "wh-1",
        "org-a",
        provider,
        "wh",
        settings={"webhook_auth": scheme, **settings},
        secret_refs={"webhook_secret": "WH_SECRET"},
    )


# -- Standard Webhooks ------------------------------------------------------------------------------


def test_a_delivery_signed_by_the_standardwebhooks_library_verifies():
    secret, body = new_signing_secret(), b'{"temp": 21.5, "unit": "\xc2\xb0C"}'
    signature = Webhook(secret).sign("msg_1", datetime.fromtimestamp(NOW, UTC), body.decode())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(NOW), "webhook-signature": signature}
    assert _verify(secret, headers, body) == "msg_1"


def test_our_signature_verifies_with_the_standardwebhooks_library():
    secret, body = new_signing_secret(), b'{"temp": 21.5}'
    headers = standard_webhook_headers(secret, "msg_2", int(time.time()), body)
    assert Webhook(secret).verify(body, headers) == {"temp": 21.5}


def test_a_non_utf8_body_verifies_on_its_bytes():
    secret, body = new_signing_secret(), b"\xff\xfe\x00binary reading\x80"
    headers = standard_webhook_headers(secret, "msg_3", NOW, body)
    assert _verify(secret, headers, body) == "msg_3"
    with pytest.raises(UnicodeDecodeError):  # why we verify ourselves: the library decodes first
        Webhook(secret).verify(body, headers)


def test_a_sender_rotating_keys_sends_two_signatures_and_either_key_verifies():
    old, new, body = new_signing_secret(), new_signing_secret(), b'{"x": 1}'
    both = f"{sign_standard_webhook(old, 'msg_4', NOW, body)} {sign_standard_webhook(new, 'msg_4', NOW, body)}"
    headers = {"webhook-id": "msg_4", "webhook-timestamp": str(NOW), "webhook-signature": both}
    assert _verify(new, headers, body) == "msg_4"
    assert _verify(old, headers, body) == "msg_4"
    with pytest.raises(WebhookRejected):
        _verify(new_signing_secret(), headers, body)


def test_the_receiver_may_hold_old_and_new_secret_during_its_own_rotation():
    old, new, body = new_signing_secret(), new_signing_secret(), b"{}"
    assert _verify([old, new], standard_webhook_headers(old, "m", NOW, body), body) == "m"
    assert _verify([old, new], standard_webhook_headers(new, "m", NOW, body), body) == "m"


@pytest.mark.parametrize(
    "age_s, accepted", [(300, True), (-300, True), (301, False), (-301, False)]
)
def test_the_timestamp_tolerance_is_five_minutes_both_ways(age_s, accepted):
    secret, body = new_signing_secret(), b"{}"
    headers = standard_webhook_headers(secret, "m", NOW - age_s, body)
    if accepted:
        assert _verify(secret, headers, body) == "m"
    else:
        with pytest.raises(WebhookRejected) as rejected:
            _verify(secret, headers, body)
        assert (rejected.value.status, rejected.value.reason) == (401, "stale_timestamp")
        assert "tolerance 300 s" in str(rejected.value)


def test_a_mutated_body_fails_the_signature():
    secret, body = new_signing_secret(), b'{"temp": 21}'
    headers = standard_webhook_headers(secret, "m", NOW, body)
    with pytest.raises(WebhookRejected) as rejected:
        _verify(secret, headers, b'{"temp": 22}')
    assert (rejected.value.status, rejected.value.reason) == (401, "bad_signature")


def _asymmetric(signing_key, msg_id: str, body: bytes, *extra: str) -> dict[str, str]:
    entries = " ".join([*extra, sign_standard_webhook_v1a(signing_key, msg_id, NOW, body)])
    return {"webhook-id": msg_id, "webhook-timestamp": str(NOW), "webhook-signature": entries}


def _auth(*values: str) -> WebhookAuth:
    return webhook_auth_for(_integration(), {"WH_SECRET": " ".join(values)})


def test_a_v1a_ed25519_signature_verifies_with_the_senders_public_key():
    sender, body = Ed25519PrivateKey.generate(), b'{"temp": 21.5}'
    auth = _auth(public_key_setting(sender))
    headers = _asymmetric(sender, "msg_a1", body)
    assert auth.keys == () and len(auth.public_keys) == 1
    assert verify_standard_webhook((), headers, body, now=NOW, public_keys=auth.public_keys) == (
        "msg_a1"
    )
    for forged_body, forged_headers in (
        (b'{"temp": 99}', headers),  # the body changed
        (body, _asymmetric(Ed25519PrivateKey.generate(), "msg_a1", body)),  # another sender
        (body, {**headers, "webhook-id": "msg_a2"}),  # the id changed
    ):
        with pytest.raises(WebhookRejected) as rejected:
            verify_standard_webhook(
                (), forged_headers, forged_body, now=NOW, public_keys=auth.public_keys
            )
        assert (rejected.value.status, rejected.value.reason) == (401, "bad_signature")


def test_hmac_and_ed25519_keys_side_by_side_each_verify_their_own_entries():
    secret, sender, body = new_signing_secret(), Ed25519PrivateKey.generate(), b"{}"
    auth = _auth(secret, public_key_setting(sender))
    for headers in (
        standard_webhook_headers(secret, "m", NOW, body),
        _asymmetric(sender, "m", body),
        # a v1 entry of an unknown key first, then a good v1a: the good one is found
        _asymmetric(sender, "m", body, sign_standard_webhook(new_signing_secret(), "m", NOW, body)),
    ):
        assert (
            verify_standard_webhook(auth.keys, headers, body, now=NOW, public_keys=auth.public_keys)
            == "m"
        )
    # a v1a entry is never checked as an HMAC, nor a v1 entry as a signature
    hmac_as_v1a = standard_webhook_headers(secret, "m", NOW, body)
    hmac_as_v1a["webhook-signature"] = hmac_as_v1a["webhook-signature"].replace("v1,", "v1a,")
    with pytest.raises(WebhookRejected):
        verify_standard_webhook(auth.keys, hmac_as_v1a, body, now=NOW, public_keys=auth.public_keys)


def test_a_webhook_id_with_a_dot_is_refused_before_any_signature_is_checked():
    secret, body = new_signing_secret(), b"{}"
    headers = standard_webhook_headers(secret, "msg.1", NOW, body)
    with pytest.raises(WebhookRejected) as rejected:
        _verify(secret, headers, body)
    assert (rejected.value.status, rejected.value.reason) == (401, "invalid_webhook_id")


def test_a_signing_key_or_a_bad_public_key_in_the_receivers_config_is_refused_unechoed():
    signing = "whsk_" + base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode()
    with pytest.raises(ConfigError) as refused:
        _auth(signing)
    assert "only the sender may hold" in str(refused.value) and signing not in str(refused.value)
    for bad in ("whpk_" + base64.b64encode(b"short").decode(), "whpk_not*base64!"):
        with pytest.raises(ConfigError) as refused:
            _auth(bad)
        assert "whpk_<base64> ed25519 public key" in str(refused.value)
        assert bad not in str(refused.value)


def test_missing_headers_are_named():
    with pytest.raises(WebhookRejected) as rejected:
        _verify(new_signing_secret(), {"webhook-id": "m"}, b"{}")
    assert rejected.value.reason == "missing_signature_headers"
    assert "webhook-timestamp" in str(rejected.value) and "webhook-signature" in str(rejected.value)


def test_junk_signature_entries_are_skipped_not_fatal():
    secret, body = new_signing_secret(), b"{}"
    good = sign_standard_webhook(secret, "m", NOW, body)
    headers = {
        "webhook-id": "m",
        "webhook-timestamp": str(NOW),
        "webhook-signature": f"garbage v1a,abc v1,@@@ v1, {good}",
    }
    assert _verify(secret, headers, body) == "m"


# -- shared secrets ---------------------------------------------------------------------------------


def test_the_shared_secret_header_is_compared_exactly():
    secret = new_shared_secret()
    auth = WebhookAuth(SHARED_SECRET, (secret.encode(),))
    verify_shared_secret(auth, {"x-webhook-secret": secret}, {})
    for wrong in (secret[:-1], secret + "x", secret.upper(), ""):
        with pytest.raises(WebhookRejected) as rejected:
            verify_shared_secret(auth, {"x-webhook-secret": wrong}, {})
        assert rejected.value.status == 401 and secret not in str(rejected.value)
    with pytest.raises(WebhookRejected, match="missing shared secret"):
        verify_shared_secret(auth, {}, {})


def test_the_shared_secret_may_come_in_the_configured_query_parameter():
    secret = new_shared_secret()
    auth = WebhookAuth(SHARED_SECRET, (secret.encode(),), query_param="code")
    verify_shared_secret(auth, {}, {"code": secret})
    with pytest.raises(WebhookRejected, match="query parameter code does not match"):
        verify_shared_secret(auth, {}, {"code": "nope"})


# -- configuration ----------------------------------------------------------------------------------


def test_defaults_golioth_shared_secret_header_and_azure_query_code():
    secret = new_shared_secret()
    golioth = webhook_auth_for(_integration("golioth", scheme=""), {"WH_SECRET": secret})
    azure = webhook_auth_for(_integration("azure_iot", scheme=""), {"WH_SECRET": secret})
    assert (golioth.scheme, golioth.header, golioth.query_param) == (
        SHARED_SECRET,
        "x-webhook-secret",
        None,
    )
    assert (azure.scheme, azure.query_param) == (SHARED_SECRET, "code")
    custom = webhook_auth_for(
        _integration(scheme=SHARED_SECRET, webhook_auth_header="X-Golioth-Auth"),
        {"WH_SECRET": secret},
    )
    assert custom.header == "x-golioth-auth"


@pytest.mark.parametrize(
    "scheme, weak, problem",
    [
        (SHARED_SECRET, "short-secret-123", "at least 32 random characters"),
        (SHARED_SECRET, "password" * 5, "too weak"),
        (SHARED_SECRET, "a" * 64, "too weak"),
        (
            STANDARD_WEBHOOKS,
            "whsec_" + base64.b64encode(b"k" * 16).decode(),
            "at least 24 random bytes",
        ),
        (STANDARD_WEBHOOKS, "whsec_not*base64!", "not a whsec_<base64>"),
    ],
)
def test_a_weak_secret_is_refused_with_a_clear_error(scheme, weak, problem):
    with pytest.raises(ConfigError) as refused:
        webhook_auth_for(_integration(scheme=scheme), {"WH_SECRET": weak})
    message = str(refused.value)
    assert problem in message and "WH_SECRET" in message and "wh-1" in message
    assert weak not in message


def test_an_unset_secret_variable_or_reference_is_a_config_error():
    with pytest.raises(ConfigError, match="WH_SECRET, which is not set"):
        webhook_auth_for(_integration(), {})
    no_ref = Integration("wh-2", "org-a", "golioth", "wh", settings={}, secret_refs={})
    with pytest.raises(ConfigError, match="secret_refs.webhook_secret"):
        webhook_auth_for(no_ref, {})
    with pytest.raises(ConfigError, match="webhook_auth must be one of"):
        webhook_auth_for(_integration(scheme="hmac-please"), {"WH_SECRET": new_shared_secret()})


# -- properties: nothing crashes, nothing is a 5xx ----------------------------------------------------

_header_names = st.sampled_from(
    [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-webhook-secret",
        "ce-source",
        "ce-id",
        "aeg-event-type",
        "x-amz-rules-engine-message-type",
    ]
)
_header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80
).map(str.strip)  # what HTTP/1.1 can carry
_headers = st.dictionaries(_header_names, _header_values, max_size=6)
_json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_bodies = st.one_of(st.binary(max_size=300), _json_like.map(lambda v: json.dumps(v).encode()))


@given(headers=_headers, body=st.binary(max_size=200), now=st.integers(0, 2**40))
def test_verification_of_arbitrary_input_only_ever_rejects_with_401(headers, body, now):
    try:
        verify_standard_webhook((b"k" * 32,), headers, body, now=now)
    except WebhookRejected as rejected:
        assert rejected.status == 401 and str(rejected)
    try:
        verify_shared_secret(
            WebhookAuth(SHARED_SECRET, (b"s" * 32,), query_param="code"), headers, headers
        )
    except WebhookRejected as rejected:
        assert rejected.status == 401 and str(rejected)


@given(
    provider=st.sampled_from(["golioth", "aws_iot", "azure_iot"]), headers=_headers, body=_bodies
)
def test_parsing_any_verified_body_either_yields_events_or_names_the_problem(
    provider, headers, body
):
    try:
        read_delivery(Delivery(provider, body, headers))
    except PayloadError as exc:
        assert str(exc)


_event_fields = st.sampled_from(
    [
        "id",
        "eventId",
        "eventType",
        "subject",
        "data",
        "deviceId",
        "validationCode",
        "thingName",
        "clientId",
        "messageType",
        "arn",
        "confirmationToken",
        "enableUrl",
        "device_id",
        "timestamp",
    ]
)
_event_values = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["devices/d1", "devices/", "Microsoft.Devices.DeviceCreated", "DestinationConfirmation"]
    ),
    _json_like,
)
_events = st.recursive(
    st.dictionaries(_event_fields, _event_values, max_size=6),
    lambda inner: st.dictionaries(_event_fields, inner | _event_values, max_size=4),
    max_leaves=6,
)
#: bodies shaped like each provider's: Event Grid arrays, AWS rule and registry events, Golioth
#: inject-metadata envelopes — so the readers' deeper branches are reached, not just the first check
_shaped_bodies = (st.lists(_events, max_size=3) | _events).map(lambda v: json.dumps(v).encode())


@settings(max_examples=150, deadline=None)
@given(
    provider=st.sampled_from(["golioth", "aws_iot", "azure_iot"]),
    headers=_headers
    | st.fixed_dictionaries(
        {},
        optional={
            "aeg-event-type": st.sampled_from(["SubscriptionValidation", "Notification"]),
            "x-amz-rules-engine-message-type": st.just("DestinationConfirmation"),
            "ce-id": _header_values,
            "ce-source": _header_values,
        },
    ),
    body=_shaped_bodies,
    signed_id=st.none() | _header_values,
    max_bytes=st.none() | st.integers(1, 400),
)
def test_parsing_any_provider_shaped_body_yields_events_or_names_the_problem(
    provider, headers, body, signed_id, max_bytes
):
    try:
        read = read_delivery(Delivery(provider, body, headers, signed_id, max_bytes))
    except PayloadError as exc:
        assert str(exc)
        return
    events = read.event and [read.event] if isinstance(read, Handshake) else read
    for event in events or []:
        assert event.event_id and event.event_type
        assert event.external_id is None or isinstance(event.external_id, str)


@pytest.fixture
def receiver_client(store, monkeypatch):
    """A receiver on a loopback port, on SQLite and on Postgres (JSONB refuses more than SQLite)."""
    _, secret = register_webhook_integration(
        store,
        monkeypatch,
        provider="golioth",
        integration_id="prop-golioth",
        scheme=STANDARD_WEBHOOKS,
    )
    with (
        EmulatorServer(create_receiver_app(store, max_body_bytes=4096)) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        yield client, secret


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    headers=_headers, body=_bodies, provider=st.sampled_from(["golioth", "azure_iot", "mqtt", "x"])
)
def test_the_receiver_answers_arbitrary_deliveries_with_a_4xx_and_a_reason(
    receiver_client, headers, body, provider
):
    client, _ = receiver_client
    wire_headers = [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
    response = client.post(f"/webhooks/{provider}/prop-golioth", content=body, headers=wire_headers)
    assert 400 <= response.status_code < 500
    answer = response.json()
    assert answer["error"] and answer["detail"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=_bodies)
def test_the_receiver_never_fails_on_a_correctly_signed_body(receiver_client, body):
    client, secret = receiver_client
    body, headers = signed(secret, body, ce_source="dev-1")
    response = client.post("/webhooks/golioth/prop-golioth", content=body, headers=headers)
    assert response.status_code in (200, 202, 400), response.text
    if response.status_code == 400:
        assert response.json()["error"] == "malformed_payload" and response.json()["detail"]
