"""Azure IoT Hub shared access signatures (PROVIDERS.md §3.4), both sides of the wire.

The provider side parses a hub connection string and signs SAS tokens exactly as
azure-iot-hub 2.7.0 does (`sr = quote_plus(HostName)`, HMAC-SHA256 over `sr + "\\n" + se`
with the base64-decoded key, `sig = quote(b64(hmac))`), caching each token until shortly
before it expires. The emulator side checks a received token the way the hub does: over the
`sr` exactly as received, in constant time, then for expiry.

Secrets never reach a message: parse errors name the part that is wrong, not its value, and
every key and token made here is registered for redaction before it can be logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from sync_pipelines.errors import ConfigError
from sync_pipelines.observability.redaction import REDACTED, register_secret

HOST_NAME = "HostName"
SHARED_ACCESS_KEY_NAME = "SharedAccessKeyName"
SHARED_ACCESS_KEY = "SharedAccessKey"
SHARED_ACCESS_SIGNATURE = "SharedAccessSignature"
DEVICE_ID = "DeviceId"
MODULE_ID = "ModuleId"
GATEWAY_HOST_NAME = "GatewayHostName"
#: the keys the SDK's connection_string.py accepts (case-sensitive, like the SDK)
VALID_KEYS = (
    HOST_NAME,
    SHARED_ACCESS_KEY_NAME,
    SHARED_ACCESS_KEY,
    SHARED_ACCESS_SIGNATURE,
    DEVICE_ID,
    MODULE_ID,
    GATEWAY_HOST_NAME,
)

TOKEN_SCHEME = "SharedAccessSignature"
DEFAULT_TTL_S = 3600
#: renew at most this long before expiry (less for short TTLs: a tenth of the TTL)
MAX_RENEW_MARGIN_S = 300

_HOST = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$")
_KEY_NAME_SHAPE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,39}$")


# ---------------------------------------------------------------------------------------------
# Connection string
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionString:
    """A hub-level (service) connection string: which hub, which policy, the policy's key."""

    host_name: str
    key_name: str
    #: the base64 policy key as written in the connection string
    key: str = field(repr=False)

    @property
    def key_bytes(self) -> bytes:
        return base64.b64decode(self.key)


