"""Each integration is a dynamic partition of its provider's assets."""

import dagster as dg

golioth_integrations = dg.DynamicPartitionsDefinition(name="golioth_integrations")

#: provider name -> the partitions definition of that provider's assets
PROVIDER_PARTITIONS: dict[str, dg.DynamicPartitionsDefinition] = {
    "golioth": golioth_integrations,
}
