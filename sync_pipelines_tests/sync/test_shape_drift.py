"""Shape drift (Golioth emulator, SQLite and PostgreSQL): a state key renamed at the peer is one
`shape_changed` event (one path removed, one added) with one alert under the default policy,
none under `ignore`, and a paused integration the schedule no longer syncs under `pause`; an
unchanged re-sync and the first sync record none; a scan that saw only some devices never
reports a removal; `device_shape_stable` fails until the change is accepted."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from sync_pipelines.checks.context import CheckContext
from sync_pipelines.checks.outcome import ERROR, WARN
from sync_pipelines.checks.shape_drift import device_shape_stable
from sync_pipelines.cli import main
from sync_pipelines.clock import utc_now
from sync_pipelines.console.integration_page import entry_summary, integration_summary
from sync_pipelines.errors import ConfigError, MalformedResponseError
from sync_pipelines.monitoring.health import UNHEALTHY, integration_health
from sync_pipelines.observability.activity import CONFIG_CHANGE, SHAPE_CHANGED
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.alerts import list_incidents
from sync_pipelines.store.integration_timeline import SHAPE_CHANGED as TIMELINE_SHAPE
from sync_pipelines.store.integration_timeline import timeline_page
from sync_pipelines.store.integrations import get_integration
from sync_pipelines.store.shapes import get_shape
from sync_pipelines.sync.integration_config import checked_integration
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.sync.shapes import ShapeObserver, compare

RENAMED = {
    "removed": {"reported.interval_s": ["number"]},
    "added": {"reported.interval": ["number"]},
}


def _sync(open_session, store, integ, **kwargs):
    with open_session(store, integ.integration_id) as session:
        return sync_devices(session, **kwargs)


def _rename_at_peer(golioth) -> int:
    """`reported.interval_s` becomes `reported.interval` on every device that reports."""
    renamed = 0
    for device_id in golioth.emulator.device_ids():
        value = golioth.emulator.read_state(device_id, "/reported/interval_s")
        if value is None:
            continue
        golioth.emulator.write_state(device_id, "/reported/interval", value)
        golioth.emulator.delete_state(device_id, "/reported/interval_s")
        renamed += 1
    return renamed


def _changes(store, integ) -> list[dict]:
    with store.connect() as conn:
        return activity_rows(
            conn,
            integ.organization_id,
            integration_id=integ.integration_id,
            activity_type=SHAPE_CHANGED,
        )


def _incidents(store, integ):
    with store.connect() as conn:
        return [
            i
            for i in list_incidents(conn, integ.organization_id)
            if i.integration_id == integ.integration_id
        ]


def _check(store, integ):
    with store.connect() as conn:
        current = get_integration(conn, integ.organization_id, integ.integration_id)
        return device_shape_stable(CheckContext.of(conn, current, now=utc_now()))


def test_a_renamed_key_is_one_event_and_one_alert_until_accepted(
    store, golioth, register_golioth, open_session, monkeypatch
):
    integ = register_golioth(store, golioth)
    _sync(open_session, store, integ)  # the baseline: no event
    _sync(open_session, store, integ)  # unchanged: no event
    assert _changes(store, integ) == []
    with store.connect() as conn:
        baseline = get_shape(conn, integ.organization_id, integ.integration_id, "device_states")
    assert baseline is not None and baseline.shape["reported.interval_s"] == ["number"]
    assert _check(store, integ).passed

    assert _rename_at_peer(golioth) > 100
    result = _sync(open_session, store, integ)
    assert result.status == "success"
    [row] = _changes(store, integ)
    meta = row["metadata"]
    assert (meta["stream"], meta["policy"], meta["complete"]) == ("device_states", "alert", True)
    assert {k: meta[k] for k in ("removed", "added")} == RENAMED and meta["changed"] == {}
    [incident] = _incidents(store, integ)
    assert (incident.rule, incident.status, incident.severity) == ("shape_drift", "open", "warning")
    assert "reported.interval_s" in incident.summary and "accept-shape" in incident.summary
    # the timeline shows it
    with store.connect() as conn:
        entries = timeline_page(
            conn,
            integ.organization_id,
            integ.integration_id,
            since=utc_now().replace(year=2000),
            after=None,
            limit=50,
        )
    [shape_entry] = [e for e in entries if e.kind == TIMELINE_SHAPE]
    assert shape_entry.id == row["id"] and shape_entry.status == "alerted"
    assert entry_summary(shape_entry) == (
        "device_states shape changed (alerted): + reported.interval (number); "
        "- reported.interval_s (number)"
    )
    failing = _check(store, integ)
    assert (failing.passed, failing.severity) == (False, WARN)
    assert "- reported.interval_s (number)" in failing.description
    assert (failing.metadata["paths_added"], failing.metadata["paths_removed"]) == (1, 1)

    # the next sync compares with the new shape: nothing more
    _sync(open_session, store, integ)
    assert len(_changes(store, integ)) == 1 and len(_incidents(store, integ)) == 1

    monkeypatch.setenv("SYNC_DATABASE_URL", store.url)
    args = ["integrations", "accept-shape", "--organization", "org-a", "--id", "golioth-a"]
    accepted = CliRunner().invoke(main, args)
    assert accepted.exit_code == 0, accepted.output
    assert "accepted the shape change of 1 stream(s)" in accepted.output
    assert _check(store, integ).passed
    [resolved] = _incidents(store, integ)
    assert resolved.status == "resolved"
    again = CliRunner().invoke(main, args)
    assert "no shape change to accept" in again.output


def test_ignore_records_the_change_and_raises_nothing(
    store, golioth, register_golioth, open_session
):
    integ = register_golioth(store, golioth, shape_drift_policy="ignore")
    _sync(open_session, store, integ)
    _rename_at_peer(golioth)
    _sync(open_session, store, integ)
    [row] = _changes(store, integ)
    assert row["metadata"]["policy"] == "ignore"
    assert _incidents(store, integ) == []
    assert _check(store, integ).passed


def test_pause_disables_the_integration_and_the_schedule_skips_it_until_enabled(
    store, golioth, register_golioth, open_session, monkeypatch
):
    from sync_pipelines.defs.resources import SyncStoreResource
    from sync_pipelines.defs.schedules import due_integration_ids

    integ = register_golioth(store, golioth, shape_drift_policy="pause")
    _sync(open_session, store, integ)
    _rename_at_peer(golioth)
    _sync(open_session, store, integ)
    assert len(_changes(store, integ)) == 1
    [incident] = _incidents(store, integ)
    assert incident.severity == "critical"
    with store.connect() as conn:
        paused = get_integration(conn, integ.organization_id, integ.integration_id)
        pauses = [
            r
            for r in activity_rows(conn, "org-a", activity_type=CONFIG_CHANGE)
            if r["metadata"]["action"] == "pause"
        ]
        health = integration_health(conn, paused, now=utc_now())
        page = integration_summary(conn, paused, now=utc_now())
    assert paused is not None and paused.enabled is False
    [pause] = pauses
    resume = "sync-pipelines integrations enable --organization org-a --id golioth-a"
    assert pause["metadata"]["resume"] == resume
    assert "paused for shape drift" in pause["metadata"]["reason"]
    assert health.state == UNHEALTHY and resume in health.reasons[0]
    assert page["shape_drift"]["paused"].startswith("paused for shape drift")
    assert page["next_sync_at"] is None
    # the service's health (`health`, /health) agrees: no enabled integration, yet not healthy
    from sync_pipelines.monitoring.service_health import HealthOptions, check_service_health

    service = check_service_health(store, HealthOptions()).check("integrations")
    assert service is not None and service.status == UNHEALTHY
    assert "1 paused for shape drift (golioth-a)" in service.detail
    failing = _check(store, integ)
    assert (failing.passed, failing.severity) == (False, ERROR)
    # the next scheduled sync does not run: the schedule polls enabled integrations only (the
    # poll interval has elapsed: the syncs are dated a day back)
    with store.transaction() as conn:
        conn.execute(
            sa.text("UPDATE integration_sync_log SET started_at = :at"),
            {"at": utc_now() - timedelta(days=1)},
        )
    assert due_integration_ids(SyncStoreResource(database_url=store.url), "golioth") == []

    monkeypatch.setenv("SYNC_DATABASE_URL", store.url)
    resumed = CliRunner().invoke(
        main, ["integrations", "enable", "--organization", "org-a", "--id", "golioth-a"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert due_integration_ids(SyncStoreResource(database_url=store.url), "golioth") == [
        "golioth-a"
    ]
    assert _check(store, integ).passed
    assert [i.status for i in _incidents(store, integ)] == ["resolved"]
    with store.connect() as conn:
        health = integration_health(
            conn, get_integration(conn, "org-a", "golioth-a"), now=utc_now()
        )
    assert not any("shape drift" in r for r in health.reasons)


def test_a_scan_that_saw_only_some_devices_reports_no_removal(
    store, golioth, register_golioth, open_session
):
    integ = register_golioth(store, golioth, page_concurrency=1)
    _sync(open_session, store, integ)
    _rename_at_peer(golioth)
    golioth.emulator.add_faults(
        {"kind": "malformed_json", "path": "/devices$", "after": 1, "times": 1}
    )
    with pytest.raises(MalformedResponseError):
        _sync(open_session, store, integ, batch_size=1)
    # the resumed rest of the scan saw pages 1-2 only: the new key, no removal
    _sync(open_session, store, integ, batch_size=1)
    [partial] = _changes(store, integ)
    meta = partial["metadata"]
    assert (meta["complete"], meta["removed"], meta["added"]) == (
        False,
        {},
        {"reported.interval": ["number"]},
    )
    # the next complete scan judges removals
    _sync(open_session, store, integ)
    complete = _changes(store, integ)[-1]["metadata"]
    assert (complete["complete"], complete["removed"], complete["added"]) == (
        True,
        {"reported.interval_s": ["number"]},
        {},
    )


def test_shapes_are_unions_and_partial_observations_only_add():
    observer = ShapeObserver()
    observer.observe("attributes", {"fw": "1.0", "temp": 20})
    observer.observe("attributes", {"fw": "1.1", "temp": 20.5, "extra": {"a": [1, None]}})
    baseline = observer.shape
    assert baseline["attributes.temp"] == {"number"}  # int and float are one JSON type
    assert baseline["attributes.extra.a[]"] == {"number", "null"}
    one_device = ShapeObserver()
    one_device.observe("attributes", {"fw": 2})
    diff, new = compare(baseline, one_device.shape, complete=False)
    assert diff.lines() == ["~ attributes.fw: string → number|string"]
    assert set(new) == set(baseline)
    diff, new = compare(baseline, one_device.shape, complete=True)
    assert "- attributes.temp (number)" in diff.lines() and set(new) == set(one_device.shape)
    # null alone is no type change; a device without a document has no shape
    nullable = ShapeObserver()
    nullable.observe("reported", {"fw": None})
    nullable.observe("reported", None)
    assert nullable.shape == {"reported": {"object"}, "reported.fw": {"null"}}
    diff, _new = compare(
        {"reported": frozenset({"object"}), "reported.fw": frozenset({"string", "null"})},
        {"reported": frozenset({"object"}), "reported.fw": frozenset({"string"})},
        complete=True,
    )
    assert not diff


def test_a_bad_policy_is_refused_naming_the_setting():
    from sync_pipelines.store.integrations import Integration

    bad = Integration(
        organization_id="org-a",
        integration_id="golioth-a",
        provider="golioth",
        name="g",
        settings={
            "base_url": "http://127.0.0.1:1",
            "project_id": "p",
            "shape_drift_policy": "halt",
        },
        secret_refs={"api_key": "GOLIOTH_KEY"},
    )
    with pytest.raises(ConfigError, match="shape_drift_policy.*one of ignore, alert, pause"):
        checked_integration(bad)


AZURE_ENV = "TEST_SHAPE_AZURE_CONNECTION_STRING"


@pytest.fixture(scope="module")
def hub():
    from sync_pipelines_peers.launchers.azure_iot import AzureIotPeer

    peer = AzureIotPeer(device_count=60)
    peer.start()
    yield peer
    peer.stop()


def test_an_attribute_renamed_at_azure_is_one_event_one_removed_one_added(
    store, hub, open_session, monkeypatch
):
    from sync_pipelines.store.integrations import Integration
    from sync_pipelines.sync.integration_config import register_integration

    hub.emulator.reset()
    monkeypatch.setenv(AZURE_ENV, hub.connection_string())
    integ = Integration(
        integration_id="azure-a",
        organization_id="org-a",
        provider="azure_iot",
        name="Azure test",
        settings=hub.integration_settings(),
        secret_refs={"connection_string": AZURE_ENV},
    )
    register_integration(store, integ)
    _sync(open_session, store, integ)
    renamed = 0
    for device_id in list(hub.emulator.device_ids()):
        tags = hub.emulator.get_twin(device_id).get("tags") or {}
        if "environment" in tags:
            hub.emulator.update_device(
                device_id, {"tags": {"environment": None, "stage": tags["environment"]}}
            )
            renamed += 1
    assert renamed > 10
    _sync(open_session, store, integ)
    [row] = _changes(store, integ)
    meta = row["metadata"]
    assert meta["stream"] == "devices"
    assert (meta["removed"], meta["added"], meta["changed"]) == (
        {"attributes.tags.environment": ["string"]},
        {"attributes.tags.stage": ["string"]},
        {},
    )
    assert [i.rule for i in _incidents(store, integ)] == ["shape_drift"]
    hub.emulator.reset()


def test_webhook_events_add_to_the_shape_and_never_remove(store, monkeypatch, open_session):
    from sync_pipelines.sync.webhook_processing import process_webhook_events
    from sync_pipelines_tests.webhook_support import (
        azure_event,
        insert_pending,
        register_webhook_integration,
    )

    integ, _ = register_webhook_integration(
        store, monkeypatch, provider="azure_iot", integration_id="az-shape"
    )

    def deliver(device_id: str, tags: dict) -> None:
        event = azure_event(
            "DeviceCreated", device_id, {"twin": {"deviceId": device_id, "tags": tags}}
        )
        insert_pending(
            store,
            integ,
            event_type=event["eventType"],
            payload=event,
            external_id=device_id,
            event_id=event["id"],
        )
        with open_session(store, integ.integration_id) as session:
            assert process_webhook_events(session).counts.created == 1

    deliver("dev-1", {"environment": "prod"})  # a baseline from one device: incomplete
    deliver("dev-2", {"stage": "prod"})  # grows it silently: `stage` may have been there all along
    assert _changes(store, integ) == []
    with store.transaction() as conn:  # as if a complete scan had seen exactly these two
        conn.execute(sa.text("UPDATE integration_shapes SET baseline_complete = TRUE"))
    deliver("dev-3", {"zone": "a"})  # lacks `environment` and `stage`: not a removal
    [row] = _changes(store, integ)
    meta = row["metadata"]
    assert (meta["stream"], meta["complete"], meta["removed"], meta["added"]) == (
        "devices",
        False,
        {},
        {"attributes.tags.zone": ["string"]},
    )
    with store.connect() as conn:
        shape = get_shape(conn, "org-a", "az-shape", "devices")
    assert shape is not None
    assert {f"attributes.tags.{k}" for k in ("environment", "stage", "zone")} <= set(shape.shape)


def test_the_sync_command_says_it_left_the_integration_paused(
    store, golioth, register_golioth, open_session, monkeypatch
):
    from click.testing import CliRunner

    from sync_pipelines.cli import main

    integ = register_golioth(store, golioth, shape_drift_policy="pause")
    _sync(open_session, store, integ)
    _rename_at_peer(golioth)
    monkeypatch.setenv("SYNC_DATABASE_URL", store.url)
    result = CliRunner().invoke(main, ["sync", integ.integration_id, "--stream", "devices"])
    assert result.exit_code == 0, result.output
    assert f"warning: {integ.integration_id}: paused for shape drift" in result.stderr
    assert "integrations enable --organization org-a --id golioth-a" in result.stderr
