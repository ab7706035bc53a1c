"""Bad configuration: a clear error naming the integration and what is missing, recorded in
the activity log, and nothing else touched."""

from __future__ import annotations

import pytest

from sync_pipelines.errors import ConfigError
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.integrations import Integration, ensure_organization, save_integration
from sync_pipelines.sync.inventory import sync_devices


def _save(store, integration: Integration) -> None:
    # written straight to the store, as an older version or a hand-edit could have left it
    with store.transaction() as conn:
        ensure_organization(conn, integration.organization_id)
        save_integration(conn, integration)


def _failed_import(store, org, run_id):
    with store.connect() as conn:
        (row,) = activity_rows(conn, org, run_id=run_id, activity_type="import")
    return row


def test_unknown_provider_is_a_recorded_config_error(store, open_session):
    _save(store, Integration("weird-1", "org-a", "carrier-pigeon", "?", {}, {}))
    with (
        open_session(store, "weird-1", run_id="run-x") as session,
        pytest.raises(ConfigError) as err,
    ):
        sync_devices(session)
    assert "weird-1" in str(err.value) and "carrier-pigeon" in str(err.value)
    row = _failed_import(store, "org-a", "run-x")
    assert row["status"] == "failed" and row["error_type"] == "ConfigError"
    assert "carrier-pigeon" in row["error_message"]


def test_missing_setting_is_named(store, open_session, monkeypatch):
    monkeypatch.setenv("K1", "key-value-1")
    _save(
        store,
        Integration(
            "g-1", "org-a", "golioth", "g", {"base_url": "http://127.0.0.1:9"}, {"api_key": "K1"}
        ),
    )
    with (
        open_session(store, "g-1", run_id="run-y") as session,
        pytest.raises(ConfigError, match="g-1.*project_id"),
    ):
        sync_devices(session)
    assert "project_id" in _failed_import(store, "org-a", "run-y")["error_message"]


def test_unset_secret_variable_is_named_without_a_value(store, open_session, monkeypatch):
    monkeypatch.delenv("MISSING_GOLIOTH_KEY", raising=False)
    _save(
        store,
        Integration(
            "g-2",
            "org-a",
            "golioth",
            "g",
            {"base_url": "http://127.0.0.1:9", "project_id": "p"},
            {"api_key": "MISSING_GOLIOTH_KEY"},
        ),
    )
    with (
        open_session(store, "g-2", run_id="run-z") as session,
        pytest.raises(ConfigError, match="MISSING_GOLIOTH_KEY"),
    ):
        sync_devices(session)
    assert "MISSING_GOLIOTH_KEY" in _failed_import(store, "org-a", "run-z")["error_message"]


def test_unknown_integration_id_says_so(store, open_session):
    with (
        pytest.raises(ConfigError, match="no-such-integration.*no such integration"),
        open_session(store, "no-such-integration"),
    ):
        pass


def test_an_integration_id_cannot_be_taken_over_by_another_organization(store):
    _save(store, Integration("shared-id", "org-a", "golioth", "a", {}, {}))
    with pytest.raises(PermissionError, match="shared-id"):
        _save(store, Integration("shared-id", "org-b", "golioth", "b", {}, {}))
