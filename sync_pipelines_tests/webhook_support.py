"""What the webhook tests share: integrations with webhook secrets, signed deliveries, sender
payloads in each provider's shape, and inbox rows written straight through the store."""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
import uuid
from datetime import datetime
from typing import Any

import pytest

from sync_pipelines.clock import utc_now
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.webhook_events import WebhookEvent, insert_event
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines.webhooks.verification import (
    SHARED_SECRET,
    STANDARD_WEBHOOKS,
    standard_webhook_headers,
)

_BASE_SETTINGS: dict[str, dict[str, Any]] = {
    "golioth": {"base_url": "http://127.0.0.1:9", "project_id": "p"},
    "aws_iot": {"region": "us-east-1"},
    "azure_iot": {},
}


def new_signing_secret() -> str:
    """A Standard Webhooks secret: whsec_ + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def new_shared_secret() -> str:
    return secrets.token_urlsafe(32)


def secret_env(integration_id: str) -> str:
    return "TEST_WEBHOOK_SECRET_" + integration_id.upper().replace("-", "_")


def register_webhook_integration(
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    *,
    provider: str,
    integration_id: str,
    organization_id: str = "org-a",
    scheme: str | None = None,
    secret: str | None = None,
    enabled: bool = True,
    **settings: Any,
) -> tuple[Integration, str]:
    """Register an integration whose webhook secret is in the environment; returns it and the secret."""
    scheme = scheme or SHARED_SECRET
    secret = secret or (
        new_signing_secret() if scheme == STANDARD_WEBHOOKS else new_shared_secret()
    )
    monkeypatch.setenv(secret_env(integration_id), secret)
    integration = Integration(
        integration_id=integration_id,
        organization_id=organization_id,
        provider=provider,
        name=integration_id,
        settings={**_BASE_SETTINGS[provider], "webhook_auth": scheme, **settings},
        secret_refs={"webhook_secret": secret_env(integration_id)},
        enabled=enabled,
    )
    register_integration(store, integration)
    return integration, secret


def signed(
    secret: str,
    payload: Any,
    *,
    msg_id: str | None = None,
    timestamp: int | None = None,
    **headers: str,
) -> tuple[bytes, dict[str, str]]:
    """A Standard Webhooks delivery: (body bytes, headers). `payload` may be bytes already."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    sent = standard_webhook_headers(
        secret,
        msg_id or f"msg_{uuid.uuid4().hex}",
        int(time.time()) if timestamp is None else timestamp,
        body,
    )
    sent.update({k.replace("_", "-"): v for k, v in headers.items()})
    return body, sent


def azure_event(
    event_type: str,
    device_id: str,
    data: dict[str, Any] | None = None,
    *,
    event_id: str | None = None,
    event_time: str = "2026-01-02T03:04:05.1234567Z",
) -> dict[str, Any]:
    """One Event Grid event as IoT Hub publishes it."""
    return {
        "id": event_id or str(uuid.uuid4()),
        "topic": "/SUBSCRIPTIONS/x/resourceGroups/rg/providers/Microsoft.Devices/IotHubs/hub",
        "subject": f"devices/{device_id}",
        "eventType": f"Microsoft.Devices.{event_type}",
        "eventTime": event_time,
        "data": {"deviceId": device_id, "hubName": "hub", **(data or {})},
        "dataVersion": "",
        "metadataVersion": "1",
    }


def insert_pending(
    store: Store,
    integration: Integration,
    *,
    event_type: str,
    payload: Any,
    external_id: str | None = None,
    event_id: str | None = None,
    received_at: datetime | None = None,
    headers: dict[str, str] | None = None,
) -> WebhookEvent:
    """An inbox row as the receiver would have stored it."""
    event = WebhookEvent(
        id=str(uuid.uuid4()),
        organization_id=integration.organization_id,
        integration_id=integration.integration_id,
        provider=integration.provider,
        event_id=event_id or f"evt-{uuid.uuid4().hex}",
        event_type=event_type,
        external_id=external_id,
        payload=payload,
        headers=headers or {},
        delivery_id=str(uuid.uuid4()),
        received_at=received_at or utc_now(),
    )
    with store.transaction() as conn:
        assert insert_event(conn, event)
    return event
