"""The console's page of one device: what the store holds of it (name, active or deleted, last
synced, last error, open dead letters, attributes and state) and its history — every change a
sync, a webhook event, a replay or a deletion made to it (store/device_changes.py), newest
first, one keyset page at a time, each with its fields old → new, its source and its run.

A scoped operator reads through a row-level-security transaction and finds the integration
first within their organization, so another organization's device is not found (404)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.console.filters import FilterError
from sync_pipelines.console.integration_page import IntegrationNotFound, find_visible_integration
from sync_pipelines.console.trace import dagster_run_url
from sync_pipelines.observability.redaction import redact
from sync_pipelines.store.database import parse_timestamp
from sync_pipelines.store.device_changes import (
    DeviceChange,
    device_changes_page,
    device_letters,
)
from sync_pipelines.store.devices import get_device, get_device_state
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.sync_state import last_good_sync_at

HISTORY_CSV_COLUMNS = (
    "at",
    "kind",
    "field",
    "old",
    "new",
    "reason",
    "source",
    "run_id",
    "request_id",
)
#: the longest device id the page looks up (ids are the provider's; none comes near)
MAX_DEVICE_ID = 512


class DeviceNotFound(IntegrationNotFound):
    """No such device in an integration the operator may see (another organization's device is
    not found, whatever the URL says). A 404, like an integration not found."""


@dataclass(frozen=True, slots=True)
class ChangeCursor:
    """Where the next history page starts: after the change (at, id), newest first."""

    at: datetime
    id: int

    def encode(self) -> str:
        raw = f"{self.at.astimezone(UTC).isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str | None) -> ChangeCursor | None:
        if not value:
            return None
        wrong = FilterError("the page cursor `after` is not one this console wrote")
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            at, row_id = raw.split("|", 1)
            parsed = datetime.fromisoformat(at)
            number = int(row_id)
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise wrong from exc
        if parsed.tzinfo is None or number < 0:
            raise wrong
        return cls(parsed, number)


@dataclass(frozen=True, slots=True)
class HistoryPage:
    changes: list[DeviceChange]
    next_cursor: ChangeCursor | None


def check_device_id(device_id: str) -> str:
    if not device_id or len(device_id) > MAX_DEVICE_ID:
        raise FilterError(f"device_id must be 1 to {MAX_DEVICE_ID} characters")
    return device_id


def find_visible_device(
    conn: Connection, integration_id: str, device_id: str, organization_id: str | None
) -> tuple[Integration, dict[str, Any]]:
    """The integration (within the operator's organization) and its device row."""
    integration = find_visible_integration(conn, integration_id, organization_id)
    org, integ = integration.organization_id, integration.integration_id
    device = get_device(conn, org, integ, device_id)
    if device is None:
        # a record refused at first sight is never stored, but its rejection is its history
        if not device_changes_page(conn, org, integ, device_id, limit=1):
            raise DeviceNotFound(f"no device {device_id!r} in integration {integration_id!r}")
        device = {"external_id": device_id, "never_stored": True}
    return integration, device


def device_history(
    conn: Connection,
    integration: Integration,
    device_id: str,
    *,
    after: ChangeCursor | None,
    limit: int,
) -> HistoryPage:
    found = device_changes_page(
        conn,
        integration.organization_id,
        integration.integration_id,
        device_id,
        after=None if after is None else (after.at, after.id),
        limit=limit + 1,
    )
    more = len(found) > limit
    found = found[:limit]
    cursor = ChangeCursor(found[-1].at, found[-1].id) if more and found else None
    return HistoryPage(found, cursor)


def iter_history(
    conn: Connection, integration: Integration, device_id: str, *, max_rows: int, page_size: int
) -> Iterator[DeviceChange]:
    """The device's changes newest first, up to `max_rows` (the CSV export)."""
    after, sent = None, 0
    while sent < max_rows:
        page = device_history(
            conn, integration, device_id, after=after, limit=min(page_size, max_rows - sent)
        )
        yield from page.changes
        sent += len(page.changes)
        if page.next_cursor is None:
            return
        after = page.next_cursor


def device_summary(
    conn: Connection, integration: Integration, device: Mapping[str, Any]
) -> dict[str, Any]:
    """What the page shows above the history; redacted."""
    org, integ, device_id = (
        integration.organization_id,
        integration.integration_id,
        device["external_id"],
    )
    letters = device_letters(conn, org, integ, device_id)
    state = get_device_state(conn, org, integ, device_id)
    deleted = device.get("deleted_at") is not None
    stored = not device.get("never_stored")
    return redact(
        {
            "organization_id": org,
            "integration_id": integ,
            "provider": integration.provider,
            "device_id": device_id,
            "name": device.get("name"),
            # never stored: every record of it so far was refused (its history says why)
            "status": "deleted" if deleted else "active" if stored else "never stored",
            "provider_status": device.get("status"),
            "enabled": None if device.get("enabled") is None else bool(device["enabled"]),
            "deleted_at": _iso(device.get("deleted_at")),
            # an active device is listed by every complete sync, changed or not
            "last_synced_at": _iso(last_good_sync_at(conn, org, integ))
            if stored and not deleted
            else None,
            "last_changed_at": _iso(device.get("updated_at")),
            "last_seen_at": _iso(device.get("last_seen_at")),
            "created_at": _iso(device.get("created_at")),
            "last_run_id": device.get("last_run_id"),
            "last_error": letters.last_error,
            "last_failed_at": _iso(letters.last_failed_at),
            "last_error_status": letters.last_error_status,
            "open_dead_letters": letters.open,
            "quarantined_dead_letters": letters.quarantined,
            "tags": _json_value(device.get("tags")),
            "hardware_ids": _json_value(device.get("hardware_ids")),
            "attributes": _json_value(device.get("attributes")),
            "state": None
            if state is None
            else {
                "reported": _json_value(state["reported"]),
                "desired": _json_value(state["desired"]),
                "version": state["version"],
                "observed_at": _iso(state["observed_at"]),
            },
        }
    )


def change_json(change: DeviceChange, environ: Mapping[str, str] | None) -> dict[str, Any]:
    fields = (
        []
        if change.kind == "rejected"
        else [
            {"field": field, "old": pair[0], "new": pair[1]}
            for field, pair in sorted(change.changes.items())
            # a created device's empty fields (no status yet) say nothing
            if isinstance(pair, list) and len(pair) == 2 and pair[0] != pair[1]
        ]
    )
    return redact(
        {
            "id": change.id,
            "at": change.at.isoformat(),
            "kind": change.kind,
            "fields": fields,
            "reason": change.reason,
            "dead_letter_id": change.changes.get("dead_letter_id")
            if change.kind == "rejected"
            else None,
            "source": change.source,
            "run_id": change.run_id,
            "run_url": dagster_run_url(change.run_id, environ),
            "request_id": change.request_id,
        }
    )


def csv_rows(change: dict[str, Any]) -> list[dict[str, Any]]:
    """One CSV row per changed field (one for a change with none, such as a rejection)."""
    base = {k: change[k] for k in ("at", "kind", "reason", "source", "run_id", "request_id")}
    if not change["fields"]:
        return [{**base, "field": "", "old": "", "new": ""}]
    return [
        {**base, "field": f["field"], "old": _cell(f["old"]), "new": _cell(f["new"])}
        for f in change["fields"]
    ]


def _cell(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else json.dumps(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _iso(value: Any) -> str | None:
    parsed = parse_timestamp(value)
    return parsed.isoformat() if parsed else None
