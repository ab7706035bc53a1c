"""Each integration is a dynamic partition of its provider's assets: one partitions
definition per registered provider, named `{provider}_integrations`."""

import dagster as dg

from sync_pipelines.providers.registry import PROVIDERS

#: provider name -> the partitions definition of that provider's assets
PROVIDER_PARTITIONS: dict[str, dg.DynamicPartitionsDefinition] = {
    provider: dg.DynamicPartitionsDefinition(name=f"{provider}_integrations")
    for provider in PROVIDERS
}

golioth_integrations = PROVIDER_PARTITIONS["golioth"]
