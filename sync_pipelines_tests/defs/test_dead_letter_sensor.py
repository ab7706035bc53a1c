"""`dead_letter_replay_sensor` and the `replay_dead_letters` job: one run request per integration
with letters due, keyed by its due set (so ticks never launch a set twice), none while a replay
of that integration is in flight; the job resolves letters under its Dagster run id."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest

from sync_pipelines.clock import utc_now
from sync_pipelines.defs.dead_letters import (
    INTEGRATION_TAG,
    dead_letter_replay_sensor,
    replay_dead_letters,
)
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.store.dead_letters import (
    RESOLVED,
    RETRYING,
    DeadLetterPolicy,
    DeadLetterSelection,
    FailedRecord,
    list_dead_letters,
    record_dead_letters,
)
from sync_pipelines.store.integrations import Integration, ensure_organization, save_integration


def _save(store, integration_id: str, organization_id: str = "org-a", enabled: bool = True) -> None:
    with store.transaction() as conn:
        ensure_organization(conn, organization_id)
        save_integration(
            conn,
            Integration(
                integration_id=integration_id,
                organization_id=organization_id,
                provider="golioth",
                name=integration_id,
                settings={"base_url": "http://127.0.0.1:9", "project_id": "p"},
                secret_refs={"api_key": "UNUSED_KEY_ENV"},
                enabled=enabled,
            ),
        )


def _fail(
    store,
    integration_id: str,
    *external_ids: str,
    organization_id: str = "org-a",
    ago: timedelta = timedelta(minutes=5),
    payload=None,
) -> None:
    with store.transaction() as conn:
        record_dead_letters(
            conn,
            organization_id=organization_id,
            integration_id=integration_id,
            provider="golioth",
            records=[
                FailedRecord(
                    stream="devices",
                    dedupe_key=e,
                    error_type="validation",
                    error_message="bad",
                    payload=payload or {"id": e},
                    external_id=e,
                )
                for e in external_ids
            ],
            policy=DeadLetterPolicy(backoff_base_s=60),
            run_id="run-sync",
            now=utc_now() - ago,
        )


def _tick(store, instance) -> dg.SensorResult | dg.SkipReason:
    with dg.build_sensor_context(
        instance=instance, resources={"store": SyncStoreResource(database_url=store.url)}
    ) as context:
        return dead_letter_replay_sensor(context)


def _requests(result) -> list[dg.RunRequest]:
    assert isinstance(result, dg.SensorResult), result
    return list(result.run_requests or [])


def test_no_due_letters_skips_the_tick(sqlite_store, instance):
    _save(sqlite_store, "golioth-a")
    _fail(sqlite_store, "golioth-a", "not-yet", ago=timedelta(seconds=0))
    result = _tick(sqlite_store, instance)
    assert isinstance(result, dg.SkipReason) and "no dead letters are due" in result.skip_message


def test_one_run_per_enabled_integration_with_due_letters_configured_for_it(sqlite_store, instance):
    _save(sqlite_store, "golioth-a")
    _save(sqlite_store, "golioth-b", organization_id="org-b")
    _save(sqlite_store, "golioth-off", enabled=False)
    _fail(sqlite_store, "golioth-a", "a1", "a2")
    _fail(sqlite_store, "golioth-b", "b1", organization_id="org-b")
    _fail(sqlite_store, "golioth-off", "off")
    requests = _requests(_tick(sqlite_store, instance))
    assert [r.tags[INTEGRATION_TAG] for r in requests] == ["golioth-a", "golioth-b"]
    assert requests[0].run_config == {
        "ops": {"replay_dead_letters_op": {"config": {"integration_id": "golioth-a"}}}
    }
    assert requests[1].tags["sync_pipelines/organization_id"] == "org-b"
    with sqlite_store.connect() as conn:
        newest = max(
            d.id
            for d in list_dead_letters(
                conn, "org-a", DeadLetterSelection(integration_id="golioth-a")
            )
        )
    assert requests[0].run_key.startswith(f"golioth-a:2:{newest}:")


def test_the_same_due_set_gets_the_same_run_key_on_every_tick(sqlite_store, instance):
    _save(sqlite_store, "golioth-a")
    _fail(sqlite_store, "golioth-a", "a1", "a2")
    first = [r.run_key for r in _requests(_tick(sqlite_store, instance))]
    second = [r.run_key for r in _requests(_tick(sqlite_store, instance))]
    assert first == second, "the daemon drops a run key it has seen: no duplicate run"


def test_a_new_due_letter_changes_the_run_key(sqlite_store, instance):
    _save(sqlite_store, "golioth-a")
    _fail(sqlite_store, "golioth-a", "a1")
    [before] = _requests(_tick(sqlite_store, instance))
    _fail(sqlite_store, "golioth-a", "a2", ago=timedelta(minutes=2))
    [after] = _requests(_tick(sqlite_store, instance))
    assert before.run_key != after.run_key


def test_an_integration_with_a_replay_in_flight_is_left_alone(sqlite_store, instance):
    _save(sqlite_store, "golioth-a")
    _save(sqlite_store, "golioth-b")
    _fail(sqlite_store, "golioth-a", "a1")
    _fail(sqlite_store, "golioth-b", "b1")
    instance.create_run_for_job(
        replay_dead_letters,
        run_config={"ops": {"replay_dead_letters_op": {"config": {"integration_id": "golioth-a"}}}},
        tags={INTEGRATION_TAG: "golioth-a"},
    )  # NOT_STARTED: as good as queued
    assert [r.tags[INTEGRATION_TAG] for r in _requests(_tick(sqlite_store, instance))] == [
        "golioth-b"
    ]


@pytest.fixture
def small_golioth(golioth_factory):
    return golioth_factory(device_count=5)


def test_the_requested_run_resolves_what_it_can_and_the_next_tick_finds_nothing_due(
    store, instance, small_golioth, register_golioth
):
    integ = register_golioth(store, small_golioth)
    good = next(small_golioth.emulator.device_ids())
    _fail(store, integ.integration_id, good, payload=small_golioth.emulator.get_device(good))
    _fail(
        store,
        integ.integration_id,
        "broken",
        payload={"id": "broken", "name": "b", "hardwareIds": "oops"},
    )
    [request] = _requests(_tick(store, instance))

    result = replay_dead_letters.execute_in_process(
        run_config=request.run_config,
        tags=request.tags,
        instance=instance,
        resources={"store": SyncStoreResource(database_url=store.url)},
    )

    assert result.success
    with store.connect() as conn:
        letters = {
            d.external_id: d
            for d in list_dead_letters(
                conn,
                integ.organization_id,
                DeadLetterSelection(integration_id=integ.integration_id),
            )
        }
    assert (letters[good].status, letters[good].resolved_by_run_id) == (RESOLVED, result.run_id)
    assert (letters["broken"].status, letters["broken"].attempts) == (RETRYING, 1)
    [materialization] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = materialization.event_specific_data.metadata
    assert (metadata["resolved"].value, metadata["retrying"].value) == (1, 1)
    assert isinstance(_tick(store, instance), dg.SkipReason), (
        "the retried letter waits for its backoff"
    )
