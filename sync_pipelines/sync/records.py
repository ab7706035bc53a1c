"""Provider records → store rows, with the content hash that lets unchanged rows be skipped."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import msgspec

from sync_pipelines.providers.contract import DeviceRecord, DeviceState, PlainJson

# The sorted-key canonical JSON the content hash is taken over, byte for byte what
# `json.dumps(..., sort_keys=True, separators=(",", ":"), default=str)` writes. Built once:
# `JSONEncoder.encode` builds a new C encoder on every call, which cost as much as the
# encoding itself on the sync's hot path; the C encoder is called directly instead (no
# circular-reference markers: these documents come from JSON or from provider records).
_quote = json.encoder.encode_basestring_ascii  # the C string encoder json.dumps uses
_json_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)
_c_encoder = (
    json.encoder.c_make_encoder(None, str, _quote, None, ":", ",", True, False, True)
    if json.encoder.c_make_encoder is not None
    else None
)


def _canonical(value: Any) -> str:
    if _c_encoder is None:  # an interpreter without the C accelerator
        return _json_encoder.encode(value)
    return "".join(_c_encoder(value, 0))


# A plain decoded document as `_canonical` writes it, from msgspec's C encoder (keys sorted):
# ~3x cheaper, and the costliest part of a device's hash. Only for `PlainJson` — no float
# written with an exponent, NaN or infinity (msgspec writes those otherwise), no datetimes,
# sets, bytes or non-str keys — and only when the text is ASCII without DEL: json escapes
# those, msgspec does not.
_encode_sorted = msgspec.json.Encoder(order="sorted").encode


def _document(value: Any) -> str:
    if type(value) is PlainJson:
        encoded = _encode_sorted(value)
        if encoded.isascii() and b"\x7f" not in encoded:
            return encoded.decode()
    return _canonical(value)


def _str_list(values: tuple[str, ...] | list[str]) -> str:
    """A list of strings as `_canonical` writes it, without the encoder's per-call set-up."""
    try:  # `_quote` is what the C encoder calls for each str (subclasses too); it refuses others
        return "[" + ",".join(map(_quote, values)) + "]"
    except TypeError:
        return _canonical(list(values))


def _digest_text(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


# A UTC time as `str()` writes it, from msgspec's C RFC 3339 encoder: ~5x cheaper than
# `datetime.__str__`, which a device's three times made the hash's costliest part. msgspec
# writes `"YYYY-MM-DDTHH:MM:SS[.ffffff]Z"` where `str()` writes `YYYY-MM-DD HH:MM:SS[.ffffff]+00:00`
# (both: six fraction digits, none when zero); anything but the stdlib's UTC goes to `str()`.
_encode_time = msgspec.json.Encoder().encode


def _time_text(value: datetime) -> str:
    """A datetime as `_scalar` writes it: quoted `str(value)`."""
    if type(value) is datetime and value.tzinfo is UTC:
        text = _encode_time(value).decode()
        return f'{text[:11]} {text[12:-2]}+00:00"'
    return _quote(str(value))


def _scalar(value: Any) -> str:
    """A field as `_canonical` writes it, with fast paths for the usual types."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, datetime):
        return _time_text(value)  # what default=str makes of it
    return _canonical(value)


def _optional_time(value: datetime | None) -> str:
    """`_scalar` for a time field, its usual types first."""
    if value is None:
        return "null"
    if isinstance(value, datetime):
        return _time_text(value)
    return _scalar(value)


def device_row(
    device: DeviceRecord,
    *,
    organization_id: str,
    integration_id: str,
    run_id: str | None,
    request_id: str | None,
    now: datetime,
) -> dict[str, Any]:
    # Each JSON column is serialised once (attributes with sorted keys, which JSONB ignores
    # and SQLite stores as equal JSON) and the hash input is assembled from those texts. The
    # assembled text is byte for byte the sorted-key JSON of the whole content the hash has
    # always been taken over, so stored hashes stay valid: no upgrade churn.
    hardware_ids = _str_list(device.hardware_ids)
    tags = _str_list(device.tags)
    attributes = _document(device.attributes)
    canonical = (
        f'{{"attributes":{attributes},"enabled":{_scalar(device.enabled)},'
        f'"hardware_ids":{hardware_ids},"last_seen_at":{_optional_time(device.last_seen_at)},'
        f'"name":{_scalar(device.name)},'
        f'"provider_created_at":{_optional_time(device.provider_created_at)},'
        f'"provider_updated_at":{_optional_time(device.provider_updated_at)},'
        f'"status":{_scalar(device.status)},"tags":{tags}}}'
    )
    return {
        "organization_id": organization_id,
        "integration_id": integration_id,
        "external_id": device.external_id,
        "name": device.name,
        "hardware_ids": hardware_ids,
        "tags": tags,
        "status": device.status,
        "enabled": device.enabled,
        "attributes": attributes,
        "provider_created_at": device.provider_created_at,
        "provider_updated_at": device.provider_updated_at,
        "last_seen_at": device.last_seen_at,
        "content_hash": _digest_text(canonical),
        "last_run_id": run_id,
        "last_request_id": request_id,
        "created_at": now,
        "updated_at": now,
        "deleted_at": None,
    }


def state_row(
    state: DeviceState,
    *,
    organization_id: str,
    integration_id: str,
    run_id: str | None,
    now: datetime,
) -> dict[str, Any]:
    # each document serialised once, sorted (JSONB ignores the order, SQLite stores equal
    # JSON), and the hash input assembled from those texts: byte for byte the sorted-key JSON
    # of [reported, desired, version] the hash has always been taken over
    reported = _document(state.reported)
    desired = _document(state.desired)
    return {
        "organization_id": organization_id,
        "integration_id": integration_id,
        "external_id": state.external_id,
        "reported": None if state.reported is None else reported,
        "desired": None if state.desired is None else desired,
        "version": state.version,
        "observed_at": state.observed_at,
        # observed_at changes every read; only the documents and version say "changed"
        "content_hash": _digest_text(f"[{reported},{desired},{_scalar(state.version)}]"),
        "last_run_id": run_id,
        "last_request_id": state.request_id,
        "updated_at": now,
    }
