"""The `sync_organization` job, in-process against the real Golioth emulator, on SQLite and
PostgreSQL: one step per enabled integration of the organization, each syncing as the
provider's own sync job does."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipelines.defs.organization_sync import mapping_key, sync_organization
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.store.integrations import Integration
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines_tests.conftest import GOLIOTH_KEY_ENV

DEVICE_COUNT = 12


@pytest.fixture
def small_golioth(golioth_factory):
    return golioth_factory(device_count=DEVICE_COUNT)


def _golioth_integration(
    running, integration_id: str, *, key_env: str = GOLIOTH_KEY_ENV, enabled: bool = True
) -> Integration:
    return Integration(
        integration_id=integration_id,
        organization_id="org-a",
        provider="golioth",
        name=integration_id,
        settings={"base_url": running.url, "project_id": running.emulator.config.project_id},
        secret_refs={"api_key": key_env},
        enabled=enabled,
    )


def _run(store, instance, organization_id: str, **config) -> dg.ExecuteInProcessResult:
    return sync_organization.execute_in_process(
        run_config={
            "ops": {
                "enabled_integrations": {"config": {"organization_id": organization_id, **config}}
            }
        },
        instance=instance,
        resources={"store": SyncStoreResource(database_url=store.url)},
        raise_on_error=False,
    )


def _device_counts(store, organization_id: str) -> dict[str, int]:
    with store.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT d.integration_id, COUNT(*) FROM devices d JOIN device_states s"
                " ON s.organization_id = d.organization_id AND s.integration_id = d.integration_id"
                " AND s.external_id = d.external_id"
                " WHERE d.organization_id = :o GROUP BY d.integration_id"
            ),
            {"o": organization_id},
        ).all()
    return {integration_id: count for integration_id, count in rows}


def _sync_steps(result: dg.ExecuteInProcessResult) -> set[str]:
    return {
        e.step_key
        for e in result.get_step_success_events()
        if e.step_key.startswith("sync_integration")
    }


def test_every_enabled_integration_of_the_organization_is_synced_in_its_own_step(
    store, instance, small_golioth, register_golioth
):
    for name in ("golioth-a", "golioth-b", "golioth-c"):
        register_golioth(store, small_golioth, integration_id=name, per_page=5)
    register_integration(store, _golioth_integration(small_golioth, "golioth-off", enabled=False))
    register_golioth(
        store, small_golioth, organization_id="org-b", integration_id="golioth-other-org"
    )

    result = _run(store, instance, "org-a")

    assert result.success
    assert _sync_steps(result) == {
        f"sync_integration[{mapping_key(i)}]" for i in ("golioth-a", "golioth-b", "golioth-c")
    }
    assert _device_counts(store, "org-a") == {
        "golioth-a": DEVICE_COUNT,
        "golioth-b": DEVICE_COUNT,
        "golioth-c": DEVICE_COUNT,
    }
    assert _device_counts(store, "org-b") == {}


def test_each_step_reports_the_provider_assets_it_refreshed(
    store, instance, small_golioth, register_golioth
):
    register_golioth(store, small_golioth, integration_id="golioth-a")

    result = _run(store, instance, "org-a")

    materialized = {
        (m.asset_key.to_user_string(), m.partition)
        for m in result.asset_materializations_for_node("sync_integration")
    }
    assert materialized == {
        ("golioth_devices", "golioth-a"),
        ("golioth_device_states", "golioth-a"),
    }


def test_a_failing_integration_does_not_stop_the_others(
    store, instance, small_golioth, register_golioth, monkeypatch
):
    register_golioth(store, small_golioth, integration_id="golioth-good")
    monkeypatch.setenv("TEST_GOLIOTH_WRONG_KEY", "not-the-key")
    register_integration(
        store,
        _golioth_integration(small_golioth, "golioth-bad-key", key_env="TEST_GOLIOTH_WRONG_KEY"),
    )

    result = _run(store, instance, "org-a")

    assert not result.success
    assert _sync_steps(result) == {f"sync_integration[{mapping_key('golioth-good')}]"}
    assert _device_counts(store, "org-a") == {"golioth-good": DEVICE_COUNT}


def test_the_providers_option_limits_the_run_to_those_providers(
    store, instance, small_golioth, register_golioth
):
    register_golioth(store, small_golioth, integration_id="golioth-a")

    result = _run(store, instance, "org-a", providers=["mqtt"])

    assert result.success
    assert _sync_steps(result) == set()
    assert _device_counts(store, "org-a") == {}


def test_the_job_is_in_the_code_location_with_its_description():
    from sync_pipelines.definitions import defs

    job = defs.resolve_job_def("sync_organization")
    assert job.description and "organization" in job.description


def test_mapping_keys_are_valid_and_keep_rewritten_ids_distinct():
    assert mapping_key("golioth_a") == "golioth_a"
    rewritten = mapping_key("golioth-a")
    assert rewritten.startswith("golioth_a_") and rewritten != mapping_key("golioth_a")
    assert all(c.isalnum() or c == "_" for c in mapping_key("org/ü:x"))
