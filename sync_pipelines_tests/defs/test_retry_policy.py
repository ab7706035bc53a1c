"""Step-level retries in Dagster (defs/retry.py), materialized in-process against the real
Golioth emulator: a step that fails with a transient error after the HTTP retries is run
again by Dagster and completes; an auth failure fails the step at once, never retried."""

import dagster as dg
import pytest

from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.retry import SYNC_RETRY_POLICY, fail_fast_unless_retryable
from sync_pipelines.defs.run_context import run_context_of
from sync_pipelines.errors import ConfigError, TransientError
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.devices import count_devices
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.sync.session import integration_session

#: SYNC_RETRY_POLICY with a delay short enough for a test
FAST_STEP_RETRIES = dg.RetryPolicy(
    max_retries=SYNC_RETRY_POLICY.max_retries,
    delay=0.05,
    backoff=SYNC_RETRY_POLICY.backoff,
    jitter=SYNC_RETRY_POLICY.jitter,
)
#: HTTP-level retries: two quick attempts per call
HTTP_RETRIES = {"retry_max_attempts": 2, "retry_base_backoff_s": 0.01, "retry_jitter_s": 0}


class DevicesConfig(dg.Config):
    integration_id: str


@dg.asset(retry_policy=FAST_STEP_RETRIES)
def retried_devices(
    context: dg.AssetExecutionContext, config: DevicesConfig, store: SyncStoreResource
) -> dg.MaterializeResult:
    """What a provider devices asset does, wrapped the way defs/retry.py asks."""
    with (
        fail_fast_unless_retryable(),
        integration_session(
            store.get_store(), config.integration_id, run_context_of(context)
        ) as session,
    ):
        result = sync_devices(session)
    return dg.MaterializeResult(metadata=result.metadata())


def _materialize(store, instance, integration_id):
    return dg.materialize(
        [retried_devices],
        instance=instance,
        resources={"store": SyncStoreResource(database_url=store.url)},
        run_config=dg.RunConfig({"retried_devices": DevicesConfig(integration_id=integration_id)}),
        raise_on_error=False,
    )


def _event_types(result):
    return [e.event_type for e in result.all_events]


def test_the_sync_policy_backs_off_exponentially_with_jitter():
    assert (SYNC_RETRY_POLICY.max_retries, SYNC_RETRY_POLICY.backoff, SYNC_RETRY_POLICY.jitter) == (
        3,
        dg.Backoff.EXPONENTIAL,
        dg.Jitter.PLUS_MINUS,
    )
    delays = [[SYNC_RETRY_POLICY.calculate_delay(n) for _ in range(30)] for n in (1, 2, 3)]
    for n, (low, high) in enumerate([(0, 20), (20, 40), (60, 80)]):
        assert all(low <= d <= high for d in delays[n]) and len(set(delays[n])) > 1


def test_a_transient_step_failure_is_retried_by_dagster_and_completes(
    sqlite_store, instance, golioth_factory, register_golioth
):
    running = golioth_factory(device_count=30)
    integration = register_golioth(sqlite_store, running, per_page=10, **HTTP_RETRIES)
    # both HTTP attempts of the first page fail: the step fails, Dagster runs it again
    running.emulator.add_faults(
        {"kind": "server_error", "status": 503, "path": "/devices$", "times": 2}
    )
    result = _materialize(sqlite_store, instance, integration.integration_id)
    assert result.success
    events = _event_types(result)
    assert events.count(dg.DagsterEventType.STEP_UP_FOR_RETRY) == 1
    assert events.count(dg.DagsterEventType.STEP_RESTARTED) == 1
    with sqlite_store.connect() as conn:
        assert count_devices(conn, integration.organization_id, integration.integration_id) == 30
        imports = activity_rows(
            conn, integration.organization_id, run_id=result.run_id, activity_type="import"
        )
    assert [r["status"] for r in imports] == ["failed", "success"]
    assert imports[0]["error_type"] == "TransientError"


def test_an_auth_failure_fails_the_step_at_once_without_retries(
    sqlite_store, instance, golioth_factory, register_golioth
):
    running = golioth_factory(device_count=5)
    integration = register_golioth(sqlite_store, running, **HTTP_RETRIES)
    running.emulator.add_faults({"kind": "auth_failure"})
    result = _materialize(sqlite_store, instance, integration.integration_id)
    assert not result.success
    events = _event_types(result)
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in events
    assert events.count(dg.DagsterEventType.STEP_FAILURE) == 1
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "auth error, not retried" in failure.step_failure_data.error.message
    assert failure.step_failure_data.user_failure_data.metadata["error_category"].value == "auth"
    assert len(running.emulator.requests()) == 1  # neither the client nor Dagster tried again


@pytest.mark.parametrize("retryable", [True, False])
def test_only_non_retryable_taxonomy_errors_are_turned_into_final_failures(retryable):
    error = (
        TransientError("503", provider="p")
        if retryable
        else ConfigError("i", "no such integration")
    )
    # a retryable error is left as it is; the other becomes a final dg.Failure
    with (
        pytest.raises(RuntimeError if retryable else dg.Failure) as raised,
        fail_fast_unless_retryable(),
    ):
        try:
            raise error
        except Exception as exc:
            raise RuntimeError("wrapped by a caller") from exc
    if not retryable:
        assert raised.value.allow_retries is False and "config error" in raised.value.description
