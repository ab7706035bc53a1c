"""The `test_integration_connection` job: one call to the provider with the integration's
credentials, recorded as a `test_connection` activity row whatever the outcome."""

from __future__ import annotations

import dagster as dg
import pytest

from sync_pipelines.defs.jobs import test_integration_connection as connection_job
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.integrations import Integration, ensure_organization, save_integration
from sync_pipelines_tests.conftest import GOLIOTH_KEY_ENV


@pytest.fixture
def small_golioth(golioth_factory):
    return golioth_factory(device_count=5)


def _run(store, instance, integration_id: str) -> dg.ExecuteInProcessResult:
    return connection_job.execute_in_process(
        run_config={"ops": {"test_connection_op": {"config": {"integration_id": integration_id}}}},
        instance=instance,
        resources={"store": SyncStoreResource(database_url=store.url)},
        raise_on_error=False,
    )


def _connection_row(store, organization_id: str, run_id: str) -> dict:
    with store.connect() as conn:
        (row,) = activity_rows(
            conn, organization_id, run_id=run_id, activity_type="test_connection"
        )
    return row


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The op's error as Dagster reports it, with the product's exception it wraps."""
    error = result.failure_data_for_node("test_connection_op").error
    return "".join(e.message for e in (error, error.cause) if e)


def test_a_good_key_succeeds_and_records_a_successful_test_connection_row(
    store, instance, small_golioth, register_golioth
):
    integ = register_golioth(store, small_golioth)
    result = _run(store, instance, integ.integration_id)
    assert result.success
    row = _connection_row(store, integ.organization_id, result.run_id)
    assert row["status"] == "success"
    assert row["step_key"] == "test_connection_op"
    assert row["integration_id"] == integ.integration_id
    assert row["completed_at"] is not None


def test_the_connection_test_makes_a_recorded_call_to_the_project(
    store, instance, small_golioth, register_golioth
):
    integ = register_golioth(store, small_golioth)
    small_golioth.emulator.clear_requests()
    result = _run(store, instance, integ.integration_id)
    (received,) = [r for r in small_golioth.emulator.requests() if r.path.startswith("/v1/")]
    with store.connect() as conn:
        (call,) = activity_rows(
            conn, integ.organization_id, run_id=result.run_id, activity_type="http_request"
        )
    assert call["request_id"] == received.request_id
    assert call["parent_id"] == _connection_row(store, integ.organization_id, result.run_id)["id"]


def test_a_wrong_key_fails_the_run_and_records_a_failed_row(
    store, instance, small_golioth, register_golioth, monkeypatch
):
    integ = register_golioth(store, small_golioth)
    monkeypatch.setenv(GOLIOTH_KEY_ENV, "not-the-key")
    result = _run(store, instance, integ.integration_id)
    assert not result.success
    assert "authentication failed" in _failure_message(result)
    row = _connection_row(store, integ.organization_id, result.run_id)
    assert row["status"] == "failed"
    assert "not-the-key" not in str(row)


def test_a_missing_secret_fails_the_run_and_records_a_failed_row_naming_the_variable(
    store, instance, small_golioth, register_golioth, monkeypatch
):
    integ = register_golioth(store, small_golioth)
    monkeypatch.delenv(GOLIOTH_KEY_ENV)
    result = _run(store, instance, integ.integration_id)
    assert not result.success
    row = _connection_row(store, integ.organization_id, result.run_id)
    assert row["status"] == "failed"
    assert GOLIOTH_KEY_ENV in row["error_message"]


def test_an_unknown_provider_fails_naming_the_integration_and_is_recorded(store, instance):
    with store.transaction() as conn:
        ensure_organization(conn, "org-a")
        save_integration(
            conn,
            Integration(
                integration_id="mystery-1", organization_id="org-a", provider="nope", name="Mystery"
            ),
        )
    result = _run(store, instance, "mystery-1")
    assert not result.success
    message = _failure_message(result)
    assert "mystery-1" in message and "nope" in message
    row = _connection_row(store, "org-a", result.run_id)
    assert row["status"] == "failed"
    assert row["error_type"] == "ConfigError"
    assert "mystery-1" in row["error_message"] and "unknown provider 'nope'" in row["error_message"]


def test_an_unknown_integration_fails_the_run_saying_so(store, instance):
    result = _run(store, instance, "never-registered")
    assert not result.success
    message = _failure_message(result)
    assert "never-registered" in message and "no such integration" in message
