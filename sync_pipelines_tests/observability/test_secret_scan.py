"""No secret value reaches any output: a sync with known secrets is run through Dagster —
successfully, with an auth failure and with a dropped connection — and every captured byte
of stdout/stderr, every event-log entry and every store row is scanned for them."""

from __future__ import annotations

import uuid

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._serdes import serialize_value

from sync_pipelines.defs.provider_assets import PROVIDER_DEFS
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.errors import ConfigError

golioth_devices = PROVIDER_DEFS["golioth"].devices
golioth_device_states = PROVIDER_DEFS["golioth"].device_states

TABLES = (
    "integrations",
    "devices",
    "device_states",
    "integration_activity_log",
    "integration_sync_log",
    "integration_sync_state",
)


def _materialize(instance, store, integration_id):
    return dg.materialize(
        [golioth_devices, golioth_device_states],
        partition_key=integration_id,
        instance=instance,
        resources={"store": SyncStoreResource(database_url=store.url)},
        raise_on_error=False,
    )


def test_no_secret_appears_in_logs_rows_or_events(store, golioth_factory, register_golioth, capfd):
    running = golioth_factory(device_count=120)
    api_key = running.api_key
    integ = register_golioth(store, running, state_source="device")  # faults hit /data reads

    with dg.instance_for_test(
        overrides={
            "python_logs": {
                "managed_python_loggers": ["sync_pipelines"],
                "python_log_level": "DEBUG",
            }
        }
    ) as instance:
        instance.add_dynamic_partitions("golioth_integrations", [integ.integration_id])
        runs = [_materialize(instance, store, integ.integration_id)]
        running.emulator.add_faults({"kind": "auth_failure"})
        runs.append(_materialize(instance, store, integ.integration_id))
        running.emulator.clear_faults()
        running.emulator.add_faults({"kind": "drop_connection", "path": "/data$", "times": 3})
        runs.append(_materialize(instance, store, integ.integration_id))
        events = "\n".join(serialize_value(e) for r in runs for e in instance.all_logs(r.run_id))

    assert [r.success for r in runs] == [True, False, True]
    out, err = capfd.readouterr()
    with store.connect() as conn:
        rows = "\n".join(
            repr(row)
            for table in TABLES
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")).all()
        )

    captured = {"stdout": out, "stderr": err, "dagster events": events, "store rows": rows}
    for where, text in captured.items():
        assert api_key not in text, f"the API key leaked into {where}"
    # Not vacuous: the places that carried the secrets were written, masked.
    assert "[REDACTED]" in rows and "x-api-key" in rows
    assert "sync_completed" in out and "http_request_failed" in out


def test_a_credential_in_a_setting_is_refused_before_it_is_stored(store, golioth, register_golioth):
    url_password = f"pw-{uuid.uuid4().hex}"
    with pytest.raises(ConfigError, match="golioth-a.*base_url.*secret_refs"):
        register_golioth(
            store, golioth, base_url=golioth.url.replace("http://", f"http://u:{url_password}@")
        )
    with store.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM integrations")).scalar_one() == 0


def test_a_password_in_a_url_is_masked_in_activity_rows(
    sqlite_store, golioth, open_session, monkeypatch
):
    """Even if it got past registration (e.g. written by hand), the endpoint column masks it."""
    from sync_pipelines.store.integrations import Integration, ensure_organization, save_integration
    from sync_pipelines.sync.inventory import sync_devices

    url_password = f"pw-{uuid.uuid4().hex}"
    monkeypatch.setenv("HAND_KEY", golioth.api_key)
    with sqlite_store.transaction() as conn:
        ensure_organization(conn, "org-h")
        save_integration(
            conn,
            Integration(
                "hand",
                "org-h",
                "golioth",
                "by hand",
                {
                    "base_url": golioth.url.replace("http://", f"http://u:{url_password}@"),
                    "project_id": "demo-project",
                },
                {"api_key": "HAND_KEY"},
            ),
        )
    with open_session(sqlite_store, "hand") as session:
        sync_devices(session)
    with sqlite_store.connect() as conn:
        endpoints = (
            conn.execute(
                sa.text("SELECT endpoint FROM integration_activity_log WHERE endpoint IS NOT NULL")
            )
            .scalars()
            .all()
        )
    assert endpoints and all(url_password not in e and "u:[REDACTED]@" in e for e in endpoints)
