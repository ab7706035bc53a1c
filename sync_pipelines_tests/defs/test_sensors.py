"""`integration_partitions_sensor`: the Golioth partitions follow the enabled integrations.

Each test evaluates the sensor against a real store and a test instance, asserts the partition
requests it returns, then applies them and asserts the partitions the instance ends up with.
"""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.sensors import integration_partitions_sensor
from sync_pipelines.store.integrations import Integration, ensure_organization, save_integration

PARTITIONS = "golioth_integrations"


def _save(
    store,
    integration_id: str,
    *,
    organization_id: str = "org-a",
    provider: str = "golioth",
    enabled: bool = True,
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
            ),
        )


def _evaluate(store, instance) -> dg.SensorResult:
    # As a context manager: whatever the context opens (resources, instance) is closed again.
    with dg.build_sensor_context(
        instance=instance, resources={"store": SyncStoreResource(database_url=store.url)}
    ) as context:
        return integration_partitions_sensor(context)


def _requests(result: dg.SensorResult) -> list[tuple[str, str, list[str]]]:
    return [
        (
            "add" if isinstance(r, dg.AddDynamicPartitionsRequest) else "delete",
            r.partitions_def_name,
            list(r.partition_keys),
        )
        for r in result.dynamic_partitions_requests
    ]


def _apply(result: dg.SensorResult, instance) -> None:
    """What the sensor daemon does with the requests."""
    for request in result.dynamic_partitions_requests:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


def _partitions(instance) -> set[str]:
    return set(instance.get_dynamic_partitions(PARTITIONS))


def test_first_evaluation_adds_every_enabled_golioth_integration(sqlite_store, instance):
    _save(sqlite_store, "golioth-b")
    _save(sqlite_store, "golioth-a")
    _save(sqlite_store, "golioth-off", enabled=False)
    result = _evaluate(sqlite_store, instance)
    assert _requests(result) == [("add", PARTITIONS, ["golioth-a", "golioth-b"])]
    _apply(result, instance)
    assert _partitions(instance) == {"golioth-a", "golioth-b"}


def test_nothing_changed_requests_nothing(sqlite_store, instance):
    _save(sqlite_store, "golioth-a")
    _save(sqlite_store, "golioth-b")
    instance.add_dynamic_partitions(PARTITIONS, ["golioth-a", "golioth-b"])
    result = _evaluate(sqlite_store, instance)
    assert result.dynamic_partitions_requests == []
    assert _partitions(instance) == {"golioth-a", "golioth-b"}


def test_a_disabled_integration_is_removed(sqlite_store, instance):
    _save(sqlite_store, "golioth-a")
    _save(sqlite_store, "golioth-b")
    _apply(_evaluate(sqlite_store, instance), instance)
    _save(sqlite_store, "golioth-b", enabled=False)
    result = _evaluate(sqlite_store, instance)
    assert _requests(result) == [("delete", PARTITIONS, ["golioth-b"])]
    _apply(result, instance)
    assert _partitions(instance) == {"golioth-a"}


def test_a_partition_whose_integration_was_deleted_from_the_store_is_removed(
    sqlite_store, instance
):
    _save(sqlite_store, "golioth-a")
    _save(sqlite_store, "golioth-gone")
    _apply(_evaluate(sqlite_store, instance), instance)
    with sqlite_store.transaction() as conn:
        conn.execute(sa.text("DELETE FROM integrations WHERE integration_id = 'golioth-gone'"))
    result = _evaluate(sqlite_store, instance)
    assert _requests(result) == [("delete", PARTITIONS, ["golioth-gone"])]
    _apply(result, instance)
    assert _partitions(instance) == {"golioth-a"}


def test_new_and_removed_integrations_are_requested_together(sqlite_store, instance):
    _save(sqlite_store, "golioth-a")
    instance.add_dynamic_partitions(PARTITIONS, ["golioth-stale"])
    result = _evaluate(sqlite_store, instance)
    assert _requests(result) == [
        ("add", PARTITIONS, ["golioth-a"]),
        ("delete", PARTITIONS, ["golioth-stale"]),
    ]
    _apply(result, instance)
    assert _partitions(instance) == {"golioth-a"}


def test_integrations_of_every_organization_are_included(sqlite_store, instance):
    _save(sqlite_store, "golioth-a1", organization_id="org-a")
    _save(sqlite_store, "golioth-b1", organization_id="org-b")
    _save(sqlite_store, "golioth-c1", organization_id="org-c")
    result = _evaluate(sqlite_store, instance)
    assert _requests(result) == [("add", PARTITIONS, ["golioth-a1", "golioth-b1", "golioth-c1"])]
    _apply(result, instance)
    assert _partitions(instance) == {"golioth-a1", "golioth-b1", "golioth-c1"}


def test_integrations_of_other_providers_get_no_golioth_partition(sqlite_store, instance):
    _save(sqlite_store, "golioth-a")
    _save(sqlite_store, "azure-a", provider="azure_iot_hub")
    result = _evaluate(sqlite_store, instance)
    assert _requests(result) == [("add", PARTITIONS, ["golioth-a"])]


def test_an_empty_store_requests_nothing(sqlite_store, instance):
    result = _evaluate(sqlite_store, instance)
    assert result.dynamic_partitions_requests == []
    assert _partitions(instance) == set()
