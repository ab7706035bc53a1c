"""Who may deliver to an integration's webhook endpoint, checked on the raw request.

Two schemes, chosen per integration by the setting `webhook_auth`:

- `standard_webhooks` (senders that sign, e.g. a Svix relay): HMAC-SHA256 over
  `"{webhook-id}.{webhook-timestamp}.{raw body}"` with the base64-decoded `whsec_` secret,
  compared in constant time with every `v1,<base64>` entry of `webhook-signature` (a sender
  rotating keys sends several); the timestamp must be within ±300 s of now. Verified on the
  bytes as received — the `standardwebhooks` library decodes the body first, so a non-UTF-8
  body could never verify there. Asymmetric senders sign the same content with ed25519
  (`v1a,<base64>` entries): configure their public key, `whpk_<base64 of its 32 bytes>`, beside
  or instead of `whsec_` keys. A `webhook-id` or timestamp containing `.` is refused (the spec
  forbids it: the signed content is joined with `.`).
- `shared_secret` (the default for Golioth, AWS IoT rules and Event Grid, which cannot sign):
  a high-entropy secret in a header (setting `webhook_auth_header`, default
  `x-webhook-secret`) or, where the integration names one in `webhook_auth_query`, a query
  parameter (Azure's default: `code`, since an Event Grid endpoint URL's query is also sent with
  the validation handshake). Compared in constant time.

The secret comes from the environment variable named by the integration's
`secret_refs.webhook_secret`; several secrets separated by whitespace are all accepted, so our
side can rotate too. A weak secret (shorter than 32 characters, or a whsec_ key under 24 bytes)
is refused with a ConfigError, never used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sync_pipelines.errors import ConfigError
from sync_pipelines.observability.redaction import register_secret
from sync_pipelines.providers.settings import WEBHOOK_SECRET_REF, check_secret_ref
from sync_pipelines.store.integrations import Integration

STANDARD_WEBHOOKS = "standard_webhooks"
SHARED_SECRET = "shared_secret"
SCHEMES = (STANDARD_WEBHOOKS, SHARED_SECRET)

#: the key in an integration's secret_refs naming the variable that holds the webhook secret
SECRET_REF = WEBHOOK_SECRET_REF
DEFAULT_SECRET_HEADER = "x-webhook-secret"
#: providers whose senders cannot sign, and the query parameter each accepts by default
_UNSIGNED_DEFAULT_QUERY = {"golioth": None, "aws_iot": None, "azure_iot": "code"}

MIN_SECRET_CHARS = 32
MIN_SECRET_DISTINCT_CHARS = 8  # refuses "aaaa…", "passwordpassword…" and the like
MIN_HMAC_KEY_BYTES = 24  # Standard Webhooks: 24–64 bytes
TOLERANCE_S = 300

_WHSEC_PREFIX = "whsec_"
#: Standard Webhooks asymmetric keys: the sender's public key (ours to hold) and its signing key
#: (never ours: refused if configured here)
_WHPK_PREFIX = "whpk_"
_WHSK_PREFIX = "whsk_"
ED25519_SIGNATURE_BYTES = 64
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class WebhookRejected(Exception):
    """A delivery that is refused: HTTP `status`, a short `reason` code, a message for the sender.

    Messages never contain the secret or the signature received."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class WebhookAuth:
    """How one integration's deliveries are authenticated (resolved secrets inside)."""

    scheme: str
    #: HMAC keys (standard_webhooks) or the shared secrets' bytes, old and new during rotation
    keys: tuple[bytes, ...]
    header: str = DEFAULT_SECRET_HEADER
    query_param: str | None = None
    #: senders' ed25519 public keys (standard_webhooks `v1a` signatures)
    public_keys: tuple[Ed25519PublicKey, ...] = ()

    def __repr__(self) -> str:  # never print the keys
        return (
            f"WebhookAuth({self.scheme}, keys={len(self.keys)}, "
            f"public_keys={len(self.public_keys)}, header={self.header!r})"
        )


