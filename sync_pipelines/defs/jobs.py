"""Jobs that are not asset materializations: testing an integration's connection."""

import dagster as dg

from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.run_context import run_context_of
from sync_pipelines.sync.connection_check import check_connection
from sync_pipelines.sync.session import integration_session


class ConnectionTestConfig(dg.Config):
    integration_id: str


@dg.op(
    description="Call the provider with the integration's credentials and report latency or the reason it failed."
)
def test_connection_op(
    context: dg.OpExecutionContext, config: ConnectionTestConfig, store: SyncStoreResource
) -> None:
    with integration_session(
        store.get_store(), config.integration_id, run_context_of(context)
    ) as session:
        result = check_connection(session)
    metadata = {"ok": result.ok, "latency_ms": result.latency_ms}
    if not result.ok:
        raise dg.Failure(description=f"connection test failed: {result.reason}", metadata=metadata)
    context.log.info(f"connection ok for {config.integration_id} in {result.latency_ms:.0f} ms")


@dg.job(description="Test one integration's connection (config: integration_id).")
def test_integration_connection() -> None:
    test_connection_op()
