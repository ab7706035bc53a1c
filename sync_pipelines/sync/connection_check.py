"""Test an integration's connection, recorded as a `test_connection` operation."""

from __future__ import annotations

from sync_pipelines.observability.activity import TEST_CONNECTION
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.providers.contract import ConnectionResult
from sync_pipelines.sync.session import IntegrationSession

_log = get_logger("sync.connection")


def check_connection(session: IntegrationSession) -> ConnectionResult:
    """Never raises for a provider-side failure; config errors are recorded, then raised."""
    with session.recorder.operation(TEST_CONNECTION) as op:
        with session.open_provider() as provider:
            result = provider.test_connection()
        op.annotate(
            ok=result.ok, latency_ms=result.latency_ms, reason=result.reason, **result.details
        )
        if not result.ok:
            op.annotate(_status="failed")
    event = "connection_test_succeeded" if result.ok else "connection_test_failed"
    (_log.info if result.ok else _log.warning)(
        event, latency_ms=result.latency_ms, reason=result.reason
    )
    return result
