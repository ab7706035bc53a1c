"""Which class implements which provider name. A new provider is one line here plus its module."""

from __future__ import annotations

from sync_pipelines.errors import ConfigError
from sync_pipelines.providers.contract import Provider
from sync_pipelines.providers.golioth import GoliothProvider

PROVIDERS: dict[str, type[Provider]] = {
    GoliothProvider.name: GoliothProvider,
}


def provider_class(provider: str, integration_id: str | None = None) -> type[Provider]:
    try:
        return PROVIDERS[provider]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigError(integration_id, f"unknown provider {provider!r} (known: {known})") from None
