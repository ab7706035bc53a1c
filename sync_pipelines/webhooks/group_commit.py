"""Group commit of the receiver's deliveries: the deliveries accepted while a commit runs share the
next transaction — one INSERT of their events, one of their activity rows, one COMMIT (one
fsync) — and each is answered only once that transaction is durable.

No timer: a batch starts as soon as a commit slot is free, with every delivery waiting by then
(at most `max_deliveries` of them, `max_events` rows). An idle receiver commits each delivery at
once; a busy one collects as many as arrive during a commit, so the rate of commits — about
1,000 a second one by one on a small Postgres — stops being the receiver's ceiling.

A batch that fails for a reason that may be one delivery's (a value or a constraint the database
refuses) is retried one delivery per transaction, so a bad delivery fails alone and the others
are stored. A store fault (connection lost, timeout) fails the whole batch at once: retrying
delivery by delivery against a dead store would only keep the senders waiting for their 503.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from sync_pipelines.observability.activity import ActivityRow
from sync_pipelines.store.database import Store, use_organization
from sync_pipelines.store.webhook_events import (
    WebhookEvent,
    insert_delivery_activities,
    insert_events,
)

Answer = TypeVar("Answer")

#: deliveries (and event rows) in one transaction at most: beyond a few hundred rows a bigger
#: batch saves nothing and only lengthens the wait of its first delivery
DEFAULT_MAX_DELIVERIES = 256
DEFAULT_MAX_EVENTS = 1000
#: transactions of one receiver process in flight at once: while one commits (waits on the
#: fsync) the next is written, so neither the process nor the disk waits for the other
DEFAULT_COMMITS_AT_ONCE = 2

#: failures of the store itself, not of a row: the whole batch fails at once
_STORE_FAULTS = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


@dataclass(slots=True)
class InboxDelivery(Generic[Answer]):
    """One delivery's share of a group commit: its inbox rows, and `settle`, which — given those
    of its rows that were new — returns its activity row (shaped, redacted) and its answer.
    Called inside the transaction, so the activity row says what the sender will be told, and
    in the delivery's own context (its request's span: the row carries its trace ids)."""

    events: list[WebhookEvent]  # at least one; all of the delivery's integration
    settle: Callable[[list[WebhookEvent]], tuple[ActivityRow, Answer]]
    context: contextvars.Context = field(default_factory=contextvars.copy_context)


@dataclass(slots=True)
class CommitStats:
    """What the committer has done: for tests, benches and logs."""

    batches: int = 0
    deliveries: int = 0
    largest_batch: int = 0
    retried_alone: int = 0


def write_deliveries(conn: Connection, deliveries: list[InboxDelivery[Answer]]) -> list[Answer]:
    """The deliveries' events and activity rows in the caller's transaction; their answers.

    Organization by organization: the transaction is switched to each one's scope before its
    rows (row-level security holds the service role to it, sql/026). An event key (integration,
    event id) that appears twice in the batch is new for its first delivery and a duplicate for
    the others, as if they had come one after the other."""
    by_organization: dict[str, list[int]] = {}
    for n, delivery in enumerate(deliveries):
        by_organization.setdefault(delivery.events[0].organization_id, []).append(n)
    answers: list[Answer | None] = [None] * len(deliveries)
    for organization_id, indexes in by_organization.items():
        use_organization(conn, organization_id)
        own = _write_one_organization(conn, [deliveries[n] for n in indexes])
        for n, answer in zip(indexes, own, strict=True):
            answers[n] = answer
    return answers  # type: ignore[return-value]


def _write_one_organization(
    conn: Connection, deliveries: list[InboxDelivery[Answer]]
) -> list[Answer]:
    rows: list[WebhookEvent] = []
    seen: set[tuple[str, str]] = set()
    for delivery in deliveries:
        for event in delivery.events:
            key = (event.integration_id, event.event_id)
            if key not in seen:
                seen.add(key)
                rows.append(event)
    inserted = insert_events(conn, rows) if rows else set()
    activity, answers = [], []
    for delivery in deliveries:
        values, answer = delivery.context.run(
            delivery.settle, [e for e in delivery.events if e.id in inserted]
        )
        activity.append(values)
        answers.append(answer)
    insert_delivery_activities(conn, activity)
    return answers


class GroupCommit(Generic[Answer]):
    """Deliveries of one event loop into shared transactions (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        max_events: int = DEFAULT_MAX_EVENTS,
        commits_at_once: int = DEFAULT_COMMITS_AT_ONCE,
    ) -> None:
        self.store = store
        self.max_deliveries = max_deliveries
        self.max_events = max_events
        self.commits_at_once = commits_at_once
        self.stats = CommitStats()
        self._waiting: deque[tuple[InboxDelivery[Answer], asyncio.Future[Answer]]] = deque()
        self._running = 0
        self._threads = anyio.CapacityLimiter(commits_at_once)
        self._tasks: set[asyncio.Task[None]] = set()

    async def write(self, delivery: InboxDelivery[Answer]) -> Answer:
        """The delivery's answer once its transaction is committed; raises the store's error
        (SQLAlchemyError) if it could not be."""
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((delivery, answer))
        self._start_batches()
        return await answer

    def _start_batches(self) -> None:
        while self._waiting and self._running < self.commits_at_once:
            batch = self._next_batch()
            if not batch:
                continue
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._commit(batch))
            self._tasks.add(task)  # held until done: the loop only keeps weak references
            task.add_done_callback(self._tasks.discard)

    def _next_batch(self) -> list[tuple[InboxDelivery[Answer], asyncio.Future[Answer]]]:
        batch: list[tuple[InboxDelivery[Answer], asyncio.Future[Answer]]] = []
        events = 0
        while self._waiting and len(batch) < self.max_deliveries:
            delivery, answer = self._waiting[0]
            if batch and events + len(delivery.events) > self.max_events:
                break
            self._waiting.popleft()
            if answer.done():  # the sender went away (request cancelled): nothing to store
                continue
            batch.append((delivery, answer))
            events += len(delivery.events)
        return batch

    async def _commit(
        self, batch: list[tuple[InboxDelivery[Answer], asyncio.Future[Answer]]]
    ) -> None:
        try:
            outcomes = await anyio.to_thread.run_sync(
                self._write_batch, [d for d, _ in batch], limiter=self._threads
            )
        except BaseException as exc:  # noqa: BLE001 - a bug or cancellation: every waiter hears it
            outcomes = [exc if isinstance(exc, Exception) else asyncio.CancelledError()] * len(
                batch
            )
        finally:
            self._running -= 1
        for (_, answer), outcome in zip(batch, outcomes, strict=True):
            if answer.done():
                continue
            if isinstance(outcome, asyncio.CancelledError):
                answer.cancel()
            elif isinstance(outcome, BaseException):
                answer.set_exception(outcome)
            else:
                answer.set_result(outcome)
        self._start_batches()

    def _write_batch(self, deliveries: list[InboxDelivery[Answer]]) -> list[Answer | Exception]:
        """In a worker thread: the batch in one transaction; if that fails for a reason that may
        be one delivery's, each delivery in its own."""
        self.stats.batches += 1
        self.stats.deliveries += len(deliveries)
        self.stats.largest_batch = max(self.stats.largest_batch, len(deliveries))
        try:
            with self.store.transaction() as conn:
                return list(write_deliveries(conn, deliveries))
        except sa_exc.SQLAlchemyError as exc:
            if len(deliveries) == 1 or _is_store_fault(exc):
                return [exc] * len(deliveries)
        self.stats.retried_alone += len(deliveries)
        outcomes: list[Answer | Exception] = []
        for delivery in deliveries:
            try:
                with self.store.transaction() as conn:
                    [answer] = write_deliveries(conn, [delivery])
            except sa_exc.SQLAlchemyError as exc:
                outcomes.append(exc)
            else:  # committed: only now is its answer true
                outcomes.append(answer)
        return outcomes


def _is_store_fault(exc: sa_exc.SQLAlchemyError) -> bool:
    return isinstance(exc, _STORE_FAULTS) or bool(getattr(exc, "connection_invalidated", False))
