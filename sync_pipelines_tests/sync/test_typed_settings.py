"""Typed settings (providers/settings.py): what `register_integration` refuses and keeps, the
same check when a run resolves a stored integration, and the change operations behind
`integrations update/enable/disable/remove` — on SQLite and PostgreSQL."""

import typing

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.retry import fail_fast_unless_retryable
from sync_pipelines.defs.run_context import run_context_of
from sync_pipelines.errors import CONFIG, ConfigError, category_of
from sync_pipelines.providers.contract import IntegrationConfig
from sync_pipelines.providers.mqtt_client import PROTOCOLS
from sync_pipelines.providers.registry import PROVIDERS, provider_class
from sync_pipelines.providers.settings import (
    CONFLICT_RULES,
    WEBHOOK_SCHEMES,
    GoliothSettings,
    IntegrationSettings,
    MqttSettings,
)
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.desired import RESOLUTIONS
from sync_pipelines.store.integrations import (
    Integration,
    ensure_organization,
    get_integration,
    save_integration,
)
from sync_pipelines.sync.integration_config import (
    register_integration,
    remove_integration,
    resolve_config,
    update_integration,
)
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.sync.session import integration_session
from sync_pipelines.webhooks.verification import SCHEMES

GOLIOTH = {"base_url": "http://127.0.0.1:9", "project_id": "p"}
PASTED_KEY = "gk-live-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def _golioth(**changes) -> Integration:
    fields = {
        "integration_id": "golioth-a",
        "organization_id": "org-a",
        "provider": "golioth",
        "name": "Golioth A",
        "settings": dict(GOLIOTH),
        "secret_refs": {"api_key": "GOLIOTH_A_KEY"},
    }
    return Integration(**{**fields, **changes})


def _integration_rows(store) -> int:
    with store.connect() as conn:
        return conn.execute(sa.text("SELECT COUNT(*) FROM integrations")).scalar_one()


def _every_table_as_text(store) -> str:
    with store.connect() as conn:
        names = sa.inspect(conn).get_table_names()
        return "\n".join(
            str(row) for name in names for row in conn.execute(sa.text(f'SELECT * FROM "{name}"'))
        )


# -- the models ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"page_size": "-5"}, "setting 'page_size': must be an integer ≥ 1 (got '-5')"),
        ({"page_size": "lots"}, "setting 'page_size': must be an integer ≥ 1 (got 'lots')"),
        ({"page_sise": "50"}, "unknown setting 'page_sise' (did you mean 'page_size'?)"),
        ({"base_url": "not-a-url"}, "setting 'base_url': must be an http(s) URL (got 'not-a-url')"),
        ({"base_url": "ftp://host/x"}, "setting 'base_url': must be an http(s) URL"),
        ({"project_id": ""}, "missing required setting 'project_id' for provider golioth"),
        ({"request_timeout_s": "soon"}, "setting 'request_timeout_s': must be a number > 0"),
        ({"state_source": "lst"}, "setting 'state_source': must be one of device, list"),
        ({"conflict_resolution": "me"}, "setting 'conflict_resolution': must be one of"),
        ({"monitoring": "off"}, "setting 'monitoring': must be a JSON object"),
        (
            {"monitoring": '{"error_rate_wrn": 0.02}'},
            "unknown monitoring threshold 'error_rate_wrn' (did you mean 'error_rate_warn'?)",
        ),
        ({"retry_max_attempts": "0"}, "setting 'retry_max_attempts': must be an integer ≥ 1"),
    ],
)
def test_a_bad_setting_is_refused_naming_it_and_its_problem(settings, message):
    with pytest.raises(ConfigError) as refused:
        GoliothSettings.parse({**GOLIOTH, **settings}, "golioth-a")
    assert message in str(refused.value)
    assert str(refused.value).startswith("integration 'golioth-a': ")


def test_cli_strings_are_coerced_and_json_settings_parsed():
    settings = GoliothSettings.parse(
        {
            **GOLIOTH,
            "page_size": "50",
            "request_timeout_s": "2.5",
            "monitoring": '{"error_rate_warn": 0.02, "freshness_sla_s": 900}',
        },
        "golioth-a",
    )
    assert (settings.page_size, settings.request_timeout_s) == (50, 2.5)
    assert settings.stored()["monitoring"] == {"error_rate_warn": 0.02, "freshness_sla_s": 900}


def test_an_empty_value_means_not_set():
    assert GoliothSettings.parse({**GOLIOTH, "page_size": ""}, "g").stored() == GOLIOTH


