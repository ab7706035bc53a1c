"""`sync_organization`: one run that syncs every enabled integration of an organization.

The provider jobs sync one integration per run (a partition). This job fans out instead: one
step lists the organization's enabled integrations, then one mapped step per integration runs
the same streams, through the same sync engine, as that provider's sync job (devices, their
state, and telemetry where the provider streams it). The steps are independent, so a
distributed executor (Celery, deploy/README.md) spreads them over its workers, and one failing
integration does not stop the others. Each step reports the materializations of the provider
assets it refreshed, so the asset catalogue stays true whichever job did the work.
"""

import hashlib
import re
from collections.abc import Callable, Iterator

import dagster as dg

from sync_pipelines.defs.provider_assets import TELEMETRY_PROVIDERS
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.retry import SYNC_RETRY_POLICY, fail_fast_unless_retryable
from sync_pipelines.defs.run_context import run_context_of
from sync_pipelines.defs.sentry_hooks import SENTRY_HOOKS
from sync_pipelines.store.integrations import find_integration_owner, list_integrations
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.sync.results import SyncResult
from sync_pipelines.sync.session import IntegrationSession, integration_session

Stream = Callable[[IntegrationSession], SyncResult]


class OrganizationSyncConfig(dg.Config):
    organization_id: str
    #: only these providers' integrations (e.g. ["golioth"]); empty = every provider
    providers: list[str] = []


@dg.op(
    out=dg.DynamicOut(str),
    description="The organization's enabled integrations (optionally of some providers), one output each.",
)
def enabled_integrations(
    context: dg.OpExecutionContext, config: OrganizationSyncConfig, store: SyncStoreResource
) -> Iterator[dg.DynamicOutput[str]]:
    with store.get_store().connect() as conn:
        integrations = [
            i
            for i in list_integrations(conn, config.organization_id)
            if i.enabled and (not config.providers or i.provider in config.providers)
        ]
    context.log.info(
        f"{len(integrations)} enabled integrations of {config.organization_id} to sync"
    )
    for integration in integrations:
        yield dg.DynamicOutput(
            integration.integration_id, mapping_key=mapping_key(integration.integration_id)
        )


@dg.op(
    retry_policy=SYNC_RETRY_POLICY,
    description="Sync one integration as its provider's sync job does: devices, their state, and "
    "telemetry where the provider streams it.",
)
def sync_integration(
    context: dg.OpExecutionContext, integration_id: str, store: SyncStoreResource
) -> None:
    sync_store = store.get_store()
    with sync_store.connect() as conn:
        integration = find_integration_owner(conn, integration_id)
    # a deleted integration still gets its first stream: the session fails it, recorded, at once
    provider = integration.provider if integration else None
    streams: list[Stream] = [sync_devices, sync_device_states]
    if provider in TELEMETRY_PROVIDERS:
        streams.append(_sync_telemetry)
    for stream in streams:
        with (
            fail_fast_unless_retryable(),
            integration_session(sync_store, integration_id, run_context_of(context)) as session,
        ):
            result = stream(session)
        context.log_event(
            dg.AssetMaterialization(
                asset_key=f"{provider}_{result.stream}",
                partition=integration_id,
                metadata=result.metadata(),
            )
        )


def _sync_telemetry(session: IntegrationSession) -> SyncResult:
    # imported late, as provider_assets does: only MQTT needs the broker client
    from sync_pipelines.sync.telemetry import sync_telemetry

    return sync_telemetry(session)


@dg.job(
    description="Sync every enabled integration of one organization in one run, one step per "
    "integration (config: organization_id, optional providers). With the Celery executor the "
    "steps run on several workers.",
    tags={"sync_pipelines/kind": "organization_sync"},
    hooks=SENTRY_HOOKS,  # the listing step opens no integration session
)
def sync_organization() -> None:
    enabled_integrations().map(sync_integration)


def mapping_key(integration_id: str) -> str:
    """A Dagster mapping key (letters, digits, `_`) naming the integration; ids that had to be
    rewritten get a hash suffix, so `golioth-a` and `golioth_a` stay distinct."""
    key = re.sub(r"[^A-Za-z0-9_]", "_", integration_id)
    if key == integration_id:
        return key
    return f"{key}_{hashlib.sha1(integration_id.encode()).hexdigest()[:8]}"
