"""Data quality of stored devices: ids differing only by case or spaces, hardware ids claimed
twice, empty required fields — on a real synced inventory and on crafted rows."""

from __future__ import annotations

import pytest

from sync_pipelines.checks.data_quality import (
    external_ids_distinct_ignoring_case,
    hardware_ids_claimed_once,
    required_fields_present,
)
from sync_pipelines.checks.outcome import ERROR, WARN
from sync_pipelines.clock import utc_now
from sync_pipelines.providers.contract import DeviceRecord
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines_tests.checks.check_support import NOW, add_devices, judge, save

DATA_QUALITY = (
    external_ids_distinct_ignoring_case,
    hardware_ids_claimed_once,
    required_fields_present,
)


def test_a_real_synced_inventory_passes_every_data_quality_check(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=30)
    integ = register_golioth(store, running, per_page=10)
    with open_session(store, integ.integration_id) as session:
        assert sync_devices(session).counts.fetched == 30
    for check in DATA_QUALITY:
        outcome = judge(store, integ, check, now=utc_now())
        assert outcome.passed, outcome.description
        assert outcome.metadata["devices"] == 30


def test_ids_differing_only_by_case_or_spaces_are_an_error(store, integ):
    add_devices(
        store,
        integ,
        [
            DeviceRecord("Sensor-1", "a"),
            DeviceRecord("sensor-1 ", "b"),
            DeviceRecord("sensor-2", "c"),
        ],
        NOW,
    )
    outcome = judge(store, integ, external_ids_distinct_ignoring_case)
    assert (outcome.passed, outcome.severity) == (False, ERROR)
    assert (outcome.metadata["duplicate_ids"], outcome.metadata["duplicate_devices"]) == (1, 2)
    assert "'sensor-1'" in outcome.description


def test_another_integrations_devices_do_not_collide(store, integ):
    other = save(store, "golioth-other")
    add_devices(store, integ, [DeviceRecord("sensor-1", "a", hardware_ids=("AA:01",))], NOW)
    add_devices(store, other, [DeviceRecord("SENSOR-1", "a", hardware_ids=("aa:01",))], NOW)
    assert judge(store, integ, external_ids_distinct_ignoring_case).passed
    assert judge(store, integ, hardware_ids_claimed_once).passed


def test_a_hardware_id_claimed_by_two_devices_is_a_warning(store, integ):
    add_devices(
        store,
        integ,
        [
            DeviceRecord("dev-1", "a", hardware_ids=("02:00:00:00:00:01", "351234")),
            DeviceRecord("dev-2", "b", hardware_ids=("02:00:00:00:00:01 ",)),
            DeviceRecord(
                "dev-3", "c", hardware_ids=("351235", "351235")
            ),  # twice on one device: fine
        ],
        NOW,
    )
    outcome = judge(store, integ, hardware_ids_claimed_once)
    assert (outcome.passed, outcome.severity) == (False, WARN)
    assert (outcome.metadata["shared_hardware_ids"], outcome.metadata["devices_sharing"]) == (1, 2)
    assert "02:00:00:00:00:01" in outcome.description


@pytest.mark.parametrize(
    ("devices", "severity", "missing"),
    [
        ([DeviceRecord("dev-1", "  ")], WARN, (0, 1)),
        ([DeviceRecord(" ", "nameless id"), DeviceRecord("dev-2", "")], ERROR, (1, 1)),
    ],
    ids=["empty-name-warns", "empty-id-errors"],
)
def test_empty_required_fields_fail(store, integ, devices, severity, missing):
    add_devices(store, integ, [DeviceRecord("dev-ok", "fine"), *devices], NOW)
    outcome = judge(store, integ, required_fields_present)
    assert (outcome.passed, outcome.severity) == (False, severity)
    assert (outcome.metadata["missing_external_id"], outcome.metadata["missing_name"]) == missing
