"""Provider records → store rows, with the content hash that lets unchanged rows be skipped."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sync_pipelines.providers.contract import DeviceRecord, DeviceState
from sync_pipelines.store.database import dump_json


def _digest(content: Any) -> str:
    return hashlib.blake2b(
        json.dumps(content, sort_keys=True, separators=(",", ":"), default=str).encode(), digest_size=16
    ).hexdigest()


def device_row(
    device: DeviceRecord, *, organization_id: str, integration_id: str, run_id: str | None,
    request_id: str | None, now: datetime,
) -> dict[str, Any]:
    content = {
        "name": device.name,
        "hardware_ids": list(device.hardware_ids),
        "tags": list(device.tags),
        "status": device.status,
        "enabled": device.enabled,
        "attributes": device.attributes,
        "provider_created_at": device.provider_created_at,
        "provider_updated_at": device.provider_updated_at,
        "last_seen_at": device.last_seen_at,
    }
    return {
        "organization_id": organization_id,
        "integration_id": integration_id,
        "external_id": device.external_id,
        "name": device.name,
        "hardware_ids": dump_json(content["hardware_ids"]),
        "tags": dump_json(content["tags"]),
        "status": device.status,
        "enabled": device.enabled,
        "attributes": dump_json(device.attributes),
        "provider_created_at": device.provider_created_at,
        "provider_updated_at": device.provider_updated_at,
        "last_seen_at": device.last_seen_at,
        "content_hash": _digest(content),
        "last_run_id": run_id,
        "last_request_id": request_id,
        "created_at": now,
        "updated_at": now,
    }


def state_row(
    state: DeviceState, *, organization_id: str, integration_id: str, run_id: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "organization_id": organization_id,
        "integration_id": integration_id,
        "external_id": state.external_id,
        "reported": dump_json(state.reported),
        "desired": dump_json(state.desired),
        "version": state.version,
        "observed_at": state.observed_at,
        # observed_at changes every read; only the documents and version say "changed"
        "content_hash": _digest([state.reported, state.desired, state.version]),
        "last_run_id": run_id,
        "last_request_id": state.request_id,
        "updated_at": now,
    }