def test_a_refusal_never_echoes_a_secret_looking_value():
    with pytest.raises(ConfigError) as refused:
        MqttSettings.parse({"host": "broker", "port": f"password={PASTED_KEY}"}, "m")
    assert "setting 'port'" in str(refused.value) and "value not shown" in str(refused.value)
    assert PASTED_KEY not in str(refused.value)


def test_every_provider_has_a_model_whose_required_fields_are_its_required_settings():
    for name in PROVIDERS:
        cls = provider_class(name)
        assert issubclass(cls.settings_model, IntegrationSettings)
        required = {n for n, f in cls.settings_model.model_fields.items() if f.is_required()}
        assert required == set(cls.required_settings), name


def test_the_models_choices_agree_with_the_modules_that_use_them():
    assert CONFLICT_RULES == RESOLUTIONS
    assert WEBHOOK_SCHEMES == SCHEMES
    assert set(typing.get_args(MqttSettings.model_fields["protocol"].annotation)) == set(PROTOCOLS)


def test_a_provider_built_from_bad_settings_raises_a_config_error():
    from sync_pipelines.providers.golioth import GoliothProvider

    config = IntegrationConfig("g", "org-a", "golioth", {**GOLIOTH, "page_size": "lots"}, {})
    with pytest.raises(ConfigError, match="page_size"):
        GoliothProvider(config, clients=None)  # type: ignore[arg-type]


def test_a_wrong_url_scheme_is_a_config_error_for_the_taxonomy():
    assert (
        category_of(httpx.UnsupportedProtocol("Request URL has an unsupported protocol")) == CONFIG
    )
    assert category_of(httpx.InvalidURL("bad")) == CONFIG


# -- registration -------------------------------------------------------------------------


def test_registration_stores_the_typed_settings(store):
    register_integration(
        store,
        _golioth(settings={**GOLIOTH, "page_size": "50", "monitoring": '{"min_calls": 5}'}),
    )
    with store.connect() as conn:
        saved = get_integration(conn, "org-a", "golioth-a")
    assert saved.settings == {**GOLIOTH, "page_size": 50, "monitoring": {"min_calls": 5}}


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"organization_id": ""}, "organization id must not be empty"),
        ({"organization_id": "org a/b"}, "organization id 'org a/b' is not a valid id"),
        ({"integration_id": ""}, "integration id must not be empty"),
        ({"poll_interval_s": -60}, "poll interval must be a whole number of seconds ≥ 1"),
        ({"secret_refs": {"api_kee": "K"}}, "unknown secret 'api_kee' (did you mean 'api_key'?)"),
        ({"settings": {**GOLIOTH, "page_sise": "50"}}, "unknown setting 'page_sise'"),
    ],
)
def test_registration_refuses_a_bad_integration_and_writes_nothing(store, changes, named):
    with pytest.raises(ConfigError, match=None) as refused:
        register_integration(store, _golioth(**changes))
    assert named in str(refused.value)
    assert _integration_rows(store) == 0


def test_a_pasted_secret_is_refused_and_lands_in_no_table(store):
    with pytest.raises(ConfigError) as refused:
        register_integration(store, _golioth(secret_refs={"api_key": PASTED_KEY}))
    assert "secret reference for 'api_key' must be an environment-variable name" in str(
        refused.value
    )
    assert PASTED_KEY not in str(refused.value)
    assert PASTED_KEY not in _every_table_as_text(store)


def test_registering_an_existing_id_is_refused_unless_replacing(store):
    register_integration(store, _golioth())
    with pytest.raises(ConfigError, match="already exists"):
        register_integration(store, _golioth(name="Other"), replace=False)
    register_integration(store, _golioth(name="Other"), replace=True)
    with store.connect() as conn:
        assert get_integration(conn, "org-a", "golioth-a").name == "Other"


# -- at sync time -------------------------------------------------------------------------


def _save_unchecked(store, integration: Integration) -> None:
    # as an older version, or a hand edit, could have left it
    with store.transaction() as conn:
        ensure_organization(conn, integration.organization_id)
        save_integration(conn, integration)


def test_resolving_a_stored_integration_checks_its_settings(store):
    _save_unchecked(store, _golioth(settings={**GOLIOTH, "page_sise": "50"}))
    with store.connect() as conn:
        stored = get_integration(conn, "org-a", "golioth-a")
    with pytest.raises(ConfigError, match="unknown setting 'page_sise'"):
        resolve_config(stored, environ={"GOLIOTH_A_KEY": "k" * 20})


def test_a_stored_secret_ref_that_is_not_a_name_is_never_echoed(store):
    _save_unchecked(store, _golioth(secret_refs={"api_key": PASTED_KEY}))
    with store.connect() as conn:
        stored = get_integration(conn, "org-a", "golioth-a")
    with pytest.raises(ConfigError) as refused:
        resolve_config(stored, environ={})
    assert PASTED_KEY not in str(refused.value) and "not shown" in str(refused.value)


