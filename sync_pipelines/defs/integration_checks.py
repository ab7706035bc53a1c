"""Asset checks of every integration, on its provider's `{provider}_devices` asset.

One `@multi_asset_check` per provider (`{provider}_integration_checks`), one spec per check of
`checks/integration_checks.py`, partitioned like the asset (partition = integration id). A sync
job selects the devices asset, and Dagster adds the checks targeting a selected asset to the
job, so they run after the devices step of every sync, evaluate that run's integration, and
report each evaluation under its partition. No check is blocking: a failed check is a signal,
not a stop. Every evaluation is also written to `integration_check_results` with the run id,
since a failed check does not fail its run and the alert sensor reads failures there.

A sync that fails never reaches its checks, and an integration that stops syncing has none:
`failed_or_stale_syncs_sensor` evaluates those integrations outside any run and reports the
evaluations to the event log under the integration's partition (`report_check_evaluations`). It
is also the stale-sync sensor: first it closes, as `abandoned`, syncs whose process died (lease
expired), and reports their runs failed.
"""

import uuid
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime

import dagster as dg

from sync_pipelines.checks.due import check_due_reason
from sync_pipelines.checks.integration_checks import CHECKS, check_integration
from sync_pipelines.checks.outcome import CheckOutcome
from sync_pipelines.clock import utc_now
from sync_pipelines.defs.observed_sensors import observed
from sync_pipelines.defs.provider_assets import PROVIDER_DEFS, ProviderDefs
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.store.database import Store, use_organization
from sync_pipelines.store.integrations import (
    Integration,
    find_integration_owner,
    list_enabled_integrations,
)
from sync_pipelines.store.sync_leases import runs_known_dead
from sync_pipelines.sync.stream_lease import close_abandoned_syncs

#: integrations the sensor evaluates per tick; the rest are still due at the next tick
MAX_INTEGRATIONS_PER_TICK = 50
#: STARTED runs looked at per tick for a dead sync
MAX_RUNS_PER_TICK = 500


def _metadata(outcome: CheckOutcome) -> dict[str, int | float]:
    """The figures Dagster plots; a figure with nothing to measure (None) is left out."""
    return {k: v for k, v in outcome.metadata.items() if v is not None}


def check_result_of(asset_key: dg.AssetKey, outcome: CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity(outcome.severity),
        description=outcome.description,
        metadata=_metadata(outcome),
    )


def check_evaluation_of(
    asset_key: dg.AssetKey, outcome: CheckOutcome, partition: str
) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity(outcome.severity),
        description=outcome.description,
        metadata=_metadata(outcome),
        blocking=False,
        partition=partition,
    )


def report_check_evaluations(
    instance: dg.DagsterInstance, evaluations: Sequence[dg.AssetCheckEvaluation]
) -> str | None:
    """Store evaluations made outside any run, each as a new execution of its check and partition;
    returns the evaluation id they share (None: there were none).

    Not through `SensorResult(asset_events=...)` / `report_runless_asset_event`: Dagster 1.13
    stores those under run id "" and keys `asset_check_executions` UNIQUE on (asset, check, run
    id, partition), so a partition's second runless evaluation failed the tick (`UNIQUE
    constraint failed`, SQLite and Postgres alike). Under an id of their own, each evaluation is
    a new row, the partition's latest status is the newest evaluation (Dagster reads the highest
    row id) and the history stays whole. The id names no run, so the UI links to none.
    """
    if not evaluations:
        return None
    keys = [(e.asset_key, e.check_name, e.partition) for e in evaluations]
    if len(set(keys)) != len(keys):  # they would collide on the same UNIQUE key
        raise ValueError(f"a check and partition evaluated twice in one report: {keys}")
    evaluation_id = str(uuid.uuid4())
    for evaluation in evaluations:
        instance.report_dagster_event(
            dg.DagsterEvent(
                event_type_value=dg.DagsterEventType.ASSET_CHECK_EVALUATION.value,
                event_specific_data=evaluation,
                job_name="",  # as Dagster's runless events: no job
            ),
            run_id=evaluation_id,
        )
    return evaluation_id


def build_integration_checks(provider_defs: ProviderDefs) -> dg.AssetChecksDefinition:
    devices = provider_defs.devices
    with warnings.catch_warnings():
        # partitioned check specs are "preview" in dagster 1.13; without them every integration's
        # evaluation would overwrite the others' as the asset's one check status
        warnings.simplefilter("ignore", dg.PreviewWarning)
        specs = [
            dg.AssetCheckSpec(
                check.name,
                asset=devices,
                description=check.description,
                partitions_def=devices.partitions_def,
                blocking=False,
            )
            for check in CHECKS
        ]

    @dg.multi_asset_check(
        name=f"{provider_defs.provider}_integration_checks",
        specs=specs,
        description=f"Health and data quality of one {provider_defs.provider} integration "
        "(partition = integration id), after its inventory sync.",
    )
    def integration_checks(
        context: dg.AssetCheckExecutionContext, store: SyncStoreResource
    ) -> Iterator[dg.AssetCheckResult]:
        sync_store = store.get_store()
        integration = _integration_of(sync_store, context.partition_key)
        try:
            outcomes = check_integration(
                sync_store, integration, now=utc_now(), run_id=context.run.run_id
            )
        except ValueError as exc:  # an unusable `monitoring` setting: time will not fix it
            raise dg.Failure(str(exc), allow_retries=False) from exc
        for outcome in outcomes:
            yield check_result_of(devices.key, outcome)

    return integration_checks