def webhook_auth_for(
    integration: Integration, environ: Mapping[str, str] | None = None
) -> WebhookAuth:
    """Resolve an integration's webhook scheme and secret(s); ConfigError says what to fix."""
    environ = os.environ if environ is None else environ
    iid, settings = integration.integration_id, integration.settings
    unsigned = integration.provider in _UNSIGNED_DEFAULT_QUERY
    scheme = settings.get("webhook_auth") or (SHARED_SECRET if unsigned else STANDARD_WEBHOOKS)
    if scheme not in SCHEMES:
        raise ConfigError(
            iid, f"setting webhook_auth must be one of {', '.join(SCHEMES)}, got {scheme!r:.40}"
        )
    env_name = integration.secret_refs.get(SECRET_REF)
    if not env_name:
        raise ConfigError(
            iid,
            f"no webhook secret: set secret_refs.{SECRET_REF} to the name of an environment variable",
        )
    raw = environ.get(check_secret_ref(SECRET_REF, env_name, iid), "")
    values = raw.split()
    if not values:
        raise ConfigError(
            iid, f"webhook secret expected in environment variable {env_name}, which is not set"
        )
    for value in values:
        register_secret(value)
    header = str(settings.get("webhook_auth_header") or DEFAULT_SECRET_HEADER).lower()
    if not _HEADER_NAME.fullmatch(header):
        raise ConfigError(
            iid, f"setting webhook_auth_header {header!r:.60} is not a valid header name"
        )
    query = settings.get("webhook_auth_query", _UNSIGNED_DEFAULT_QUERY.get(integration.provider))
    public_keys: tuple[Ed25519PublicKey, ...] = ()
    if scheme == STANDARD_WEBHOOKS:
        public_keys = tuple(
            _public_key(v, iid, env_name) for v in values if v.startswith(_WHPK_PREFIX)
        )
        keys = tuple(_hmac_key(v, iid, env_name) for v in values if not v.startswith(_WHPK_PREFIX))
    else:
        keys = tuple(_shared_secret(value, iid, env_name) for value in values)
    return WebhookAuth(
        scheme=scheme,
        keys=keys,
        header=header,
        query_param=query or None,
        public_keys=public_keys,
    )


def _public_key(value: str, integration_id: str, env_name: str) -> Ed25519PublicKey:
    try:
        raw = _b64(value.removeprefix(_WHPK_PREFIX))
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise ConfigError(
            integration_id,
            f"webhook key in {env_name} is not a whpk_<base64> ed25519 public key (32 bytes)",
        ) from None


def _b64(encoded: str) -> bytes:
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)


def _hmac_key(value: str, integration_id: str, env_name: str) -> bytes:
    if value.startswith(_WHSK_PREFIX):
        raise ConfigError(
            integration_id,
            f"webhook secret in {env_name} is a whsk_ signing key, which only the sender may "
            "hold: configure its whpk_ public key here, and rotate the signing key",
        )
    encoded = value.removeprefix(_WHSEC_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            integration_id,
            f"webhook secret in {env_name} is not a whsec_<base64> Standard Webhooks key",
        ) from None
    if len(key) < MIN_HMAC_KEY_BYTES:
        raise ConfigError(
            integration_id,
            f"webhook secret in {env_name} is too weak: {len(key)} bytes, Standard Webhooks keys need "
            f"at least {MIN_HMAC_KEY_BYTES} random bytes (e.g. whsec_ + base64 of 32 random bytes)",
        )
    return key


def _shared_secret(value: str, integration_id: str, env_name: str) -> bytes:
    if len(value) < MIN_SECRET_CHARS or len(set(value)) < MIN_SECRET_DISTINCT_CHARS:
        raise ConfigError(
            integration_id,
            f"webhook secret in {env_name} is too weak: use at least {MIN_SECRET_CHARS} random "
            "characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)",
        )
    return value.encode("utf-8")


# -- verification ------------------------------------------------------------------------------