def parse_connection_string(text: str, integration_id: str | None = None) -> ConnectionString:
    """Parse `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...`.

    Raises ConfigError naming the integration and the part that is wrong or missing; the key
    (and any other value that could be secret) is never part of the message.
    """
    parts = _split(text, integration_id)
    key = parts.get(SHARED_ACCESS_KEY, "")
    if key:
        register_secret(key)  # before anything could echo it
    if SHARED_ACCESS_SIGNATURE in parts:
        _refuse(
            integration_id,
            key,
            "holds a SharedAccessSignature, which expires and cannot be "
            "renewed; use a hub shared access policy: HostName, SharedAccessKeyName and "
            "SharedAccessKey",
        )
    if DEVICE_ID in parts or MODULE_ID in parts:
        _refuse(
            integration_id,
            key,
            "is a device connection string (it has DeviceId); the service "
            "API needs a hub shared access policy such as iothubowner or service: HostName, "
            "SharedAccessKeyName and SharedAccessKey",
        )
    missing = [k for k in (HOST_NAME, SHARED_ACCESS_KEY_NAME, SHARED_ACCESS_KEY) if k not in parts]
    if missing:
        _refuse(
            integration_id,
            key,
            f"is missing {' and '.join(missing)} (expected "
            "HostName=<hub>.azure-devices.net;SharedAccessKeyName=<policy>;SharedAccessKey=<key>)",
        )
    empty = [
        k for k in (HOST_NAME, SHARED_ACCESS_KEY_NAME, SHARED_ACCESS_KEY) if not parts[k].strip()
    ]
    if empty:
        _refuse(integration_id, key, f"has an empty {' and '.join(empty)}")
    host = parts[HOST_NAME].strip()
    if not _HOST.match(host):
        _refuse(
            integration_id,
            key,
            "HostName must be a bare host name like "
            "myhub.azure-devices.net (no scheme, path or spaces)",
        )
    try:
        decoded = base64.b64decode(key.strip(), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if not decoded:
        _refuse(
            integration_id,
            key,
            "SharedAccessKey is not valid base64: copy the policy's "
            "primary or secondary key exactly",
        )
    return ConnectionString(
        host_name=host, key_name=parts[SHARED_ACCESS_KEY_NAME].strip(), key=key.strip()
    )


def _split(text: str, integration_id: str | None) -> dict[str, str]:
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(integration_id, "connection_string is empty")
    segments = [s for s in text.strip().split(";") if s.strip()]
    # Values that could be secret: scrubbed from any message about this string.
    secrets = [s.partition("=")[2] for s in segments if "=" in s]
    parts: dict[str, str] = {}
    for position, segment in enumerate(segments, start=1):
        name, sep, value = segment.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(
                integration_id,
                f"connection_string part {position} is not Key=Value "
                "(expected Key=Value pairs separated by ';')",
            )
        if name not in VALID_KEYS:
            raise ConfigError(
                integration_id,
                f"connection_string part {position} has "
                f"{_describe_unknown(name, secrets)} (valid keys: {', '.join(VALID_KEYS)})",
            )
        if name in parts:
            raise ConfigError(integration_id, f"connection_string has {name} more than once")
        parts[name] = value
    return parts


def _describe_unknown(name: str, secrets: list[str]) -> str:
    """Name the unknown key only when it cannot be a piece of a secret value."""
    if not _KEY_NAME_SHAPE.match(name) or any(name in s for s in secrets if s):
        return "an unknown key"
    for valid in VALID_KEYS:
        if valid.lower() == name.lower():
            return f"unknown key {name!r} (did you mean {valid!r}? keys are case-sensitive)"
    return f"unknown key {name!r}"


def _refuse(integration_id: str | None, key: str, problem: str) -> None:
    message = f"connection_string {problem}"
    if key:
        message = message.replace(key, REDACTED)
    raise ConfigError(integration_id, message)


# ---------------------------------------------------------------------------------------------
# Signing
# ---------------------------------------------------------------------------------------------


def _hmac_digest(key: bytes, encoded_resource: str, expiry: str) -> bytes:
    return hmac.new(key, f"{encoded_resource}\n{expiry}".encode(), hashlib.sha256).digest()


def generate_sas_token(host_name: str, key_name: str, key: bytes | str, expiry: int) -> str:
    """`SharedAccessSignature sr=..&sig=..&se=..&skn=..` for the hub, valid until `expiry`
    (epoch seconds). `key` is the policy key, base64 text or already decoded."""
    key_bytes = base64.b64decode(key) if isinstance(key, str) else key
    resource = quote_plus(host_name)
    # `quote` (not quote_plus) leaves '/' unescaped, as the SDK does.
    signature = quote(base64.b64encode(_hmac_digest(key_bytes, resource, str(expiry))))
    return f"{TOKEN_SCHEME} sr={resource}&sig={signature}&se={expiry}&skn={key_name}"


class SasTokenSource:
    """The current token for one connection string: made on first use and again shortly before
    it expires, so a long sync keeps working. Thread-safe (state reads run in a pool)."""

    def __init__(
        self,
        connection: ConnectionString,
        ttl_s: int = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_s < 1:
            raise ValueError(f"SAS token TTL must be >= 1 s, got {ttl_s}")
        self.connection = connection
        self.ttl_s = int(ttl_s)
        self.renew_margin_s = min(MAX_RENEW_MARGIN_S, self.ttl_s // 10)
        self._clock = clock
        self._key = connection.key_bytes
        self._token: str | None = None
        self._expiry = 0
        self._lock = threading.Lock()
        self.generated = 0

    @property
    def expiry(self) -> int:
        """Epoch seconds at which the current token expires (0 before the first one)."""
        return self._expiry

    def token(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is None or now >= self._expiry - self.renew_margin_s:
                self._expiry = int(now + self.ttl_s)
                token = generate_sas_token(
                    self.connection.host_name, self.connection.key_name, self._key, self._expiry
                )
                register_secret(token)
                register_secret(token.partition("&sig=")[2].partition("&")[0])
                self._token = token
                self.generated += 1
            return self._token


# ---------------------------------------------------------------------------------------------
# Verification (the emulator's side)
# ---------------------------------------------------------------------------------------------


class SasRejected(Exception):
    """A token the hub refuses; the message says why (and never contains the token)."""


@dataclass(frozen=True, slots=True)
class SasClaims:
    """What an accepted token said."""

    resource: str
    key_name: str
    expiry: int


def verify_sas_token(
    authorization: str | None,
    *,
    policies: Mapping[str, bytes],
    host_name: str,
    now: float,
) -> SasClaims:
    """Check an `Authorization` header against the hub's shared access policies.

    The HMAC is recomputed over the `sr` exactly as received (still URL-encoded), compared in
    constant time with the base64 of `unquote(sig)`; then the resource must be this hub and
    `se` must not have passed. Raises SasRejected.
    """
    if not authorization:
        raise SasRejected("Authorization header missing")
    scheme, _, rest = authorization.strip().partition(" ")
    if scheme != TOKEN_SCHEME or not rest.strip():
        raise SasRejected("Authorization header is not a SharedAccessSignature token")
    fields: dict[str, str] = {}
    for part in rest.strip().split("&"):
        name, sep, value = part.partition("=")
        if not sep or not name:
            raise SasRejected(
                "malformed SharedAccessSignature: fields must be name=value joined by '&'"
            )
        if name in fields:
            raise SasRejected(f"malformed SharedAccessSignature: field {name!r} appears twice")
        fields[name] = value
    missing = [f for f in ("sr", "sig", "se") if not fields.get(f)]
    if missing:
        raise SasRejected(f"malformed SharedAccessSignature: missing {', '.join(missing)}")
    key_name = fields.get("skn")
    if not key_name:
        raise SasRejected("a token without skn (device-scoped) is not accepted by the service API")
    key = policies.get(key_name)
    if key is None:
        raise SasRejected(
            f"authorization rule {key_name!r} is not a shared access policy of this hub"
        )
    try:
        expiry = int(fields["se"])
    except ValueError:
        raise SasRejected("malformed SharedAccessSignature: se is not an integer") from None
    try:
        received = base64.b64decode(unquote(fields["sig"]), validate=True)
    except (binascii.Error, ValueError):
        raise SasRejected("malformed SharedAccessSignature: sig is not base64") from None
    if not hmac.compare_digest(_hmac_digest(key, fields["sr"], fields["se"]), received):
        raise SasRejected(f"signature does not match policy {key_name!r}")
    resource = unquote_plus(fields["sr"]).lower()
    hub = host_name.lower()
    if resource != hub and not resource.startswith(hub + "/"):
        raise SasRejected(f"token resource {resource!r} is not this hub ({hub})")
    if expiry < now:
        raise SasRejected(
            f"SAS token expired at {expiry} (epoch seconds); the hub's clock says "
            f"{int(now)}: renew the token"
        )
    return SasClaims(resource=resource, key_name=key_name, expiry=expiry)
