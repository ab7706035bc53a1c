"""A verified delivery → the inbox events it carries (or the handshake it is), per provider.

Idempotency keys (the inbox is unique on integration + event id):

- a Standard-Webhooks-signed delivery: `webhook-id` (stable across the sender's retries), except
  an Event Grid batch, whose events each keep their own `id`;
- Azure Event Grid: each event's `id`;
- Golioth pipeline webhook: `Ce-Id` when present (CloudEvents binary mode), else
  `sha256:` of (`Ce-Source`, raw body) — so two identical readings without a timestamp are one
  event; add the `inject-metadata` transformer, which puts the time in the body;
- AWS IoT rule HTTPS action: a registry event's `eventId` (stable across AWS's at-least-once
  redeliveries), else the body's `id` (put `newuuid() AS id` in the rule SQL), else `sha256:` of
  the raw body.

Handshakes are answered, not queued as work: Event Grid's SubscriptionValidation (answered with
its code) and AWS's DestinationConfirmation (stored with its enableUrl for an operator to open;
the receiver never calls out).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sync_pipelines.json_limits import MAX_JSON_DEPTH, depth_problem, size_problem

MAX_EVENT_ID_CHARS = 256
AZURE_VALIDATION = "SubscriptionValidation"
AWS_CONFIRMATION = "DestinationConfirmation"


class PayloadError(ValueError):
    """A verified delivery whose body is not what the provider sends (answered 400)."""


class PayloadTooLarge(PayloadError):
    """A body within the byte limit whose document is not: its canonical size, which the inbox
    processor measures again, is over the limit (json_limits; answered 413)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the receiver verified: the raw body, lower-cased headers, and the signed id if any."""

    provider: str
    body: bytes
    headers: Mapping[str, str]
    signed_id: str | None = None
    #: the integration's size limit, applied to the parsed document too (json_limits)
    max_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class InboxEvent:
    event_id: str
    event_type: str
    external_id: str | None
    payload: Any


@dataclass(frozen=True, slots=True)
class Handshake:
    """A sender's subscription handshake: what to answer, and what to keep."""

    kind: str  # event_grid_validation | aws_destination_confirmation
    response: dict[str, Any]
    #: stored in the inbox (AWS: the confirmation with its enableUrl), or None
    event: InboxEvent | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def read_delivery(delivery: Delivery) -> Handshake | list[InboxEvent]:
    """Parse the body and name its events; PayloadError says what is wrong with it."""
    return _READERS[delivery.provider](delivery)


def supported_providers() -> frozenset[str]:
    return frozenset(_READERS)


def is_unauthenticated_handshake(provider: str, headers: Mapping[str, str]) -> bool:
    """AWS's destination confirmation cannot carry our secret (rule headers are not sent with it)."""
    return (
        provider == "aws_iot" and headers.get("x-amz-rules-engine-message-type") == AWS_CONFIRMATION
    )


# -- JSON ---------------------------------------------------------------------------------------


