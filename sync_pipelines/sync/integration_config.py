"""Turns a stored integration into a provider ready to call: validated settings, secrets
resolved from the environment (and registered for redaction), the recording clients."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from sync_pipelines.errors import ConfigError
from sync_pipelines.observability.activity import (
    CONFIG_CHANGE,
    ActivityRecorder,
    ActivityScope,
    NullSink,
)
from sync_pipelines.observability.http_recording import build_http_client
from sync_pipelines.observability.lean_http import LeanHttpClient, lean_serves
from sync_pipelines.observability.redaction import redact, register_secret
from sync_pipelines.observability.retrying import RetryPolicy
from sync_pipelines.providers.contract import IntegrationConfig, Provider
from sync_pipelines.providers.pacing import Pacing
from sync_pipelines.providers.registry import provider_class
from sync_pipelines.providers.settings import (
    WEBHOOK_SECRET_REF,
    IntegrationSettings,
    check_id,
    check_poll_interval,
    check_secret_ref,
    check_secret_refs,
)
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import (
    Integration,
    delete_integration,
    ensure_organization,
    find_integration_owner,
    get_integration,
    save_integration,
)
from sync_pipelines.sync.activity_sink import StoreActivitySink

if TYPE_CHECKING:
    from sync_pipelines.providers.mqtt_client import BrokerEndpoint, MqttConnection


def checked_integration(integration: Integration) -> Integration:
    """The integration as it may be stored: ids, provider, settings (typed: `"50"` becomes 50,
    JSON text a JSON value), secret references and poll interval checked. Every refusal is a
    ConfigError naming what to fix, and none echoes a secret.

    Settings are stored in clear, so a secret-looking setting (an API key, a password inside a
    URL) is refused: secrets belong in environment variables named by `secret_refs`.
    """
    iid = integration.integration_id
    check_id("integration id", iid)
    check_id("organization id", integration.organization_id, iid)
    cls = provider_class(integration.provider, iid)
    leaked = sorted(k for k, v in integration.settings.items() if redact({k: v}) != {k: v})
    if leaked:
        raise ConfigError(
            iid,
            f"setting(s) {', '.join(leaked)} contain a credential; store it in an environment variable "
            "and name that variable in secret_refs instead",
        )
    settings = cls.settings_model.parse(integration.settings, iid)
    # bad retry_* combinations are refused here, not at the first sync
    RetryPolicy.from_settings(settings.stored(), iid)
    check_secret_refs(integration.secret_refs, known_secrets(cls), iid)
    check_poll_interval(integration.poll_interval_s, iid)
    if not (integration.name or "").strip():
        raise ConfigError(iid, "name must not be empty")
    return dataclasses.replace(
        integration, settings=settings.stored(), secret_refs=dict(integration.secret_refs)
    )


def register_integration(
    store: Store,
    integration: Integration,
    *,
    replace: bool = True,
    audit: bool = False,
    actor: str | None = None,
) -> None:
    """Check (`checked_integration`) and save an integration and its organization. The way in
    for every caller. With `replace=False` an integration id already registered is refused;
    with `audit` (an operator's change, `integrations add`) a `config_change` activity row
    records it and who made it (`actor`)."""
    checked = checked_integration(integration)
    store = store.scoped(checked.organization_id)
    with store.transaction() as conn:
        existing = find_integration_owner(conn, checked.integration_id)
        if existing is not None and not replace:
            raise ConfigError(
                checked.integration_id,
                "already exists; `integrations update` changes it, `integrations add --replace` "
                "replaces it",
            )
        ensure_organization(conn, checked.organization_id)
        save_integration(conn, checked)
        if audit:
            action = "replace" if existing else "add"
            _record_config_change(store, conn, checked, action, _changed(existing, checked), actor)


def update_integration(
    store: Store,
    organization_id: str,
    integration_id: str,
    *,
    name: str | None = None,
    settings: Mapping[str, Any] | None = None,
    unset_settings: tuple[str, ...] = (),
    secret_refs: Mapping[str, str] | None = None,
    unset_secrets: tuple[str, ...] = (),
    poll_interval_s: int | None = None,
    enabled: bool | None = None,
    actor: str | None = None,
    reason: str | None = None,
) -> Integration:
    """Change an integration: `settings` and `secret_refs` are merged into what it has, the
    `unset_*` keys removed; the result is checked as `integrations add` checks a new one, and
    nothing is written when it is refused. The `config_change` row names `actor` (who) and
    `reason` (why, when given)."""
    store = store.scoped(organization_id)
    with store.transaction() as conn:
        current = _owned(conn, organization_id, integration_id)
        for kind, keys, have in (
            ("setting", unset_settings, current.settings),
            ("secret reference", unset_secrets, current.secret_refs),
        ):
            absent = [k for k in keys if k not in have]
            if absent:
                raise ConfigError(integration_id, f"has no {kind} {absent[0]!r} to unset")
        merged_settings = {**current.settings, **(settings or {})}
        merged_refs = {**current.secret_refs, **(secret_refs or {})}
        changed = dataclasses.replace(
            current,
            name=current.name if name is None else name,
            settings={k: v for k, v in merged_settings.items() if k not in unset_settings},
            secret_refs={k: v for k, v in merged_refs.items() if k not in unset_secrets},
            poll_interval_s=current.poll_interval_s if poll_interval_s is None else poll_interval_s,
            enabled=current.enabled if enabled is None else enabled,
        )
        # disabling is never refused: it is how a broken integration is stopped
        disabling_only = enabled is False and dataclasses.replace(current, enabled=False) == changed
        checked = changed if disabling_only else checked_integration(changed)
        save_integration(conn, checked)
        action = "update" if enabled is None else ("enable" if enabled else "disable")
        _record_config_change(
            store, conn, checked, action, _changed(current, checked), actor, reason
        )
        resumed = bool(enabled) and _resume_drift_pause(conn, checked, by=actor)
    if resumed:  # after the commit, as every alert is sent
        from sync_pipelines.sync.shape_drift import resolve_drift_alert

        resolve_drift_alert(store, checked, reason="resumed after a shape drift pause")
    return checked


def _resume_drift_pause(conn: Any, integration: Integration, *, by: str | None) -> bool:
    """Enabling an integration its shape drift policy paused accepts the change that paused it
    (sync/shape_drift.py): the next sync compares with the new shape."""
    from sync_pipelines.store.shapes import drift_pause
    from sync_pipelines.sync.shape_drift import accept_within

    if drift_pause(conn, integration.organization_id, integration.integration_id) is None:
        return False
    return bool(accept_within(conn, integration, by=by or "integrations enable"))


def remove_integration(
    store: Store, organization_id: str, integration_id: str, *, actor: str | None = None
) -> Integration:
    """Delete the integration's configuration. Its history — sync logs, activity rows, devices,
    dead letters, cursors — is kept under its id (an id added again later carries on from it),
    and the removal itself is an activity row."""
    store = store.scoped(organization_id)
    with store.transaction() as conn:
        current = _owned(conn, organization_id, integration_id)
        delete_integration(conn, organization_id, integration_id)
        _record_config_change(store, conn, current, "remove", [], actor)
    return current


def _owned(conn: Any, organization_id: str, integration_id: str) -> Integration:
    found = get_integration(conn, organization_id, integration_id)
    if found is None:
        raise ConfigError(
            integration_id, f"no such integration in organization {organization_id!r}"
        )
    return found


def _changed(before: Integration | None, after: Integration) -> list[str]:
    """Names of what changed (never values: the activity row must not carry configuration)."""
    if before is None:
        return [f"settings.{k}" for k in sorted(after.settings)]
    names = [
        f"settings.{k}"
        for k in sorted(set(before.settings) | set(after.settings))
        if before.settings.get(k) != after.settings.get(k)
    ]
    names += [
        f"secret_refs.{k}"
        for k in sorted(set(before.secret_refs) | set(after.secret_refs))
        if before.secret_refs.get(k) != after.secret_refs.get(k)
    ]
    names += [
        f
        for f in ("name", "provider", "enabled", "poll_interval_s")
        if getattr(before, f) != getattr(after, f)
    ]
    return names


def _record_config_change(
    store: Store,
    conn: Any,
    integration: Integration,
    action: str,
    changed: list[str],
    actor: str | None,
    reason: str | None = None,
) -> None:
    """One `config_change` activity row, in the transaction that made the change: what changed
    (names, never values), who changed it and, when given, why."""
    recorder = ActivityRecorder(
        NullSink(), ActivityScope(integration.organization_id, integration.integration_id)
    )
    row = recorder.new_row(
        CONFIG_CHANGE,
        status="success",
        metadata={
            "action": action,
            "provider": integration.provider,
            "changed": changed,
            "actor": actor,
            **({"reason": reason} if reason else {}),
        },
    )
    row.completed_at = row.created_at
    StoreActivitySink(store).insert_within(conn, [row])


def known_secrets(cls: type[Provider]) -> tuple[str, ...]:
    """The secret references an integration of provider `cls` may have."""
    return (*cls.required_secrets, *cls.optional_secrets, WEBHOOK_SECRET_REF)


def integration_settings(integration: Integration) -> IntegrationSettings:
    """The integration's typed settings (its provider's model); a ConfigError names a bad one."""
    cls = provider_class(integration.provider, integration.integration_id)
    return cls.settings_model.parse(integration.settings, integration.integration_id)


def resolve_config(
    integration: Integration, environ: Mapping[str, str] | None = None
) -> IntegrationConfig:
    """Check the integration's settings and secret references; read its secrets from the
    environment.

    Errors name the integration and the missing piece, so the activity row says what to fix.
    """
    environ = os.environ if environ is None else environ
    iid = integration.integration_id
    cls = provider_class(integration.provider, iid)
    settings = cls.settings_model.parse(integration.settings, iid)
    secrets: dict[str, str] = {}
    for secret in cls.required_secrets:
        env_name = integration.secret_refs.get(secret)
        if not env_name:
            raise ConfigError(
                iid,
                f"missing secret reference {secret!r}: set secret_refs.{secret} to the name of an environment variable",
            )
        value = environ.get(check_secret_ref(secret, env_name, iid))
        if not value:
            raise ConfigError(
                iid,
                f"secret {secret!r} expected in environment variable {env_name}, which is not set",
            )
        register_secret(value)
        secrets[secret] = value
    for secret in cls.optional_secrets:  # e.g. an AWS session token
        env_name = integration.secret_refs.get(secret)
        value = environ.get(check_secret_ref(secret, env_name, iid)) if env_name else None
        if value:
            register_secret(value)
            secrets[secret] = value
    return IntegrationConfig(
        integration_id=iid,
        organization_id=integration.organization_id,
        provider=integration.provider,
        settings=settings.stored(),
        secrets=secrets,
    )


class RecordingClients:
    """The `ProviderClients` of a sync: every client records its calls into `recorder` and
    retries them per `retry_policy` (the integration's `retry_*` settings; see
    observability.retrying)."""

    def __init__(
        self,
        recorder: ActivityRecorder,
        *,
        timeout_s: float = 30.0,
        retry_policy: RetryPolicy | None = None,
        provider: str | None = None,
        pacing: Pacing | None = None,
    ) -> None:
        self.recorder = recorder
        self._timeout_s = timeout_s
        self.retry_policy = retry_policy or RetryPolicy()
        self.provider = provider  # the metrics' provider label
        self.pacing = pacing  # the account's shared rate budget (HTTP clients; None: unpaced)

    @property
    def request_timeout_s(self) -> float:
        return self._timeout_s

    def http(self, base_url: str, headers: Mapping[str, str]) -> httpx.Client:
        return build_http_client(
            self.recorder,
            base_url=base_url,
            headers=headers,
            timeout_s=self._timeout_s,
            retry_policy=self.retry_policy,
            provider=self.provider,
            budget=self.pacing.budget_for(base_url) if self.pacing else None,
        )

    def lean_http(self, base_url: str, headers: Mapping[str, str]) -> LeanHttpClient | None:
        if not lean_serves(base_url):
            return None
        return LeanHttpClient(
            self.recorder,
            base_url=base_url,
            headers=headers,
            timeout_s=self._timeout_s,
            retry_policy=self.retry_policy,
            provider=self.provider,
            budget=self.pacing.budget_for(base_url) if self.pacing else None,
        )

    def boto(self, service_name: str, **client_kwargs: Any) -> Any:
        from sync_pipelines.observability.boto_recording import (
            build_boto_client,  # boto3 is slow to import
        )

        return build_boto_client(
            self.recorder,
            service_name,
            timeout_s=self._timeout_s,
            retry_policy=self.retry_policy,
            provider=self.provider,
            **client_kwargs,
        )

    def mqtt(self, endpoint: BrokerEndpoint, client_id: str, **options: Any) -> MqttConnection:
        from sync_pipelines.observability.mqtt_recording import (
            build_mqtt_connection,  # paho is only needed by MQTT syncs
        )

        return build_mqtt_connection(
            self.recorder, endpoint, client_id, retry_policy=self.retry_policy, **options
        )


def account_pacing(store: Store, integration: Integration) -> Pacing:
    """How the integration's calls are paced: by its provider account's budget in `store` (the
    account: provider, host, and the variable naming its credential) at its `rate_limit_rps`."""
    cls = provider_class(integration.provider, integration.integration_id)
    credential_ref = ",".join(integration.secret_refs.get(s, "") for s in cls.required_secrets)
    limit = integration_settings(integration).model_dump().get("rate_limit_rps")
    return Pacing(store, integration.provider, credential_ref, limit)


def open_provider(
    config: IntegrationConfig,
    recorder: ActivityRecorder,
    *,
    timeout_s: float = 30.0,
    pacing: Pacing | None = None,
) -> Provider:
    policy = RetryPolicy.from_settings(config.settings, config.integration_id)
    clients = RecordingClients(
        recorder, timeout_s=timeout_s, retry_policy=policy, provider=config.provider, pacing=pacing
    )
    return provider_class(config.provider, config.integration_id)(config, clients)
