"""When an integration's checks must be evaluated outside a sync run.

In a sync run the checks follow the devices step, so a sync that fails never reaches them, a
stream that ends after them (states, telemetry) is judged only at the next sync, and an
integration that stops syncing is never judged at all: exactly the failure streak and staleness
the checks exist to catch. This says which integrations need an evaluation now, for the sensor
that evaluates them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Connection

from sync_pipelines.monitoring.thresholds import Thresholds
from sync_pipelines.store.check_results import latest_check_at
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.sync_state import PARTIAL, finished_syncs, is_failed_sync

SYNC_FAILED = "a sync failed after the last check"
SYNC_PARTIAL = "a sync ended partial after the last check"
NOT_CHECKED_WITHIN_SLA = "no check within the freshness SLA"
#: recent finished syncs looked at for a failure newer than the last check
_RECENT_SYNCS = 10


def _newest_at(
    conn: Connection, integration: Integration, judged: Callable[[str], bool]
) -> datetime | None:
    rows = finished_syncs(
        conn, integration.organization_id, integration.integration_id, limit=_RECENT_SYNCS
    )
    return max((done for status, done in rows if judged(status) and done), default=None)


def check_due_reason(conn: Connection, integration: Integration, *, now: datetime) -> str | None:
    """Why the integration's checks are due now, or None. A ValueError names a bad `monitoring`
    setting."""
    last_check = latest_check_at(conn, integration.organization_id, integration.integration_id)
    failure = _newest_at(conn, integration, is_failed_sync)
    if failure is not None and (last_check is None or failure > last_check):
        return SYNC_FAILED
    # a stream that ends after the run's checks (states, telemetry) ended partial: its WARN
    # belongs on the partition now, not at the next sync
    partial = _newest_at(conn, integration, lambda status: status == PARTIAL)
    if partial is not None and (last_check is None or partial > last_check):
        return SYNC_PARTIAL
    sla = Thresholds.from_settings(integration.settings).freshness_sla_for(
        integration.poll_interval_s
    )
    since = last_check or integration.created_at or now
    if (now - since).total_seconds() > sla:
        return NOT_CHECKED_WITHIN_SLA
    return None