def parse_json(body: bytes, max_bytes: int | None = None) -> Any:
    """Strict JSON that both stores can hold: UTF-8, no NaN/Infinity, no NUL, no lone surrogates,
    at most MAX_JSON_DEPTH deep and (with `max_bytes`) of a canonical size within it."""
    if not body.strip():
        raise PayloadError("body is empty; a JSON document was expected")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(
            f"body is not UTF-8 (invalid byte at offset {exc.start}); a JSON document was expected"
        ) from None
    try:
        value = json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise PayloadError(
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise PayloadError(
            f"body is not acceptable JSON: nested deeper than {MAX_JSON_DEPTH} levels"
        ) from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise PayloadError(f"body is not acceptable JSON: {str(exc)[:200]}") from None
    if value is None:
        raise PayloadError("body is JSON null; a JSON object or array was expected")
    problem = depth_problem(value)
    if problem:  # the inbox processor could not read it back (json_limits)
        raise PayloadError(f"body is not acceptable JSON: {problem}")
    _check_storable(value)
    problem = None
    if max_bytes is not None and (len(body) > max_bytes or _EXPONENT.search(text)):
        # Skipped otherwise: without a number written with an exponent, the canonical size is
        # never more than the body's (compacting, decoding escapes and plain decimals only
        # shorten it), and the body is within the limit already.
        problem = size_problem(value, max_bytes)
    if problem:
        raise PayloadTooLarge(f"body is too large: {problem}")
    return value


#: a digit followed by an exponent marker: perhaps a number the canonical form writes out longer
_EXPONENT = re.compile(r"[0-9][eE]")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_storable(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise PayloadError("body is not acceptable JSON: a number is out of range")
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_text(key)
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise PayloadError(
            "body is not acceptable JSON: a string contains \\u0000, which the store cannot hold"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError(
            "body is not acceptable JSON: a string contains an unpaired UTF-16 surrogate"
        ) from None


def _event_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"{what} is missing or not a string")
    if len(value) > MAX_EVENT_ID_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise PayloadError(f"{what} must be at most {MAX_EVENT_ID_CHARS} printable characters")
    return value


def _digest_id(*parts: bytes) -> str:
    return "sha256:" + hashlib.sha256(b"\n".join(parts)).hexdigest()


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# -- Azure Event Grid ---------------------------------------------------------------------------


def _read_azure(delivery: Delivery) -> Handshake | list[InboxEvent]:
    events = parse_json(delivery.body, delivery.max_bytes)
    if not isinstance(events, list):
        raise PayloadError("an Event Grid delivery is a JSON array of events")
    if not events:
        raise PayloadError("the Event Grid delivery has no events")
    if delivery.headers.get("aeg-event-type") == AZURE_VALIDATION:
        first = events[0] if isinstance(events[0], dict) else {}
        data = first.get("data")
        code = data.get("validationCode") if isinstance(data, dict) else None
        if not isinstance(code, str) or not code:
            raise PayloadError("SubscriptionValidation event has no data.validationCode")
        return Handshake(
            kind="event_grid_validation",
            response={"validationResponse": code},
            metadata={"event_id": _text(first.get("id")), "topic": _text(first.get("topic"))},
        )
    inbox: list[InboxEvent] = []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise PayloadError(f"event {index} is a {type(event).__name__}, not an object")
        event_id = _event_id(event.get("id"), f"event {index}: `id`")
        event_type = _text(event.get("eventType"))
        if event_type is None:
            raise PayloadError(f"event {index} ({event_id}): `eventType` is missing")
        inbox.append(InboxEvent(event_id, event_type, _azure_device(event), event))
    return inbox


def _azure_device(event: dict[str, Any]) -> str | None:
    data = event.get("data")
    if isinstance(data, dict) and _text(data.get("deviceId")):
        return data["deviceId"]
    subject = _text(event.get("subject")) or ""
    if subject.startswith("devices/"):  # "devices/{deviceId}" (modules: ".../modules/{m}")
        return subject.split("/")[1] or None
    return None


# -- Golioth pipeline webhook -------------------------------------------------------------------


def _read_golioth(delivery: Delivery) -> list[InboxEvent]:
    payload = parse_json(delivery.body, delivery.max_bytes)
    headers = delivery.headers
    source = _text(headers.get("ce-source"))
    if delivery.signed_id is not None:
        event_id = _event_id(delivery.signed_id, "webhook-id")
    elif headers.get("ce-id"):
        event_id = _event_id(headers["ce-id"], "Ce-Id header")
    else:
        event_id = _digest_id((source or "").encode("latin-1", "replace"), delivery.body)
    if source is None and isinstance(payload, dict):  # inject-metadata wraps {data, device_id, ...}
        source = _text(payload.get("device_id"))
    event_type = _text(headers.get("ce-type")) or "io.golioth.data.v1"
    return [InboxEvent(event_id, event_type, source, payload)]


# -- AWS IoT rule HTTPS action ------------------------------------------------------------------


def _read_aws(delivery: Delivery) -> Handshake | list[InboxEvent]:
    payload = parse_json(delivery.body, delivery.max_bytes)
    if is_unauthenticated_handshake("aws_iot", delivery.headers):
        return _aws_confirmation(payload)
    if delivery.signed_id is not None:
        event_id = _event_id(delivery.signed_id, "webhook-id")
    elif isinstance(payload, dict) and payload.get("eventId") is not None:
        # a registry event's own id: AWS publishes at least once, and a redelivery keeps it
        event_id = _event_id(payload["eventId"], "body `eventId`")
    elif isinstance(payload, dict) and payload.get("id") is not None:
        event_id = _event_id(payload["id"], "body `id`")
    else:
        event_id = _digest_id(delivery.body)
    device = None
    event_type = "aws.iot.rule"
    if isinstance(payload, dict):
        device = _text(payload.get("thingName")) or _text(payload.get("clientId"))
        event_type = _text(payload.get("eventType")) or event_type
    return [InboxEvent(event_id, event_type, device, payload)]


def _aws_confirmation(payload: Any) -> Handshake:
    if not isinstance(payload, dict) or payload.get("messageType") != AWS_CONFIRMATION:
        raise PayloadError("a DestinationConfirmation body has messageType DestinationConfirmation")
    missing = [k for k in ("arn", "confirmationToken", "enableUrl") if not _text(payload.get(k))]
    if missing:
        raise PayloadError(f"DestinationConfirmation body lacks {', '.join(missing)}")
    token_digest = hashlib.sha256(payload["confirmationToken"].encode()).hexdigest()
    event = InboxEvent(f"confirmation:{token_digest}", AWS_CONFIRMATION, None, payload)
    return Handshake(
        kind="aws_destination_confirmation",
        response={"status": "recorded", "confirm": "an operator must open the enableUrl"},
        event=event,
        # enableUrl is what the operator needs; the token itself stays out of the activity log
        metadata={"arn": payload["arn"], "enableUrl": payload["enableUrl"]},
    )


_READERS: dict[str, Callable[[Delivery], Handshake | list[InboxEvent]]] = {
    "azure_iot": _read_azure,
    "golioth": _read_golioth,
    "aws_iot": _read_aws,
}
