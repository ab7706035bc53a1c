"""`golioth_poll_schedule`: a sync starts for each enabled Golioth integration whose poll
interval has elapsed since its last inventory sync started, once its partition exists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import sqlalchemy as sa

from sync_pipelines.clock import utc_now
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.schedules import due_integration_ids, golioth_poll_schedule
from sync_pipelines.store.integrations import Integration, ensure_organization, save_integration
from sync_pipelines.store.sync_state import start_sync_log

PARTITIONS = "golioth_integrations"
TICK = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)


def _save(
    store,
    integration_id: str,
    *,
    poll_interval_s: int = 300,
    enabled: bool = True,
    provider: str = "golioth",
    organization_id: str = "org-a",
) -> None:
    with store.transaction() as conn:
        ensure_organization(conn, organization_id)
        save_integration(
            conn,
            Integration(
                integration_id=integration_id,
                organization_id=organization_id,
                provider=provider,
                name=integration_id,
                settings={"base_url": "http://127.0.0.1:9", "project_id": "p"},
                secret_refs={"api_key": "UNUSED_KEY_ENV"},
                enabled=enabled,
                poll_interval_s=poll_interval_s,
            ),
        )


def _synced(
    store,
    integration_id: str,
    *,
    ago: timedelta = timedelta(0),
    stream: str = "devices",
    organization_id: str = "org-a",
) -> None:
    """A sync log row as a sync that started `ago` before now would have left."""
    with store.transaction() as conn:
        sync_id = start_sync_log(conn, organization_id, integration_id, stream, "run-earlier", None)
        conn.execute(
            sa.text("UPDATE integration_sync_log SET started_at = :t WHERE id = :id"),
            {"t": utc_now() - ago, "id": sync_id},
        )


def _resource(store) -> SyncStoreResource:
    return SyncStoreResource(database_url=store.url)


def _tick(store, instance):
    # As a context manager: the context opens its own instance from the ref and must close it.
    with dg.build_schedule_context(
        instance=instance, resources={"store": _resource(store)}, scheduled_execution_time=TICK
    ) as context:
        return golioth_poll_schedule(context)


# -- which integrations are due ----------------------------------------------------------------


def test_an_integration_never_synced_is_due(store):
    _save(store, "golioth-a")
    assert due_integration_ids(_resource(store), "golioth") == ["golioth-a"]


def test_an_integration_synced_just_now_is_not_due(store):
    _save(store, "golioth-a", poll_interval_s=300)
    _synced(store, "golioth-a")
    assert due_integration_ids(_resource(store), "golioth") == []


def test_an_integration_whose_last_sync_started_a_poll_interval_ago_is_due(store):
    _save(store, "golioth-a", poll_interval_s=300)
    _synced(store, "golioth-a", ago=timedelta(seconds=301))
    assert due_integration_ids(_resource(store), "golioth") == ["golioth-a"]


def test_only_the_latest_sync_counts(store):
    _save(store, "golioth-a", poll_interval_s=300)
    _synced(store, "golioth-a", ago=timedelta(hours=2))
    _synced(store, "golioth-a", ago=timedelta(seconds=10))
    assert due_integration_ids(_resource(store), "golioth") == []


def test_each_integration_follows_its_own_poll_interval(store):
    _save(store, "golioth-fast", poll_interval_s=60)
    _save(store, "golioth-slow", poll_interval_s=3600)
    _synced(store, "golioth-fast", ago=timedelta(minutes=5))
    _synced(store, "golioth-slow", ago=timedelta(minutes=5))
    assert due_integration_ids(_resource(store), "golioth") == ["golioth-fast"]


def test_a_disabled_integration_is_never_due(store):
    _save(store, "golioth-off", enabled=False)
    assert due_integration_ids(_resource(store), "golioth") == []


def test_integrations_of_other_providers_are_not_due_for_golioth(store):
    _save(store, "azure-a", provider="azure_iot_hub")
    assert due_integration_ids(_resource(store), "golioth") == []


# -- the schedule ------------------------------------------------------------------------------


def test_the_schedule_skips_a_due_integration_whose_partition_does_not_exist_yet(
    sqlite_store, instance
):
    _save(sqlite_store, "golioth-a")
    result = _tick(sqlite_store, instance)
    assert isinstance(result, dg.SkipReason)


def test_the_schedule_skips_when_nothing_is_due(sqlite_store, instance):
    _save(sqlite_store, "golioth-a")
    _synced(sqlite_store, "golioth-a")
    instance.add_dynamic_partitions(PARTITIONS, ["golioth-a"])
    result = _tick(sqlite_store, instance)
    assert isinstance(result, dg.SkipReason)


def test_the_schedule_requests_one_run_per_due_integration_keyed_by_partition_and_tick(
    sqlite_store, instance
):
    _save(sqlite_store, "golioth-a")
    _save(sqlite_store, "golioth-b", organization_id="org-b")
    _save(sqlite_store, "golioth-recent")
    _synced(sqlite_store, "golioth-recent")
    instance.add_dynamic_partitions(PARTITIONS, ["golioth-a", "golioth-b", "golioth-recent"])
    requests = _tick(sqlite_store, instance)
    assert [(r.partition_key, r.run_key) for r in requests] == [
        ("golioth-a", "golioth-a:20260304T0506"),
        ("golioth-b", "golioth-b:20260304T0506"),
    ]


def test_the_schedule_leaves_out_integrations_without_a_partition(sqlite_store, instance):
    _save(sqlite_store, "golioth-a")
    _save(sqlite_store, "golioth-new")
    instance.add_dynamic_partitions(PARTITIONS, ["golioth-a"])
    requests = _tick(sqlite_store, instance)
    assert [r.partition_key for r in requests] == ["golioth-a"]


def test_the_schedule_evaluated_without_a_tick_time_still_requests_runs(sqlite_store, instance):
    _save(sqlite_store, "golioth-a")
    instance.add_dynamic_partitions(PARTITIONS, ["golioth-a"])
    with dg.build_schedule_context(
        instance=instance, resources={"store": _resource(sqlite_store)}
    ) as context:
        requests = golioth_poll_schedule(context)
    assert [r.partition_key for r in requests] == ["golioth-a"]
