"""SAS tokens and connection strings for Azure IoT Hub (PROVIDERS.md §3.4): signed bit-exactly
as azure-iot-hub signs them, verified as the hub verifies them, and never echoing a key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse

import pytest

from sync_pipelines.errors import ConfigError
from sync_pipelines.observability.redaction import redact_text
from sync_pipelines.providers.azure_sas import (
    ConnectionString,
    SasRejected,
    SasTokenSource,
    generate_sas_token,
    parse_connection_string,
    verify_sas_token,
)

# A worked example: the key is bytes 0..31, the hub HostName carries a port (so `sr` needs
# encoding) and this expiry gives a signature with '+', '/' and '=' in its base64.
KEY_BYTES = bytes(range(32))
KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
HOST = "localhost:8443"
EXPIRY = 1_900_000_004
PINNED_TOKEN = (
    "SharedAccessSignature sr=localhost%3A8443&sig=vx%2BK/2kIR8dQRmEa1LhAmtrdIaPSzTVJH2cGSc4F%2BCE%3D"
    "&se=1900000004&skn=iothubowner"
)
NOW = 1_899_999_000.0


def _independent_token(host: str, key: bytes, expiry: int, policy: str) -> str:
    """The SDK's recipe, written out with the standard library only."""
    sr = urllib.parse.quote_plus(host)
    digest = hmac.new(key, f"{sr}\n{expiry}".encode(), hashlib.sha256).digest()
    sig = urllib.parse.quote(base64.b64encode(digest))
    return f"SharedAccessSignature sr={sr}&sig={sig}&se={expiry}&skn={policy}"


def _verify(token: str | None, *, now: float = NOW, policies=None, host: str = HOST):
    return verify_sas_token(
        token, policies=policies or {"iothubowner": KEY_BYTES}, host_name=host, now=now
    )


# -- signing ------------------------------------------------------------------------------------


def test_token_is_bit_exact_against_an_independently_computed_example():
    token = generate_sas_token(HOST, "iothubowner", KEY, EXPIRY)
    assert token == _independent_token(HOST, KEY_BYTES, EXPIRY, "iothubowner") == PINNED_TOKEN


def test_signature_keeps_slash_and_escapes_plus_and_equals_like_the_sdk():
    sig = PINNED_TOKEN.split("&sig=")[1].split("&")[0]
    assert "/" in sig and "%2B" in sig and sig.endswith("%3D") and "+" not in sig


def test_a_decoded_key_signs_the_same_as_its_base64():
    assert generate_sas_token(HOST, "iothubowner", KEY_BYTES, EXPIRY) == PINNED_TOKEN


def test_token_source_caches_then_renews_before_expiry():
    clock = [NOW]
    source = SasTokenSource(
        parse_connection_string(
            f"HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
        ),
        ttl_s=3600,
        clock=lambda: clock[0],
    )
    first = source.token()
    assert source.expiry == int(NOW) + 3600 and source.token() == first
    clock[0] += 3600 - 301  # still outside the 300 s renewal margin
    assert source.token() == first
    clock[0] += 2
    renewed = source.token()
    assert (
        renewed != first
        and source.generated == 2
        and _verify(renewed, now=clock[0]).key_name == "iothubowner"
    )


def test_generated_tokens_are_registered_for_redaction():
    source = SasTokenSource(
        ConnectionString("hub-redact.azure-devices.net", "service", KEY), ttl_s=600
    )
    token = source.token()
    signature = token.split("&sig=")[1].split("&")[0]
    leaked = f"request failed with token={token!r} sig {signature} bare"
    assert token not in redact_text(leaked) and signature not in redact_text(leaked)


# -- verifying ----------------------------------------------------------------------------------


def test_verifier_accepts_the_worked_example():
    claims = _verify(PINNED_TOKEN)
    assert (claims.resource, claims.key_name, claims.expiry) == (
        "localhost:8443",
        "iothubowner",
        EXPIRY,
    )


def test_verifier_accepts_fields_in_any_order():
    head, _, fields = PINNED_TOKEN.partition(" ")
    assert _verify(f"{head} {'&'.join(reversed(fields.split('&')))}").expiry == EXPIRY


def test_verifier_rejects_a_tampered_signature():
    tampered = PINNED_TOKEN.replace("sig=vx", "sig=vy")
    with pytest.raises(SasRejected, match="signature does not match"):
        _verify(tampered)


def test_verifier_rejects_a_tampered_expiry():
    with pytest.raises(SasRejected, match="signature does not match"):
        _verify(PINNED_TOKEN.replace("se=1900000004", "se=1900000999"))


def test_verifier_rejects_an_expired_token():
    with pytest.raises(SasRejected, match="expired"):
        _verify(PINNED_TOKEN, now=EXPIRY + 1)


