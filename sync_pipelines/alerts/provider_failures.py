"""Provider-side failures in a call window: the calls `call_window` counts as failed whose cause
was the provider or the way to it, by the activity rows' error taxonomy (errors.py): HTTP 5xx,
429, and `transient` / `rate_limited` errors without a status (timeouts, refused or dropped
connections; AWS's throttling answers 400 with error type `rate_limited`). Auth, validation and
permanent failures are ours or the configuration's, not the provider's."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.errors import RATE_LIMITED, TRANSIENT
from sync_pipelines.monitoring.integration_stats import ERROR_STATUSES
from sync_pipelines.observability.activity import PROVIDER_CALLS

PROVIDER_SIDE_ERROR_TYPES = (TRANSIENT, RATE_LIMITED)


def provider_failed_calls(
    conn: Connection, organization_id: str, integration_id: str, start: datetime, end: datetime
) -> int:
    types = ", ".join(f"'{t}'" for t in sorted(PROVIDER_CALLS))
    statuses = ", ".join(f"'{s}'" for s in ERROR_STATUSES)
    error_types = ", ".join(f"'{t}'" for t in PROVIDER_SIDE_ERROR_TYPES)
    return int(
        conn.execute(
            sa.text(
                "SELECT count(*) FROM integration_activity_log WHERE organization_id = :o "
                "AND integration_id = :i AND created_at >= :start AND created_at < :end "
                f"AND activity_type IN ({types}) AND status IN ({statuses}) "
                f"AND (status_code >= 500 OR status_code = 429 OR error_type IN ({error_types}))"
            ),
            {"o": organization_id, "i": integration_id, "start": start, "end": end},
        ).scalar()
        or 0
    )
