"""One provider-call activity row as the HTTP recorder writes it, for tests that seed the
activity log directly (monitoring, checks, alerts, reports)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any


def provider_call_row(
    organization_id: str,
    integration_id: str,
    at: datetime,
    *,
    status: str = "success",
    status_code: int | None = None,
    error_type: str | None = "transient",
    error_message: str | None = None,
    ms: float | None = 50.0,
    activity_type: str = "http_request",
    run_id: str = "run-seeded",
    **overrides: Any,
) -> dict[str, Any]:
    """A call attempt at `at`; any other status than success is an error (503, `error_type`
    unless given) — override any column by name."""
    ok = status == "success"
    row = {
        "id": str(uuid.uuid4()),
        "organization_id": organization_id,
        "integration_id": integration_id,
        "run_id": run_id,
        "step_key": "seed",
        "request_id": str(uuid.uuid4()),
        "parent_id": None,
        "direction": "outgoing",
        "activity_type": activity_type,
        "method": "GET",
        "endpoint": "/v1/projects/p/devices",
        "status_code": status_code if status_code is not None else (200 if ok else 503),
        "status": status,
        "attempt": 1,
        "response_time_ms": ms,
        "error_type": None if ok else error_type,
        "error_message": None if ok else error_message,
        "error_stack": None,
        "request_headers": None,
        "metadata": None,
        "created_at": at,
        "completed_at": at,
    }
    row.update(overrides)
    return row