def test_verifier_rejects_an_unknown_policy():
    token = _independent_token(HOST, KEY_BYTES, EXPIRY, "nosuchpolicy")
    with pytest.raises(SasRejected, match="'nosuchpolicy' is not a shared access policy"):
        _verify(token)


def test_verifier_rejects_a_token_for_another_hub():
    token = _independent_token("other.azure-devices.net", KEY_BYTES, EXPIRY, "iothubowner")
    with pytest.raises(SasRejected, match="not this hub"):
        _verify(token)


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer abc", "SharedAccessSignature sr=x&se=1", "SharedAccessSignature garbage"],
)
def test_verifier_rejects_missing_or_malformed_headers(header):
    with pytest.raises(SasRejected):
        _verify(header)


def test_verifier_signs_over_the_sr_exactly_as_received():
    # A client that lower-cases or decodes `sr` before signing produces a different HMAC.
    digest = hmac.new(KEY_BYTES, f"{HOST}\n{EXPIRY}".encode(), hashlib.sha256).digest()
    decoded_sr = (
        f"SharedAccessSignature sr={HOST}&sig={urllib.parse.quote(base64.b64encode(digest))}"
        f"&se={EXPIRY}&skn=iothubowner"
    )
    assert _verify(decoded_sr).resource == HOST  # consistent with itself: signed as sent
    with pytest.raises(SasRejected):
        _verify(decoded_sr.replace(f"sr={HOST}", "sr=localhost%3A8443"))


# -- connection strings -------------------------------------------------------------------------


def test_a_service_connection_string_parses():
    parsed = parse_connection_string(
        f"HostName=hub.azure-devices.net;SharedAccessKeyName=service;SharedAccessKey={KEY}"
    )
    assert (parsed.host_name, parsed.key_name, parsed.key_bytes) == (
        "hub.azure-devices.net",
        "service",
        KEY_BYTES,
    )
    assert KEY not in repr(parsed)


SECRET_KEY = base64.b64encode(b"super-secret-policy-key-material!").decode()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is empty"),
        (
            f"HostName=hub.azure-devices.net;SharedAccessKey={SECRET_KEY}",
            "missing SharedAccessKeyName",
        ),
        ("HostName=hub.azure-devices.net;SharedAccessKeyName=service", "missing SharedAccessKey"),
        (f"SharedAccessKeyName=service;SharedAccessKey={SECRET_KEY}", "missing HostName"),
        (
            f"HostName=hub.azure-devices.net;SharedAccessKeyName=service;SharedAccessKey={SECRET_KEY};"
            "Hostname=x",
            "unknown key 'Hostname' (did you mean 'HostName'",
        ),
        (
            f"HostName=hub.azure-devices.net;SharedAccessKeyName=service;{SECRET_KEY}",
            "part 3 is not Key=Value",
        ),
        (
            f"HostName=a;HostName=b;SharedAccessKeyName=service;SharedAccessKey={SECRET_KEY}",
            "HostName more than once",
        ),
        (
            "HostName=hub.azure-devices.net;SharedAccessKeyName=service;SharedAccessKey=not base64!!",
            "SharedAccessKey is not valid base64",
        ),
        (
            f"HostName=https://hub.azure-devices.net/;SharedAccessKeyName=service;SharedAccessKey={SECRET_KEY}",
            "bare host name",
        ),
        (
            f"HostName=hub.azure-devices.net;DeviceId=dev1;SharedAccessKey={SECRET_KEY}",
            "device connection string",
        ),
        (
            "HostName=hub.azure-devices.net;SharedAccessKeyName=service;SharedAccessKey=;",
            "empty SharedAccessKey",
        ),
        (
            f"HostName=hub.azure-devices.net;SharedAccessSignature=SharedAccessSignature sr=x&sig={SECRET_KEY}",
            "holds a SharedAccessSignature",
        ),
    ],
)
def test_malformed_connection_strings_name_the_problem_and_never_the_key(text, problem):
    with pytest.raises(ConfigError) as err:
        parse_connection_string(text, "azure-a")
    message = str(err.value)
    assert "azure-a" in message and problem in message, message
    assert SECRET_KEY not in message and SECRET_KEY[:12] not in message


def test_an_unknown_key_that_could_be_part_of_the_secret_is_not_named():
    text = f"HostName=h.azure-devices.net;SharedAccessKeyName=p;SharedAccessKey={SECRET_KEY};Zm9vYmFy=1"
    with pytest.raises(ConfigError, match="part 4 has an unknown key") as err:
        parse_connection_string(text.replace("Zm9vYmFy", SECRET_KEY[:8]), "azure-a")
    assert SECRET_KEY[:8] not in str(err.value)