def _integration_of(store: Store, integration_id: str) -> Integration:
    with store.connect() as conn:
        integration = find_integration_owner(conn, integration_id)
    if integration is None:
        raise dg.Failure(
            f"no integration {integration_id!r} to check (deleted? see `sync-pipelines integrations list`)",
            allow_retries=False,
        )
    return integration


#: provider name -> the checks on its devices asset
CHECKS_BY_PROVIDER: dict[str, dg.AssetChecksDefinition] = {
    provider: build_integration_checks(defs) for provider, defs in PROVIDER_DEFS.items()
}
INTEGRATION_CHECKS: list[dg.AssetChecksDefinition] = list(CHECKS_BY_PROVIDER.values())


def fail_dead_runs(instance: dg.DagsterInstance, store: Store, now: datetime) -> list[str]:
    """STARTED runs the store knows are dead (a sync lease expired in the run's name, or a sync
    of it closed `abandoned`) are reported failed, as run monitoring would only at their max
    runtime: the default run launcher cannot check a worker's health, and until then a dead run
    holds its integration's run slot in the queue. Returns the run ids reported."""
    started = instance.get_runs(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]), limit=MAX_RUNS_PER_TICK
    )
    if not started:
        return []
    with store.connect() as conn:
        dead = runs_known_dead(conn, [run.run_id for run in started], now=now)
    for run in started:
        if run.run_id in dead:
            instance.report_run_failed(
                run, "its sync's process died (no lease heartbeat for a TTL): see the sync log"
            )
    return [run.run_id for run in started if run.run_id in dead]


@dg.sensor(
    description="Evaluates an integration's checks where no sync run does: after a sync that failed "
    "(a run's checks follow the devices step, which a failure skips) and when no check has run "
    "for a freshness SLA (an integration that stopped syncing). Evaluations go to the event log "
    "(outside any run, under the integration's partition) and to integration_check_results. Closes "
    "syncs whose process died (lease expired) as abandoned first, and reports their runs failed.",
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
@observed
def failed_or_stale_syncs_sensor(
    context: dg.SensorEvaluationContext, store: SyncStoreResource
) -> dg.SkipReason:
    now, sync_store = utc_now(), store.get_store()
    # syncs whose process died are closed first (as `abandoned`, a failure), so their
    # integrations' checks are due in this same tick
    abandoned = close_abandoned_syncs(sync_store, now)
    if abandoned:
        context.log.warning(f"closed {len(abandoned)} abandoned sync(s): {', '.join(abandoned)}")
    for run_id in fail_dead_runs(context.instance, sync_store, now):
        context.log.warning(f"run {run_id} reported failed: its sync's process died")
    due: list[tuple[Integration, str]] = []
    with sync_store.connect() as conn:
        # system-level scan across tenants: each integration is then handled with its own org
        for integration in list_enabled_integrations(conn):
            if len(due) >= MAX_INTEGRATIONS_PER_TICK:
                break
            if integration.provider not in PROVIDER_DEFS:
                continue
            try:
                use_organization(conn, integration.organization_id)
                reason = check_due_reason(conn, integration, now=now)
            except ValueError as exc:
                context.log.error(f"integration {integration.integration_id!r}: {exc}")
                continue
            if reason:
                due.append((integration, reason))
    events: list[dg.AssetCheckEvaluation] = []
    for integration, reason in due:
        outcomes = check_integration(sync_store, integration, now=now, run_id=None)
        asset_key = PROVIDER_DEFS[integration.provider].devices.key
        events += [check_evaluation_of(asset_key, o, integration.integration_id) for o in outcomes]
        failing = [o.name for o in outcomes if not o.passed]
        context.log.info(
            f"checked {integration.integration_id} ({reason}): "
            + (f"failing {', '.join(failing)}" if failing else "all passed")
        )
    if not events:
        return dg.SkipReason("no integration has a failed sync or a stale check to evaluate")
    evaluation_id = report_check_evaluations(context.instance, events)
    # the sensor starts no runs: what it did is the tick's message
    return dg.SkipReason(
        f"evaluated {len(due)} integration(s) outside any run ({len(events)} check "
        f"evaluations, id {evaluation_id})"
    )
