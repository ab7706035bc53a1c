"""Which class implements which provider name. A new provider is one line here plus its module.

Classes are imported on first use, so a Golioth sync never pays for importing boto3 or paho.
"""

from __future__ import annotations

from importlib import import_module

from sync_pipelines.errors import ConfigError
from sync_pipelines.providers.contract import Provider

#: provider name -> "module:Class" of its implementation
PROVIDERS: dict[str, str] = {
    "golioth": "sync_pipelines.providers.golioth:GoliothProvider",
    "aws_iot": "sync_pipelines.providers.aws_iot:AwsIotProvider",
    "azure_iot": "sync_pipelines.providers.azure_iot:AzureIotProvider",
    "mqtt": "sync_pipelines.providers.mqtt:MqttProvider",
}


def provider_class(provider: str, integration_id: str | None = None) -> type[Provider]:
    try:
        target = PROVIDERS[provider]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigError(
            integration_id, f"unknown provider {provider!r} (known: {known})"
        ) from None
    module_name, _, class_name = target.partition(":")
    return getattr(import_module(module_name), class_name)
