"""The webhook inbox in Dagster: `webhook_inbox_sensor` turns pending inbox events into
`process_webhook_inbox` runs, one integration and at most N events per run, at most M runs per
tick, each with a run key naming its batch (integration + first..last event row ids), so a
re-evaluated tick never starts a batch twice.

The cursor is the last event (received_at, id) covered by a run request. Events that commit
behind it (a slow receiver transaction) or whose run never ran or died are *overdue* after
`STALE_AFTER_S` and get one sweep run per integration per stale period. A run does not process
its batch by id: it claims the integration's oldest pending events, so the batch in the run key
is what triggered it, and a later run always picks up what an earlier one left.
"""

import json
import os
import time
from datetime import datetime, timedelta

import dagster as dg

from sync_pipelines.clock import utc_now
from sync_pipelines.defs.observed_sensors import observed
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.defs.run_context import run_context_of
from sync_pipelines.defs.sentry_hooks import SENTRY_HOOKS
from sync_pipelines.store.webhook_events import InboxPosition, overdue_events, pending_events_after
from sync_pipelines.sync.session import integration_session
from sync_pipelines.sync.webhook_processing import DEFAULT_LEASE_S, process_webhook_events

EVENTS_PER_RUN_ENV = "SYNC_WEBHOOK_EVENTS_PER_RUN"
RUNS_PER_TICK_ENV = "SYNC_WEBHOOK_RUNS_PER_TICK"
DEFAULT_EVENTS_PER_RUN = 200
DEFAULT_RUNS_PER_TICK = 10
STALE_AFTER_S = 300
OP_NAME = "process_webhook_events_op"


class WebhookInboxConfig(dg.Config):
    integration_id: str
    limit: int = DEFAULT_EVENTS_PER_RUN


@dg.op(
    name=OP_NAME,
    description="Apply the integration's oldest pending webhook events to devices and telemetry; "
    "events that cannot be applied are dead-lettered.",
)
def process_webhook_events_op(
    context: dg.OpExecutionContext, config: WebhookInboxConfig, store: SyncStoreResource
) -> None:
    with integration_session(
        store.get_store(), config.integration_id, run_context_of(context)
    ) as session:
        result = process_webhook_events(session, limit=config.limit)
    summary = ", ".join(f"{k}={v}" for k, v in result.metadata().items())
    if result.status == "partial":
        context.log.warning(
            f"webhook events of {config.integration_id}: {result.counts.failed} dead-lettered; {summary}"
        )
    else:
        context.log.info(f"webhook events of {config.integration_id}: {summary}")


@dg.job(
    description="Process one integration's pending webhook inbox events (config: integration_id, limit).",
    tags={"sync_pipelines/kind": "webhook_inbox"},
    hooks=SENTRY_HOOKS,
)
def process_webhook_inbox() -> None:
    process_webhook_events_op()


@dg.sensor(
    job=process_webhook_inbox,
    description="Starts a process_webhook_inbox run for each batch of pending webhook events "
    "(bounded per run and per tick), and a sweep for events left pending too long.",
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
@observed
def webhook_inbox_sensor(
    context: dg.SensorEvaluationContext, store: SyncStoreResource
) -> dg.SensorResult:
    per_run = _env_int(EVENTS_PER_RUN_ENV, DEFAULT_EVENTS_PER_RUN)
    max_runs = _env_int(RUNS_PER_TICK_ENV, DEFAULT_RUNS_PER_TICK)
    cursor, now = _parse_cursor(context.cursor), utc_now()
    with store.get_store().connect() as conn:
        fresh = pending_events_after(conn, cursor, limit=per_run * max_runs)
        overdue = overdue_events(
            conn,
            received_before=now - timedelta(seconds=STALE_AFTER_S),
            claimed_before=now - timedelta(seconds=DEFAULT_LEASE_S),
            limit=per_run * max_runs,
        )
    requests, last = plan_batches(fresh, per_run=per_run, max_runs=max_runs)
    covered = {r.tags["integration_id"] for r in requests}
    requests += plan_sweeps(
        overdue,
        skip=covered,
        per_run=per_run,
        max_runs=max_runs - len(requests),
        period=int(time.time() // STALE_AFTER_S),
    )
    if requests:
        context.log.info(
            f"webhook inbox: {len(requests)} run(s) for {len(fresh)} new and {len(overdue)} overdue event(s)"
        )
    new_cursor = _format_cursor(last) if last else context.cursor
    return dg.SensorResult(run_requests=requests, cursor=new_cursor)


def plan_batches(
    events: list[InboxPosition], *, per_run: int, max_runs: int
) -> tuple[list[dg.RunRequest], InboxPosition | None]:
    """Events in inbox order → batches of ≤ per_run events of one integration, ≤ max_runs of them.

    Returns the run requests and the last event covered (the new cursor): an event past the
    run budget stops the planning, so nothing behind the cursor is left uncovered."""
    batches: list[list[InboxPosition]] = []
    open_batch: dict[str, list[InboxPosition]] = {}
    last = None
    for event in events:
        batch = open_batch.get(event.integration_id)
        if batch is None or len(batch) >= per_run:
            if len(batches) >= max_runs:
                break
            batch = open_batch[event.integration_id] = []
            batches.append(batch)
        batch.append(event)
        last = event
    requests = [_request(b[0].integration_id, f"{b[0].id}..{b[-1].id}", per_run) for b in batches]
    return requests, last


def plan_sweeps(
    events: list[InboxPosition], *, skip: set[str], per_run: int, max_runs: int, period: int
) -> list[dg.RunRequest]:
    """One run per integration with overdue events (not already given a batch this tick); the
    run key carries the stale period, so a still-stuck event is swept again next period."""
    groups: dict[str, list[InboxPosition]] = {}
    for event in events:
        if event.integration_id not in skip:
            groups.setdefault(event.integration_id, []).append(event)
    requests = []
    for integration_id, group in list(groups.items())[: max(0, max_runs)]:
        batch = f"overdue:{group[0].id}..{group[-1].id}@{period}"
        requests.append(_request(integration_id, batch, per_run))
    return requests


def _request(integration_id: str, batch: str, limit: int) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=f"{integration_id}:{batch}",
        run_config={
            "ops": {OP_NAME: {"config": {"integration_id": integration_id, "limit": limit}}}
        },
        tags={"integration_id": integration_id, "webhook_batch": batch},
    )


def _parse_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    value = json.loads(cursor)
    return datetime.fromisoformat(value["received_at"]), value["id"]


def _format_cursor(event: InboxPosition) -> str:
    return json.dumps({"received_at": event.received_at.isoformat(), "id": event.id})


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return max(1, int(value)) if value else default
