"""One integration's work inside one run: who is acting, the recorder, the provider.

Everything a sync does happens inside `integration_session(...)`: it resolves the
integration (establishing its organization), binds the log context, and gives the caller an
activity recorder backed by the store. Configuration errors surface inside the caller's
operation, so they are recorded like any other failure. With tracing on, the session is a span
in its run's trace (observability/otel.py); a failure escaping it is reported to Sentry with
who was acting (observability/sentry.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sync_pipelines.errors import ConfigError
from sync_pipelines.observability import otel, sentry
from sync_pipelines.observability.activity import (
    ActivityRecorder,
    ActivityScope,
    ActivitySink,
    NullSink,
)
from sync_pipelines.observability.logging import (
    bound_context,
    get_logger,
    mark_logged,
    was_logged,
)
from sync_pipelines.providers.contract import Provider
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import Integration, find_integration_owner
from sync_pipelines.store.migrations import ensure_migrated
from sync_pipelines.sync.activity_sink import StoreActivitySink
from sync_pipelines.sync.integration_config import (
    account_pacing,
    integration_settings,
    open_provider,
    resolve_config,
)


@dataclass(frozen=True, slots=True)
class RunContext:
    """Where the work is running (Dagster run and step, or a CLI invocation)."""

    run_id: str | None = None
    step_key: str | None = None
    job_name: str | None = None


@dataclass(slots=True)
class IntegrationSession:
    store: Store
    integration: Integration
    recorder: ActivityRecorder
    run: RunContext

    def open_provider(self) -> Provider:
        """Validate config, resolve secrets, build the provider (raises ConfigError)."""
        timeout_s = integration_settings(self.integration).request_timeout_s
        return open_provider(
            resolve_config(self.integration),
            self.recorder,
            timeout_s=timeout_s,
            pacing=account_pacing(self.store, self.integration),
        )


#: `off` keeps the activity log's rows out of the store (benchmarks: what does the log cost?)
ACTIVITY_LOG_ENV = "SYNC_ACTIVITY_LOG"


def _activity_sink(store: Store) -> ActivitySink:
    off = os.environ.get(ACTIVITY_LOG_ENV, "on").strip().lower() in ("off", "0", "false", "no")
    return NullSink() if off else StoreActivitySink(store)


@contextmanager
def integration_session(
    store: Store, integration_id: str, run: RunContext
) -> Iterator[IntegrationSession]:
    ensure_migrated(store)
    with store.connect() as conn:
        integration = find_integration_owner(conn, integration_id)
    if integration is None:
        raise ConfigError(
            integration_id,
            "no such integration (was it deleted? run `sync-pipelines integrations list`)",
        )
    # everything from here on is this organization's work (row-level security, sql/026)
    store = store.scoped(integration.organization_id)
    with bound_context(
        run_id=run.run_id,
        job=run.job_name,
        step=run.step_key,
        organization_id=integration.organization_id,
        integration_id=integration.integration_id,
        provider=integration.provider,
    ):
        recorder = ActivityRecorder(
            _activity_sink(store),
            ActivityScope(
                organization_id=integration.organization_id,
                integration_id=integration.integration_id,
                run_id=run.run_id,
                step_key=run.step_key,
                job_name=run.job_name,
            ),
        )
        with otel.run_span(
            run.run_id,
            f"{run.step_key or 'work'} {integration.integration_id}",
            {
                "sync_pipelines.job": run.job_name,
                "sync_pipelines.step": run.step_key,
                "sync_pipelines.organization_id": integration.organization_id,
                "sync_pipelines.integration_id": integration.integration_id,
                "sync_pipelines.provider": integration.provider,
            },
        ):
            try:
                yield IntegrationSession(store, integration, recorder, run)
            except Exception as exc:
                if not was_logged(exc):  # a sync's failure has its line already (SyncRun)
                    get_logger("sync").error("integration_work_failed", exc_info=exc)
                    mark_logged(exc)
                sentry.capture_failure(
                    exc,
                    provider=integration.provider,
                    integration_id=integration.integration_id,
                    organization_id=integration.organization_id,
                    run_id=run.run_id,
                    job=run.job_name,
                    step=run.step_key,
                )
                raise
            finally:
                recorder.flush()
