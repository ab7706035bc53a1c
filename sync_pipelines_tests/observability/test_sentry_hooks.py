"""Sentry for ops that open no integration session: with the DSN pointing at a loopback sink, a
retention, roll-up or report op that really fails (its store's database does not exist) is one
event tagged with the job, op, step and run and the error taxonomy, scrubbed like every event;
an exception the integration session already reported is not sent twice; without a DSN the hook
sends nothing."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import dagster as dg
import pytest

from sync_pipelines.definitions import defs
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.run_context import run_context_of
from sync_pipelines.defs.sentry_hooks import report_op_failure_to_sentry
from sync_pipelines.errors import AuthError
from sync_pipelines.observability import sentry
from sync_pipelines.observability.redaction import REDACTED
from sync_pipelines.store.database import DATABASE_URL_ENV
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.sync.session import integration_session
from sync_pipelines_tests.conftest import POSTGRES_ADMIN_URL
from sync_pipelines_tests.observability.backend_sinks import BackendSink

#: job -> the op (the asset, for the report) that fails in it
JOBS_WITHOUT_A_SESSION = {
    "purge_expired_rows": "purge_expired_rows_op",
    "roll_up_provider_call_hours": "roll_up_provider_call_hours_op",
    "report_integration_health": "integration_health_report",
}
HOOK_TAGS = ("job", "op", "step", "run_id")


@pytest.fixture
def sentry_sink():
    with BackendSink() as sink:
        assert sentry.configure_sentry(sink.sentry_dsn)
        try:
            yield sink
        finally:
            sentry.shutdown_sentry()


@pytest.fixture
def missing_database(monkeypatch) -> str:
    """The password of a store URL whose database does not exist, set as $SYNC_DATABASE_URL
    (the deployed resource reads it): every op that touches the store fails connecting."""
    password = f"pw-{uuid.uuid4().hex}"
    server = urlsplit(POSTGRES_ADMIN_URL)
    url = (
        f"postgresql://{server.username}:{password}@{server.hostname}:{server.port or 5432}"
        f"/sync_missing_{uuid.uuid4().hex[:8]}"
    )
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    return password


def _sent(sink: BackendSink) -> list[dict]:
    import sentry_sdk

    sentry_sdk.flush()
    return sink.sentry_events()


def _run(job_name: str) -> dg.ExecuteInProcessResult:
    """The job as the code location defines it (its hooks and resources), run in process."""
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def(job_name).execute_in_process(
            instance=instance, raise_on_error=False
        )
    assert not result.success
    return result


def _hook_events(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.event_type_value for e in result.all_events if e.event_type_value.startswith("HOOK_")]


@pytest.mark.parametrize("job_name", sorted(JOBS_WITHOUT_A_SESSION))
def test_a_failing_op_is_one_event_tagged_with_job_op_step_and_run(
    job_name, missing_database, sentry_sink
):
    result = _run(job_name)

    (event,) = _sent(sentry_sink)
    op_name = JOBS_WITHOUT_A_SESSION[job_name]
    assert {tag: event["tags"].get(tag) for tag in HOOK_TAGS} == {
        "job": job_name,
        "op": op_name,
        "step": op_name,
        "run_id": result.run_id,
    }
    # the taxonomy's reading of a store that cannot be reached
    assert (event["tags"]["error.category"], event["tags"]["error.class"]) == (
        "transient",
        "OperationalError",
    )


def test_the_event_is_scrubbed_like_every_other(missing_database, sentry_sink):
    _run("purge_expired_rows")

    assert _sent(sentry_sink)
    bodies = b"".join(e.body for e in sentry_sink.sentry_envelopes())
    # the store URL sits in the frames' locals; its password is masked by the redaction rules
    assert missing_database.encode() not in bodies
    assert f"postgres:{REDACTED}@".encode() in bodies


def test_a_failure_the_integration_session_reported_is_not_sent_again(
    sqlite_store, golioth, register_golioth, sentry_sink
):
    integ = register_golioth(sqlite_store, golioth)
    golioth.emulator.faults.add([{"kind": "auth_failure"}])

    @dg.op
    # context unannotated: Dagster rejects the string annotation `from __future__` would make
    def sync_in_a_session(context, store: SyncStoreResource) -> None:
        with integration_session(
            store.get_store(), integ.integration_id, run_context_of(context)
        ) as session:
            sync_devices(session)

    @dg.job(hooks={report_op_failure_to_sentry})
    def sync_with_the_hook() -> None:
        sync_in_a_session()

    with dg.instance_for_test() as instance:
        result = sync_with_the_hook.execute_in_process(
            instance=instance,
            resources={"store": SyncStoreResource(database_url=sqlite_store.url)},
            raise_on_error=False,
        )
    assert not result.success
    assert _hook_events(result) == ["HOOK_COMPLETED"]  # the hook ran, and found it reported

    (event,) = _sent(sentry_sink)
    # the session's event (with the integration), not a second one from the hook
    assert event["tags"]["integration_id"] == integ.integration_id
    assert "op" not in event["tags"]
    assert event["tags"]["error.class"] == AuthError.__name__


def test_without_a_dsn_the_hook_runs_and_sends_nothing(missing_database, monkeypatch):
    monkeypatch.delenv(sentry.DSN_ENV, raising=False)
    assert not sentry.configure_sentry()

    result = _run("purge_expired_rows")

    assert _hook_events(result) == ["HOOK_COMPLETED"]
    assert not sentry.sentry_enabled()
