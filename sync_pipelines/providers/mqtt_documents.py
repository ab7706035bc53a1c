"""MQTT payloads → the provider contract's records, and desired documents → payloads.

Every decoder raises DocumentError (a ValueError) saying what is wrong; the provider turns it
into a RejectedRecord / StateFailure naming the topic and device, and carries on.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sync_pipelines import json_limits
from sync_pipelines.providers.contract import DeviceRecord, JsonDict, TelemetryMessage

#: keys of a reported/desired document that are bookkeeping, not state
_STATE_BOOKKEEPING = ("version", "updated_at")


class DocumentError(ValueError):
    """A payload that is not the JSON document its topic promises."""


def decode_object(payload: bytes, *, max_bytes: int) -> JsonDict:
    """A payload as a JSON object, refusing oversized ones before parsing them."""
    if len(payload) > max_bytes:
        raise DocumentError(
            f"payload of {len(payload)} bytes exceeds max_message_bytes={max_bytes}"
        )
    try:
        doc = json_limits.decode(payload)
    except ValueError as exc:  # UnicodeDecodeError and JsonLimitError are ValueErrors too
        raise DocumentError(f"payload is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise DocumentError(f"payload is a JSON {type(doc).__name__}, not an object")
    if _has_nul(doc):
        # valid JSON, but PostgreSQL can hold neither \u0000 in JSONB nor NUL in TEXT
        raise DocumentError("payload contains a \\u0000 character, which the store cannot hold")
    return doc


def payload_preview(payload: bytes, limit: int = 2000) -> str:
    """What a rejected payload looked like, bounded and printable, for the activity row."""
    text = payload[:limit].decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")
    return text if len(payload) <= limit else f"{text}… ({len(payload)} bytes)"


def meta_to_device(external_id: str, doc: JsonDict) -> DeviceRecord:
    """A retained meta document → a device record (its `version` becomes `meta_version`)."""
    version = _version(doc, required=True)
    name = doc.get("name", external_id)
    if not isinstance(name, str) or not name:
        raise DocumentError("`name` must be a non-empty string")
    attributes = doc.get("attributes", {})
    if not isinstance(attributes, dict):
        raise DocumentError("`attributes` must be an object")
    status = doc.get("status")
    if status is not None and not isinstance(status, str):
        raise DocumentError("`status` must be a string")
    enabled = doc.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise DocumentError("`enabled` must be true or false")
    return DeviceRecord(
        external_id=external_id,
        name=name,
        hardware_ids=_str_list(doc, "hardware_ids"),
        tags=_str_list(doc, "tags"),
        status=status,
        enabled=enabled,
        last_seen_at=parse_time(doc.get("last_seen_at"), "last_seen_at"),
        provider_created_at=parse_time(doc.get("created_at"), "created_at"),
        provider_updated_at=parse_time(doc.get("updated_at"), "updated_at"),
        # the meta version is part of what was imported: a bumped version is a change
        attributes={**attributes, "meta_version": version},
    )


def state_of(doc: JsonDict) -> tuple[int, JsonDict]:
    """A retained reported/desired document → (version, state without bookkeeping).

    The documented shape is {"version", "updated_at", "state": {...}}; a flat document (no
    `state` object) is accepted as the state itself, minus the bookkeeping keys.
    """
    version = _version(doc, required=False)
    state = doc.get("state")
    if state is None:
        state = {k: v for k, v in doc.items() if k not in _STATE_BOOKKEEPING}
    if not isinstance(state, dict):
        raise DocumentError("`state` must be an object")
    return version, state


def state_document(version: int, state: JsonDict, now: datetime) -> bytes:
    return json.dumps(
        {"version": version, "updated_at": format_time(now), "state": state}, separators=(",", ":")
    ).encode()


def merge_patch(target: JsonDict, patch: JsonDict) -> JsonDict:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes a key."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_patch(merged[key], value)
        else:
            merged[key] = value
    return merged


def telemetry_message(
    external_id: str, topic: str, doc: JsonDict, *, received_at: datetime, duplicate: bool
) -> TelemetryMessage:
    seq = doc.get("seq")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
        raise DocumentError(f"`seq` must be a non-negative integer, got {seq!r:.40}")
    ts = doc.get("ts")
    if isinstance(ts, int | float) and not isinstance(ts, bool):
        try:
            device_time: datetime | None = datetime.fromtimestamp(ts, UTC)
        except (ValueError, OverflowError, OSError):  # NaN, or beyond the years datetime holds
            raise DocumentError(f"`ts` {ts!r:.40} is not a Unix time in range") from None
    else:
        device_time = parse_time(ts, "ts")
    return TelemetryMessage(
        external_id=external_id,
        topic=topic,
        payload=doc,
        received_at=received_at,
        sequence=seq,
        duplicate=duplicate,
        device_time=device_time,
    )


def parse_time(value: Any, field: str) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise DocumentError(f"`{field}` must be an RFC 3339 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise DocumentError(f"`{field}` {value!r:.40} is not an RFC 3339 time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _version(doc: JsonDict, *, required: bool) -> int:
    version = doc.get("version")
    if version is None and not required:
        return 0
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise DocumentError(f"`version` must be a non-negative integer, got {version!r:.40}")
    return version


def _str_list(doc: JsonDict, key: str) -> tuple[str, ...]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DocumentError(f"`{key}` must be a list of strings")
    return tuple(value)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False
