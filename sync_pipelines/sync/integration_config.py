"""Turns a stored integration into a provider ready to call: validated settings, secrets
resolved from the environment (and registered for redaction), the recording clients."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from sync_pipelines.errors import ConfigError
from sync_pipelines.observability.activity import ActivityRecorder
from sync_pipelines.observability.http_recording import build_http_client
from sync_pipelines.observability.redaction import redact, register_secret
from sync_pipelines.observability.retrying import RetryPolicy
from sync_pipelines.providers.contract import IntegrationConfig, Provider
from sync_pipelines.providers.registry import provider_class
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import Integration, ensure_organization, save_integration

if TYPE_CHECKING:
    from sync_pipelines.providers.mqtt_client import BrokerEndpoint, MqttConnection


def register_integration(store: Store, integration: Integration) -> None:
    """Validate and save an integration (and its organization). The way in for every caller.

    Settings are stored in clear, so a secret-looking setting (an API key, a password inside a
    URL) is refused: secrets belong in environment variables named by `secret_refs`.
    """
    provider_class(integration.provider, integration.integration_id)
    leaked = sorted(k for k, v in integration.settings.items() if redact({k: v}) != {k: v})
    if leaked:
        raise ConfigError(
            integration.integration_id,
            f"setting(s) {', '.join(leaked)} contain a credential; store it in an environment variable "
            "and name that variable in secret_refs instead",
        )
    # bad retry_* settings are refused here, not at the first sync
    RetryPolicy.from_settings(integration.settings, integration.integration_id)
    with store.transaction() as conn:
        ensure_organization(conn, integration.organization_id)
        save_integration(conn, integration)


def resolve_config(
    integration: Integration, environ: Mapping[str, str] | None = None
) -> IntegrationConfig:
    """Check the integration has what its provider needs; read its secrets from the environment.

    Errors name the integration and the missing piece, so the activity row says what to fix.
    """
    environ = os.environ if environ is None else environ
    cls = provider_class(integration.provider, integration.integration_id)
    missing = [s for s in cls.required_settings if integration.settings.get(s) in (None, "")]
    if missing:
        raise ConfigError(
            integration.integration_id,
            f"missing setting(s) {', '.join(missing)} for provider {cls.name}",
        )
    secrets: dict[str, str] = {}
    for secret in cls.required_secrets:
        env_name = integration.secret_refs.get(secret)
        if not env_name:
            raise ConfigError(
                integration.integration_id,
                f"missing secret reference {secret!r}: set secret_refs.{secret} to the name of an environment variable",
            )
        value = environ.get(env_name)
        if not value:
            raise ConfigError(
                integration.integration_id,
                f"secret {secret!r} expected in environment variable {env_name}, which is not set",
            )
        register_secret(value)
        secrets[secret] = value
    for secret in cls.optional_secrets:  # e.g. an AWS session token
        env_name = integration.secret_refs.get(secret)
        value = environ.get(env_name) if env_name else None
        if value:
            register_secret(value)
            secrets[secret] = value
    return IntegrationConfig(
        integration_id=integration.integration_id,
        organization_id=integration.organization_id,
        provider=integration.provider,
        settings=dict(integration.settings),
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
    ) -> None:
        self.recorder = recorder
        self._timeout_s = timeout_s
        self.retry_policy = retry_policy or RetryPolicy()
        self.provider = provider  # the metrics' provider label

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


def open_provider(
    config: IntegrationConfig, recorder: ActivityRecorder, *, timeout_s: float = 30.0
) -> Provider:
    policy = RetryPolicy.from_settings(config.settings, config.integration_id)
    clients = RecordingClients(
        recorder, timeout_s=timeout_s, retry_policy=policy, provider=config.provider
    )
    return provider_class(config.provider, config.integration_id)(config, clients)