@dg.asset(retry_policy=dg.RetryPolicy(max_retries=3, delay=0.01))
def configured_devices(
    context: dg.AssetExecutionContext, store: SyncStoreResource
) -> dg.MaterializeResult:
    """A devices step wrapped as the provider assets are (defs/retry.py)."""
    with (
        fail_fast_unless_retryable(),
        integration_session(store.get_store(), "golioth-a", run_context_of(context)) as session,
    ):
        sync_devices(session)
    return dg.MaterializeResult()


def test_a_bad_base_url_at_sync_time_is_a_config_error_dagster_does_not_retry(sqlite_store):
    _save_unchecked(sqlite_store, _golioth(settings={**GOLIOTH, "base_url": "not-a-url"}))
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [configured_devices],
            instance=instance,
            resources={"store": SyncStoreResource(database_url=sqlite_store.url)},
            raise_on_error=False,
        )
    events = [e.event_type for e in result.all_events]
    assert not result.success
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in events
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "config error, not retried" in failure.step_failure_data.error.message
    assert "setting 'base_url': must be an http(s) URL" in failure.step_failure_data.error.message
    with sqlite_store.connect() as conn:
        (row,) = activity_rows(conn, "org-a", run_id=result.run_id, activity_type="import")
    assert (row["status"], row["error_type"]) == ("failed", "ConfigError")


# -- changes ------------------------------------------------------------------------------


def test_update_merges_checks_and_records_what_changed(store):
    register_integration(store, _golioth(), audit=True)
    updated = update_integration(
        store,
        "org-a",
        "golioth-a",
        settings={"page_size": "20"},
        poll_interval_s=60,
        name="Renamed",
    )
    assert updated.settings == {**GOLIOTH, "page_size": 20}
    assert (updated.poll_interval_s, updated.name) == (60, "Renamed")
    with store.connect() as conn:
        rows = activity_rows(conn, "org-a", activity_type="config_change")
    actions = sorted(r["metadata"]["action"] for r in rows)
    assert actions == ["add", "update"]
    (update,) = [r for r in rows if r["metadata"]["action"] == "update"]
    assert update["metadata"]["changed"] == ["settings.page_size", "name", "poll_interval_s"]


def test_a_refused_update_writes_nothing(store):
    register_integration(store, _golioth())
    with pytest.raises(ConfigError, match="setting 'page_size'"):
        update_integration(store, "org-a", "golioth-a", settings={"page_size": "lots"})
    with store.connect() as conn:
        assert get_integration(conn, "org-a", "golioth-a").settings == GOLIOTH
        assert activity_rows(conn, "org-a", activity_type="config_change") == []


def test_update_can_unset_a_setting_but_not_a_required_one(store):
    register_integration(store, _golioth(settings={**GOLIOTH, "page_size": 20}))
    assert update_integration(
        store, "org-a", "golioth-a", unset_settings=("page_size",)
    ).settings == (GOLIOTH)
    with pytest.raises(ConfigError, match="missing required setting 'project_id'"):
        update_integration(store, "org-a", "golioth-a", unset_settings=("project_id",))


def test_disable_then_enable(store):
    register_integration(store, _golioth())
    assert update_integration(store, "org-a", "golioth-a", enabled=False).enabled is False
    assert update_integration(store, "org-a", "golioth-a", enabled=True).enabled is True


def test_a_broken_integration_can_still_be_disabled(store):
    _save_unchecked(store, _golioth(settings={**GOLIOTH, "page_sise": "50"}))
    assert update_integration(store, "org-a", "golioth-a", enabled=False).enabled is False
    with pytest.raises(ConfigError, match="page_sise"):
        update_integration(store, "org-a", "golioth-a", enabled=True)


def test_changes_to_another_organizations_integration_are_refused(store):
    register_integration(store, _golioth())
    with pytest.raises(ConfigError, match="no such integration in organization 'org-b'"):
        update_integration(store, "org-b", "golioth-a", enabled=False)
    with pytest.raises(ConfigError, match="no such integration"):
        remove_integration(store, "org-b", "golioth-a")
    assert _integration_rows(store) == 1


def test_remove_deletes_the_configuration_and_keeps_the_history(store):
    register_integration(store, _golioth(), audit=True)
    remove_integration(store, "org-a", "golioth-a")
    assert _integration_rows(store) == 0
    with store.connect() as conn:
        rows = activity_rows(conn, "org-a", integration_id="golioth-a")
    assert sorted(r["metadata"]["action"] for r in rows) == ["add", "remove"]
