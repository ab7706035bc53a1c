"""Provider-side failures in a call window: the calls `call_window` counts as failed whose cause
was the provider or the way to it, by the activity rows' error taxonomy (errors.py): HTTP 5xx,
429, and `transient` / `rate_limited` errors without a status (timeouts, refused or dropped
connections; AWS's throttling answers 400 with error type `rate_limited`). Auth, validation and
permanent failures are ours or the configuration's, not the provider's."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from sync_pipelines.errors import RATE_LIMITED, TRANSIENT
from sync_pipelines.store.provider_calls import provider_failed_call_count

PROVIDER_SIDE_ERROR_TYPES = (TRANSIENT, RATE_LIMITED)


def provider_failed_calls(
    conn: Connection, organization_id: str, integration_id: str, start: datetime, end: datetime
) -> int:
    return provider_failed_call_count(
        conn, organization_id, integration_id, start, end, error_types=PROVIDER_SIDE_ERROR_TYPES
    )
