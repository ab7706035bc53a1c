"""Loss the provider saw around a drain (`TelemetryLoss`: messages its broker reports dropped, a
persistent session it no longer had), made visible the way the rest of a sync is:

- the watermark the provider left (for MQTT, the broker's dropped counter and the client id of
  the session) becomes the telemetry stream's cursor, committed only once the drain has ended,
  so the next drain compares against what this one saw;
- each loss is a failed `telemetry_gap` activity row (error type `broker_dropped` or
  `session_lost`), a warning line, a figure on the sync's operation row, and the sync ends
  `partial` with the loss as its sync-log error (`SyncRun.report_loss`);
- after the sync has closed, the loss raises the `telemetry_loss` alert through the product's
  incident path, and a drain without loss resolves it. An alert channel that fails never fails
  the sync: the loss is recorded either way.
"""

from __future__ import annotations

from typing import Any

from sync_pipelines.clock import utc_now
from sync_pipelines.observability.activity import TELEMETRY_GAP
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.providers.contract import JsonDict, TelemetryLoss
from sync_pipelines.store.sync_state import set_cursor
from sync_pipelines.sync.results import SyncResult
from sync_pipelines.sync.session import IntegrationSession
from sync_pipelines.sync.sync_run import SyncRun

_log = get_logger("sync.telemetry")


def previous_watermark(run: SyncRun) -> JsonDict | None:
    """What the previous drain left (None before the first drain)."""
    return run.cursor_before if isinstance(run.cursor_before, dict) else None


def record_loss(
    session: IntegrationSession, run: SyncRun, stream: str, loss: TelemetryLoss
) -> None:
    """Inside the sync, after the last batch: store the watermark, record and report the loss."""
    integ = session.integration
    if loss.watermark is not None and loss.watermark != run.cursor_before:
        run.cursor_after = loss.watermark
        with session.store.transaction() as conn:
            run.fence(conn)
            set_cursor(
                conn,
                integ.organization_id,
                integ.integration_id,
                stream,
                loss.watermark,
                session.run.run_id,
            )
    run.annotate(broker_dropped=loss.dropped, session_lost=loss.session_lost)
    if not loss.lost:
        return
    for error_type, message in loss.reasons:
        row = session.recorder.new_row(
            TELEMETRY_GAP,
            status="failed",
            error_type=error_type,
            error_message=message,
            metadata={"dropped": loss.dropped, "session_lost": loss.session_lost},
        )
        row.completed_at = row.created_at
        session.recorder.record(row)
        _log.warning(
            "telemetry_lost",
            error_type=error_type,
            message=message,
            dropped=loss.dropped,
            session_lost=loss.session_lost,
        )
    run.report_loss(loss.reasons[0][0], "; ".join(message for _, message in loss.reasons))


def alert_on_loss(session: IntegrationSession, result: SyncResult, loss: TelemetryLoss) -> None:
    """After the sync has closed: raise the loss, or resolve an earlier one."""
    from sync_pipelines.alerts.incidents import clear_alert, raise_alert
    from sync_pipelines.alerts.settings import AlertSettings
    from sync_pipelines.alerts.telemetry_loss import telemetry_loss_condition, telemetry_loss_key

    integ = session.integration
    try:
        settings: Any = AlertSettings.from_env()
        if loss.lost:
            raise_alert(
                session.store,
                telemetry_loss_condition(
                    organization_id=integ.organization_id,
                    integration_id=integ.integration_id,
                    run_id=session.run.run_id,
                    sync_id=result.sync_id,
                    dropped=loss.dropped,
                    session_lost=loss.session_lost,
                    reasons=[message for _, message in loss.reasons],
                ),
                settings,
                now=utc_now(),
            )
        else:
            clear_alert(
                session.store,
                integ.organization_id,
                telemetry_loss_key(integ.integration_id),
                settings,
                now=utc_now(),
                reason="a later drain found no telemetry lost",
            )
    except Exception:  # the loss is in the sync log and the activity log all the same
        _log.error("telemetry_loss_alert_failed", exc_info=True)
