"""Schedules: poll each enabled integration when its poll interval has elapsed and no sync of it
is already queued or running.

A run whose worker died stays STARTED: the default run launcher has no worker health check, so
Dagster's run monitoring fails it only at `max_runtime_seconds`. The schedule does not wait that
long: a STARTED run whose sync is known dead in the store (a lease held in its name expired, or
its sync was closed `abandoned`) no longer holds its integration, so a dead run holds it back at
most one lease TTL (SYNC_LEASE_TTL_S) plus a tick.
"""

from collections.abc import Iterable
from datetime import datetime

import dagster as dg

from sync_pipelines.clock import utc_now
from sync_pipelines.defs.partitions import PROVIDER_PARTITIONS
from sync_pipelines.defs.provider_assets import PROVIDER_DEFS, PROVIDER_LABELS
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.store.database import use_organization
from sync_pipelines.store.integrations import list_enabled_integrations
from sync_pipelines.store.sync_leases import runs_known_dead
from sync_pipelines.store.sync_state import last_sync_started_at
from sync_pipelines.sync.inventory import STREAM as DEVICES_STREAM
from sync_pipelines.sync.polling import poll_due

#: the tag Dagster puts on every run of a partition (dagster._core.storage.tags.PARTITION_NAME_TAG)
PARTITION_TAG = "dagster/partition"
#: a run in one of these still holds its integration: queued behind the run coordinator's limits,
#: or launched and not finished
RUN_STATUSES_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def due_integration_ids(store: SyncStoreResource, provider: str) -> list[str]:
    """Enabled integrations of `provider` whose last sync started a poll interval ago or more."""
    now = utc_now()
    due = []
    with store.get_store().connect() as conn:
        for integ in list_enabled_integrations(conn, provider):
            use_organization(conn, integ.organization_id)
            last = last_sync_started_at(
                conn, integ.organization_id, integ.integration_id, DEVICES_STREAM
            )
            if poll_due(last, integ.poll_interval_s, now):
                due.append(integ.integration_id)
    return due


def partitions_with_runs_in_flight(
    instance: dg.DagsterInstance,
    job_name: str,
    partition_keys: Iterable[str],
    store: SyncStoreResource | None = None,
) -> set[str]:
    """Those of `partition_keys` that already have a run of `job_name` queued or running. With
    the `store`, a STARTED run whose sync is known dead there (`dead_runs`) does not count."""
    keys = list(partition_keys)
    if not keys:
        return set()
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            job_name=job_name, statuses=RUN_STATUSES_IN_FLIGHT, tags={PARTITION_TAG: keys}
        )
    )
    dead = dead_runs(store, runs) if store is not None else set()
    return {run.tags[PARTITION_TAG] for run in runs if run.run_id not in dead} & set(keys)


def dead_runs(store: SyncStoreResource, runs: Iterable[dg.DagsterRun]) -> set[str]:
    """The ids of those STARTED `runs` whose sync the store knows dead: a lease held in the run's
    name expired (no heartbeat for a TTL), or its sync was closed `abandoned`. Dagster still says
    STARTED because the default run launcher cannot check a run worker's health."""
    started = [run.run_id for run in runs if run.status == dg.DagsterRunStatus.STARTED]
    if not started:
        return set()
    with store.get_store().connect() as conn:
        return runs_known_dead(conn, started, now=utc_now())


def build_poll_schedule(provider: str) -> dg.ScheduleDefinition:
    label = PROVIDER_LABELS.get(provider, (provider,))[0]
    partitions_name = PROVIDER_PARTITIONS[provider].name
    sync_job = PROVIDER_DEFS[provider].sync_job

    @dg.schedule(
        name=f"{provider}_poll_schedule",
        job=sync_job,
        cron_schedule="* * * * *",
        description=f"Every minute, start a sync for each enabled {label} integration whose poll "
        "interval has elapsed, unless a sync of it is still queued or running.",
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
    def poll(
        context: dg.ScheduleEvaluationContext, store: SyncStoreResource
    ) -> list[dg.RunRequest] | dg.SkipReason:
        due = due_integration_ids(store, provider)
        known = set(context.instance.get_dynamic_partitions(partitions_name))
        due = [i for i in due if i in known]  # the partitions sensor adds new ones within a minute
        # a run queued longer than a poll interval (the run coordinator's limits) must not get a twin
        in_flight = partitions_with_runs_in_flight(context.instance, sync_job.name, due, store)
        due = [i for i in due if i not in in_flight]
        held = f"due, but a sync is still queued or running: {', '.join(sorted(in_flight))}"
        if not due:
            if in_flight:
                return dg.SkipReason(f"no {label} integration to start ({held})")
            return dg.SkipReason(f"no {label} integration is due")
        if in_flight:
            context.log.info(f"{label} integrations left out, {held}")
        tick = tick_time(context).strftime("%Y%m%dT%H%M")
        return [dg.RunRequest(run_key=f"{iid}:{tick}", partition_key=iid) for iid in due]

    return poll


#: provider name -> its poll schedule
POLL_SCHEDULES: dict[str, dg.ScheduleDefinition] = {
    p: build_poll_schedule(p) for p in PROVIDER_DEFS
}
golioth_poll_schedule = POLL_SCHEDULES["golioth"]


def tick_time(context: dg.ScheduleEvaluationContext) -> datetime:
    """The tick's time; for a direct evaluation (tests, notebooks, `dagster schedule preview`) the
    current minute, so run keys stay unique per minute instead of colliding on a fixed fallback."""
    try:
        return context.scheduled_execution_time
    except Exception:  # noqa: BLE001
        # The property's one failure: no time was set. Dagster raises an internal error class
        # for it, which is no API to match on; nothing else happens in a property read.
        return utc_now()
