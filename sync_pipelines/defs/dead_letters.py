"""Dead-letter replay in Dagster: the `replay_dead_letters` job (one integration per run) and the
`dead_letter_replay_sensor` that starts it for every integration with letters due."""

from datetime import datetime

import dagster as dg

from sync_pipelines.clock import utc_now
from sync_pipelines.defs.observed_sensors import observed
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.run_context import run_context_of
from sync_pipelines.defs.schedules import RUN_STATUSES_IN_FLIGHT
from sync_pipelines.defs.sentry_hooks import SENTRY_HOOKS
from sync_pipelines.store.dead_letters import DueSet, due_dead_letter_sets
from sync_pipelines.sync.replay import DEFAULT_LIMIT, REPLAYABLE_STREAMS
from sync_pipelines.sync.replay import replay_dead_letters as replay_letters
from sync_pipelines.sync.session import integration_session

INTEGRATION_TAG = "sync_pipelines/integration_id"
_OP = "replay_dead_letters_op"
#: a due set that stays exactly the same this long gets a new run key: its last run died before
#: claiming anything (a run that claims moves each letter's next attempt, which changes the key)
RUN_KEY_RETRY_S = 3600


class ReplayDeadLettersConfig(dg.Config):
    integration_id: str
    #: replay these letters (due or not, quarantined included) instead of the due ones
    ids: list[str] = []
    limit: int = DEFAULT_LIMIT


@dg.op(
    description="Replay one integration's due dead letters (or the given ids): resolve, retry with backoff, "
    "or quarantine each."
)
def replay_dead_letters_op(
    context: dg.OpExecutionContext, config: ReplayDeadLettersConfig, store: SyncStoreResource
) -> None:
    with integration_session(
        store.get_store(), config.integration_id, run_context_of(context)
    ) as session:
        result = replay_letters(session, ids=config.ids or None, limit=config.limit)
    summary = (
        f"replayed {result.counts.fetched} dead letter(s) of {config.integration_id}: "
        f"{result.resolved} resolved, {result.retrying} retrying, {result.quarantined} quarantined"
    )
    if result.counts.fetched and not result.resolved:
        # every letter failed again: the run says so (red), rather than green over nothing done
        raise dg.Failure(summary, metadata=result.metadata(), allow_retries=False)
    context.add_output_metadata(result.metadata())
    if result.counts.failed:
        context.log.warning(summary)
    else:
        context.log.info(summary)


@dg.job(
    description="Replay dead letters of one integration (config: integration_id, optional ids).",
    tags={"sync_pipelines/kind": "dead_letter_replay"},
    hooks=SENTRY_HOOKS,  # failures before the integration session opens, too
)
def replay_dead_letters() -> None:
    replay_dead_letters_op()


@dg.sensor(
    job=replay_dead_letters,
    description="Every minute, starts a replay run for each enabled integration with dead letters due "
    "(one run per integration and due set; none while one is still in flight).",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
@observed
def dead_letter_replay_sensor(
    context: dg.SensorEvaluationContext, store: SyncStoreResource
) -> dg.SensorResult | dg.SkipReason:
    now = utc_now()
    with store.get_store().connect() as conn:
        due = due_dead_letter_sets(conn, now=now, streams=REPLAYABLE_STREAMS)
    if not due:
        return dg.SkipReason("no dead letters are due")
    busy = _integrations_in_flight(context.instance)
    requests = [_run_request(d, now) for d in due if d.integration_id not in busy]
    if busy & {d.integration_id for d in due}:
        context.log.info(f"replay still in flight for: {', '.join(sorted(busy))}")
    if not requests:
        return dg.SkipReason("every integration with due dead letters has a replay in flight")
    return dg.SensorResult(run_requests=requests)


def run_key_of(due: DueSet, now: datetime) -> str:
    """The same due set gives the same key, so a tick never launches it twice."""
    newest_due = due.max_next_attempt_at.strftime("%Y%m%dT%H%M%S.%f")
    epoch = int(now.timestamp()) // RUN_KEY_RETRY_S
    return f"{due.integration_id}:{due.count}:{due.max_id}:{newest_due}:{epoch}"


def _run_request(due: DueSet, now: datetime) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=run_key_of(due, now),
        run_config={"ops": {_OP: {"config": {"integration_id": due.integration_id}}}},
        tags={
            INTEGRATION_TAG: due.integration_id,
            "sync_pipelines/organization_id": due.organization_id,
        },
    )


def _integrations_in_flight(instance: dg.DagsterInstance) -> set[str]:
    runs = instance.get_runs(
        filters=dg.RunsFilter(job_name=replay_dead_letters.name, statuses=RUN_STATUSES_IN_FLIGHT),
        limit=1000,
    )
    return {run.tags[INTEGRATION_TAG] for run in runs if INTEGRATION_TAG in run.tags}
