"""Schedules: poll each enabled integration when its poll interval has elapsed."""

from datetime import datetime, timedelta

import dagster as dg

from sync_pipelines.clock import utc_now
from sync_pipelines.defs.partitions import PROVIDER_PARTITIONS
from sync_pipelines.defs.provider_assets import PROVIDER_DEFS, PROVIDER_LABELS
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.store.integrations import list_enabled_integrations
from sync_pipelines.store.sync_state import last_sync_started_at
from sync_pipelines.sync.inventory import STREAM as DEVICES_STREAM


def due_integration_ids(store: SyncStoreResource, provider: str) -> list[str]:
    """Enabled integrations of `provider` whose last sync started a poll interval ago or more."""
    now = utc_now()
    due = []
    with store.get_store().connect() as conn:
        for integ in list_enabled_integrations(conn, provider):
            last = last_sync_started_at(
                conn, integ.organization_id, integ.integration_id, DEVICES_STREAM
            )
            if last is None or now - last >= timedelta(seconds=integ.poll_interval_s):
                due.append(integ.integration_id)
    return due


def build_poll_schedule(provider: str) -> dg.ScheduleDefinition:
    label = PROVIDER_LABELS.get(provider, (provider,))[0]
    partitions_name = PROVIDER_PARTITIONS[provider].name

    @dg.schedule(
        name=f"{provider}_poll_schedule",
        job=PROVIDER_DEFS[provider].sync_job,
        cron_schedule="* * * * *",
        description=f"Every minute, start a sync for each enabled {label} integration whose poll interval has elapsed.",
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
    def poll(
        context: dg.ScheduleEvaluationContext, store: SyncStoreResource
    ) -> list[dg.RunRequest] | dg.SkipReason:
        due = due_integration_ids(store, provider)
        known = set(context.instance.get_dynamic_partitions(partitions_name))
        due = [i for i in due if i in known]  # the partitions sensor adds new ones within a minute
        if not due:
            return dg.SkipReason(f"no {label} integration is due")
        tick = tick_time(context).strftime("%Y%m%dT%H%M")
        return [dg.RunRequest(run_key=f"{iid}:{tick}", partition_key=iid) for iid in due]

    return poll


#: provider name -> its poll schedule
POLL_SCHEDULES: dict[str, dg.ScheduleDefinition] = {
    p: build_poll_schedule(p) for p in PROVIDER_DEFS
}
golioth_poll_schedule = POLL_SCHEDULES["golioth"]


def tick_time(context: dg.ScheduleEvaluationContext) -> datetime:
    """The tick's time; for a direct evaluation (tests, notebooks) the current minute, so
    run keys stay unique per minute instead of colliding on a fixed fallback."""
    try:
        return context.scheduled_execution_time
    except Exception as exc:  # dagster raises its (private) CheckError when no time was set
        if type(exc).__name__ == "CheckError":
            return utc_now()
        raise