def verify_standard_webhook(
    keys: tuple[bytes, ...],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_s: int = TOLERANCE_S,
    public_keys: tuple[Ed25519PublicKey, ...] = (),
) -> str:
    """Check a Standard Webhooks delivery; returns its `webhook-id`, or raises WebhookRejected (401)."""
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signature_header = headers.get("webhook-signature", "")
    missing = [
        n
        for n, v in (
            ("webhook-id", msg_id),
            ("webhook-timestamp", timestamp),
            ("webhook-signature", signature_header),
        )
        if not v
    ]
    if missing:
        raise WebhookRejected(
            401, "missing_signature_headers", f"missing header(s): {', '.join(missing)}"
        )
    if "." in msg_id:
        raise WebhookRejected(
            401, "invalid_webhook_id", "webhook-id must not contain `.` (Standard Webhooks)"
        )
    if not _TIMESTAMP.fullmatch(timestamp):
        raise WebhookRejected(
            401, "invalid_timestamp", "webhook-timestamp is not a unix time in seconds"
        )
    skew = int(timestamp) - now
    if abs(skew) > tolerance_s:
        direction = "old" if skew < 0 else "far in the future"
        raise WebhookRejected(
            401,
            "stale_timestamp",
            f"webhook-timestamp is {abs(skew):.0f} s {direction} (tolerance {tolerance_s} s); "
            "check the sender's clock or resend",
        )
    signed = b"%s.%s.%s" % (_wire_bytes(msg_id), timestamp.encode("ascii"), body)
    expected = [hmac.new(key, signed, hashlib.sha256).digest() for key in keys]
    for entry in signature_header.split(" "):
        version, _, encoded = entry.partition(",")
        if version not in ("v1", "v1a") or not encoded:
            continue  # other versions and junk are not ours to judge
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if version == "v1a":
            if _ed25519_verifies(public_keys, candidate, signed):
                return msg_id
        # compare_digest for every key, no early exit on which key matched
        elif any([hmac.compare_digest(candidate, digest) for digest in expected]):
            return msg_id
    raise WebhookRejected(401, "bad_signature", "no webhook-signature entry matches the body")


def _ed25519_verifies(
    public_keys: tuple[Ed25519PublicKey, ...], signature: bytes, signed: bytes
) -> bool:
    if len(signature) != ED25519_SIGNATURE_BYTES:
        return False
    for key in public_keys:
        try:
            key.verify(signature, signed)
            return True
        except InvalidSignature:
            continue
    return False


def verify_shared_secret(
    auth: WebhookAuth, headers: Mapping[str, str], query: Mapping[str, str]
) -> None:
    """Check the shared secret in the header (or configured query parameter); raises 401."""
    offered = headers.get(auth.header)
    where = f"header {auth.header}"
    if offered is None and auth.query_param:
        offered = query.get(auth.query_param)
        where = f"query parameter {auth.query_param}"
    if offered is None:
        hint = f" or query parameter {auth.query_param}" if auth.query_param else ""
        raise WebhookRejected(
            401, "missing_secret", f"missing shared secret (header {auth.header}{hint})"
        )
    candidate = (
        offered.encode("utf-8", "surrogatepass")
        if where.startswith("query")
        else _wire_bytes(offered)
    )
    if not any([hmac.compare_digest(candidate, key) for key in auth.keys]):
        raise WebhookRejected(401, "bad_secret", f"shared secret in {where} does not match")


def _wire_bytes(header_value: str) -> bytes:
    """A header value back as the bytes sent (ASGI servers decode header bytes as latin-1)."""
    try:
        return header_value.encode("latin-1")
    except UnicodeEncodeError:  # not from the wire (e.g. built in a test): take it as UTF-8
        return header_value.encode("utf-8", "surrogatepass")


# -- signing (our senders: tests, the benchmark, emulators) -------------------------------------


def sign_standard_webhook(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value a Standard Webhooks sender would send (`v1,<base64>`)."""
    encoded = secret.removeprefix(_WHSEC_PREFIX)
    key = base64.b64decode(encoded + "=" * (-len(encoded) % 4))
    digest = hmac.new(
        key, b"%s.%d.%s" % (msg_id.encode(), timestamp, body), hashlib.sha256
    ).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign_standard_webhook_v1a(
    signing_key: Ed25519PrivateKey, msg_id: str, timestamp: int, body: bytes
) -> str:
    """The `v1a,<base64>` entry an asymmetric Standard Webhooks sender would send."""
    signature = signing_key.sign(b"%s.%d.%s" % (msg_id.encode(), timestamp, body))
    return "v1a," + base64.b64encode(signature).decode("ascii")


def public_key_setting(signing_key: Ed25519PrivateKey) -> str:
    """What the receiver is configured with for this sender: `whpk_<base64 public key>`."""
    raw = signing_key.public_key().public_bytes_raw()
    return _WHPK_PREFIX + base64.b64encode(raw).decode("ascii")


def standard_webhook_headers(
    secret: str, msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_standard_webhook(secret, msg_id, timestamp, body),
        "content-type": "application/json",
    }
