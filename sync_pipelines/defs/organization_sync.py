"""`sync_organization`: sync every enabled integration of an organization, each as its provider's
sync job does, because each *is* a run of that job.

Launching `sync_organization` (config: `organization_id`, optional `providers`) only lists the
integrations it stands for. When it succeeds, `organization_sync_sensor` launches one run of
each integration's provider sync job for its partition. So an organization's syncs are ordinary
provider runs: tagged `provider` and `dagster/partition` (the run queue's per-provider and
per-integration limits, deploy/dagster.yaml, and the poll schedule's in-flight check see them),
their steps in the provider's concurrency pool, the integration's asset checks run after the
devices step, and one failing integration fails only its own run. Each launched run is tagged
with the organization run's id (`ORGANIZATION_RUN_TAG`), so the UI lists them together; its run
key makes a second evaluation of the same organization run launch nothing twice.
"""

from collections.abc import Sequence

import dagster as dg

from sync_pipelines.defs.observed_sensors import observed
from sync_pipelines.defs.partitions import PROVIDER_PARTITIONS
from sync_pipelines.defs.provider_assets import PROVIDER_DEFS
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.sentry_hooks import SENTRY_HOOKS
from sync_pipelines.store.integrations import Integration, list_integrations

#: on every provider run launched for an organization sync: the id of that `sync_organization` run
ORGANIZATION_RUN_TAG = "sync_pipelines/organization_sync_run"
LISTING_OP = "list_organization_integrations"


class OrganizationSyncConfig(dg.Config):
    organization_id: str
    #: only these providers' integrations (e.g. ["golioth"]); empty = every provider
    providers: list[str] = []


def integrations_to_sync(
    store: SyncStoreResource, config: OrganizationSyncConfig
) -> list[Integration]:
    """The organization's enabled integrations of the chosen providers that have a sync job."""
    with store.get_store().scoped(config.organization_id).connect() as conn:
        integrations = list_integrations(conn, config.organization_id)
    return [
        i
        for i in integrations
        if i.enabled
        and i.provider in PROVIDER_DEFS
        and (not config.providers or i.provider in config.providers)
    ]


@dg.op(
    name=LISTING_OP,
    description="The organization's enabled integrations (optionally of some providers) that "
    "organization_sync_sensor will launch a provider sync run for.",
)
def list_organization_integrations(
    context: dg.OpExecutionContext, config: OrganizationSyncConfig, store: SyncStoreResource
) -> None:
    unknown = sorted(set(config.providers) - set(PROVIDER_DEFS))
    if unknown:
        raise dg.Failure(
            f"unknown providers {', '.join(unknown)}; choose from {', '.join(sorted(PROVIDER_DEFS))}",
            allow_retries=False,
        )
    integrations = integrations_to_sync(store, config)
    context.log.info(
        f"{len(integrations)} enabled integrations of {config.organization_id} to sync: "
        + (", ".join(f"{i.integration_id} ({i.provider})" for i in integrations) or "none")
    )


@dg.job(
    description="Sync every enabled integration of one organization (config: organization_id, "
    "optional providers): once this run succeeds, organization_sync_sensor launches one run of "
    "each integration's provider sync job, under that provider's limits and with its checks.",
    tags={"sync_pipelines/kind": "organization_sync"},
    hooks=SENTRY_HOOKS,
)
def sync_organization() -> None:
    list_organization_integrations()


def sync_requests(
    organization_run: dg.DagsterRun, integrations: Sequence[Integration]
) -> list[dg.RunRequest]:
    """One provider sync run per integration, for its partition."""
    return [
        dg.RunRequest(
            run_key=f"{organization_run.run_id}:{i.integration_id}",
            job_name=PROVIDER_DEFS[i.provider].sync_job.name,
            partition_key=i.integration_id,
            tags={ORGANIZATION_RUN_TAG: organization_run.run_id},
        )
        for i in integrations
    ]


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[sync_organization],
    request_jobs=[p.sync_job for p in PROVIDER_DEFS.values()],
    description="When a sync_organization run succeeds, launches one run of each listed "
    "integration's provider sync job for its partition (adding a partition the partitions "
    "sensor has not added yet).",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
@observed
def organization_sync_sensor(
    context: dg.RunStatusSensorContext, store: SyncStoreResource
) -> dg.SensorResult | dg.SkipReason:
    run = context.dagster_run
    config = OrganizationSyncConfig(**run.run_config["ops"][LISTING_OP]["config"])
    integrations = integrations_to_sync(store, config)
    if not integrations:
        return dg.SkipReason(f"{config.organization_id} has no enabled integration to sync")
    new_partitions = []
    for provider, partitions in PROVIDER_PARTITIONS.items():
        wanted = {i.integration_id for i in integrations if i.provider == provider}
        missing = sorted(wanted - set(context.instance.get_dynamic_partitions(partitions.name)))
        if missing:
            new_partitions.append(partitions.build_add_request(missing))
    return dg.SensorResult(
        run_requests=sync_requests(run, integrations), dynamic_partitions_requests=new_partitions
    )
