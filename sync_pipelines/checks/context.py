"""What every check of one integration reads, gathered once per evaluation: the store connection,
the integration, its thresholds, "now", and the figures several checks share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from sqlalchemy.engine import Connection

from sync_pipelines.monitoring.integration_stats import (
    CallWindow,
    SyncHistory,
    call_window,
    dead_letter_depth,
    sync_history,
)
from sync_pipelines.monitoring.thresholds import Thresholds
from sync_pipelines.store.integrations import Integration


@dataclass
class CheckContext:
    conn: Connection
    integration: Integration
    now: datetime
    thresholds: Thresholds

    @classmethod
    def of(cls, conn: Connection, integration: Integration, *, now: datetime) -> CheckContext:
        """A ValueError names the integration when its `monitoring` setting is unusable."""
        try:
            thresholds = Thresholds.from_settings(integration.settings)
        except ValueError as exc:
            raise ValueError(
                f"integration {integration.integration_id!r}: {exc}; fix its `monitoring` setting"
            ) from exc
        return cls(conn, integration, now, thresholds)

    @property
    def organization_id(self) -> str:
        return self.integration.organization_id

    @property
    def integration_id(self) -> str:
        return self.integration.integration_id

    @cached_property
    def window(self) -> CallWindow:
        """Provider calls over the last `window_s`: the error-rate and latency checks share it."""
        start = self.now - timedelta(seconds=self.thresholds.window_s)
        return call_window(self.conn, self.organization_id, self.integration_id, start, self.now)

    @cached_property
    def history(self) -> SyncHistory:
        return sync_history(
            self.conn,
            self.organization_id,
            self.integration_id,
            now=self.now,
            stale_running_s=self.thresholds.stale_running_s,
        )

    @cached_property
    def dead_letters(self) -> int:
        """Open (pending + retrying) dead letters."""
        return dead_letter_depth(self.conn, self.organization_id, self.integration_id)
