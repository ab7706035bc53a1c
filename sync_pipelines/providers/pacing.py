"""Pacing: one rate budget per provider account, shared by every thread, sync, process and host.

An account is provider + host + the credential's variable name (`Account`): what the provider
meters. Its budget is a row of the store (`rate_budgets`, store/rate_budgets.py) holding a
GCRA schedule — `next_at_s`, the moment the next unreserved request slot opens — the pace
(`rate_rps`), and a `Retry-After` pause (`paused_until_s`). A process leases slots in small
batches (`LEASE_S` of the pace: 5 at 50 req/s) with one compare-and-set, then hands them to its
threads locally (`RateBudget`, thread-safe), so the store is asked about ten times a second per
process, not per request, and slots of all processes never overlap.

The pace is additive-increase/multiplicative-decrease: a 429 multiplies it by `DECREASE` (once
per round: only a request sent after the last decrease can lower it again), and each second
without one adds a step — `FAST_STEP` of the ceiling while below 90 % of it, `PROBE_STEP`
above — up to the configured limit (`rate_limit_rps`), or, unset, on past the last ceiling, so
the budget finds the provider's limit from its 429s and keeps probing for more. Unset and never
refused, nothing is paced. A `Retry-After` pauses every user of the budget: the thread that got
it at once, the process's other threads at their next slot, other processes at their next
lease (within `LEASE_S`).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sync_pipelines.observability.logging import get_logger
from sync_pipelines.store.database import Store
from sync_pipelines.store.rate_budgets import BudgetRow, create_budget, read_budget, swap_budget

#: a lease covers this long at the current pace (10 % of a second's rate)
LEASE_S = 0.1
#: the pace after a 429, as a fraction of the pace that drew it
DECREASE = 0.7
#: added per second without a 429, as fractions of the ceiling: fast back to 90 % of it, then slow
FAST_STEP = 0.1
PROBE_STEP = 0.01
INCREASE_EVERY_S = 1.0
#: never paced slower than this (requests per second)
FLOOR_RPS = 0.5

_log = get_logger("pacing")


@dataclass(frozen=True, slots=True)
class Account:
    """What a provider meters: its host, and whose credential (the variable's name, never its
    value) the calls carry."""

    provider: str
    host: str
    credential_ref: str

    @classmethod
    def of(cls, provider: str, base_url: str, credential_ref: str) -> Account:
        return cls(provider, urlsplit(base_url).netloc.lower(), credential_ref)

    @property
    def key(self) -> str:
        return f"{self.provider}|{self.host}|{self.credential_ref}"


@dataclass(frozen=True, slots=True)
class Lease:
    """Request slots granted to one process: `count` at `interval_s` apart from `start_s`
    (`count` 0 and `unpaced_until_s` set: send freely until then)."""

    start_s: float
    interval_s: float
    count: int
    unpaced_until_s: float = 0.0


def new_budget(account: Account, limit_rps: float | None, now: float) -> BudgetRow:
    return BudgetRow(
        account=account.key,
        provider=account.provider,
        host=account.host,
        credential_ref=account.credential_ref,
        limit_rps=limit_rps,
        rate_rps=limit_rps,
        ceiling_rps=limit_rps,
        next_at_s=now,
        paused_until_s=0.0,
        decreased_at_s=0.0,
        increased_at_s=now,
        throttled_total=0,
        version=1,
    )


def take_lease(row: BudgetRow, now: float, limit_rps: float | None) -> tuple[BudgetRow, Lease]:
    """The row after this process leases its next batch, and the batch (see the module
    docstring): the configured limit applied, the pace raised if a second passed without a
    429, then `LEASE_S` worth of slots reserved from the schedule."""
    row = _with_limit(row, limit_rps)
    if row.rate_rps is None:  # nothing refused yet: unpaced, nothing to reserve
        return row, Lease(max(now, row.paused_until_s), 0.0, 0, now + LEASE_S)
    row = _raised(row, now, limit_rps)
    rate = row.rate_rps
    assert rate is not None
    count = max(1, round(rate * LEASE_S))
    start = max(now, row.next_at_s, row.paused_until_s)
    interval = 1.0 / rate
    return (
        dataclasses.replace(row, next_at_s=start + count * interval),
        Lease(start, interval, count),
    )


def throttled(
    row: BudgetRow,
    now: float,
    *,
    sent_at: float,
    retry_after_s: float | None,
    observed_rps: float,
    limit_rps: float | None,
) -> BudgetRow:
    """The row after a 429 to a request sent at `sent_at`: paused for `Retry-After`, and the pace
    multiplied by `DECREASE` unless it was lowered after that request left (its 429 answers the
    pace before). Unpaced until now, the pace that drew it is what this process sent in the
    last second (`observed_rps`)."""
    row = _with_limit(row, limit_rps)
    paused = row.paused_until_s
    if retry_after_s:
        paused = max(paused, now + retry_after_s)
    row = dataclasses.replace(row, paused_until_s=paused, throttled_total=row.throttled_total + 1)
    if sent_at < row.decreased_at_s:
        return row
    drew = row.rate_rps if row.rate_rps is not None else max(FLOOR_RPS, observed_rps)
    ceiling = row.ceiling_rps
    if limit_rps is None and (ceiling is None or drew >= 0.9 * ceiling):
        # refused near the last ceiling (or the first time): the limit is about here. Refused
        # well below it (a storm, a pause), the ceiling stays and the pace climbs back fast
        ceiling = drew
    return dataclasses.replace(
        row,
        rate_rps=max(FLOOR_RPS, drew * DECREASE),
        ceiling_rps=ceiling,
        decreased_at_s=now,
    )


def _with_limit(row: BudgetRow, limit_rps: float | None) -> BudgetRow:
    if limit_rps is None:
        return row if row.limit_rps is None else dataclasses.replace(row, limit_rps=None)
    rate = limit_rps if row.rate_rps is None else min(row.rate_rps, limit_rps)
    return dataclasses.replace(row, limit_rps=limit_rps, rate_rps=rate, ceiling_rps=limit_rps)


def _raised(row: BudgetRow, now: float, limit_rps: float | None) -> BudgetRow:
    rate, ceiling = row.rate_rps, row.ceiling_rps
    if (
        rate is None
        or ceiling is None
        # a second of sending since the last change, a pause not counted
        or now - max(row.decreased_at_s, row.increased_at_s, row.paused_until_s) < INCREASE_EVERY_S
    ):
        return row
    step = (FAST_STEP if rate < 0.9 * ceiling else PROBE_STEP) * ceiling
    raised = rate + step
    if limit_rps is not None:
        raised = min(raised, limit_rps)
    return dataclasses.replace(row, rate_rps=raised, increased_at_s=now)


class RateBudget:
    """This process's side of one account's budget: slots leased from the store row, handed to
    any thread that asks (`acquire`), and 429s reported back (`throttled`). Thread-safe: every
    thread of a process talking to the account shares one (`shared_budget`)."""

    def __init__(
        self,
        store: Store,
        account: Account,
        limit_rps: float | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.account = account
        self.limit_rps = limit_rps
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._slots: deque[float] = deque()
        self._unpaced_until = 0.0
        self._paused_until = 0.0
        #: when this process's recent requests left (the pace to cut from, while unpaced)
        self._sent: deque[float] = deque()
        #: store round trips, for the benchmark
        self.leases = 0

    def acquire(self) -> float:
        """Wait until one request may be sent; the moment it may (pass it to `throttled`)."""
        while True:
            with self._lock:
                now = self._clock()
                wait = self._paused_until - now
                slot = None
                if wait <= 0:
                    if now < self._unpaced_until:
                        return self._sending(now)
                    if not self._slots:
                        self._lease(now)
                        continue
                    slot = self._slots.popleft()  # this thread's: no other waits for it
                    if slot < now - LEASE_S:
                        continue  # unused while its lease lasted: sent now, it would be a burst
                    wait = slot - now
            if wait > 0:
                self._sleep(wait)
            if slot is not None:
                with self._lock:
                    now = self._clock()
                    if now >= self._paused_until:  # a pause since it was taken voids the slot
                        return self._sending(now)

    def throttled(self, sent_at: float, retry_after_s: float | None) -> None:
        """A request sent at `sent_at` was answered 429 (`retry_after_s`: the server's wait):
        every thread here stops at once, the store row tells the other processes."""
        with self._lock:
            now = self._clock()
            if retry_after_s:
                self._paused_until = max(self._paused_until, now + retry_after_s)
            self._slots.clear()  # leased at the old pace
            self._unpaced_until = 0.0
            observed = self._observed_rps(now)
            row = self._swap(
                lambda row: throttled(
                    row,
                    now,
                    sent_at=sent_at,
                    retry_after_s=retry_after_s,
                    observed_rps=observed,
                    limit_rps=self.limit_rps,
                )
            )
            self._paused_until = max(self._paused_until, row.paused_until_s)
        _log.info(
            "rate_budget_throttled",
            account=self.account.key,
            rate_rps=round(row.rate_rps, 2) if row.rate_rps is not None else None,
            ceiling_rps=round(row.ceiling_rps, 2) if row.ceiling_rps is not None else None,
            retry_after_s=retry_after_s,
        )

    def state(self) -> BudgetRow | None:
        """The account's row as stored now."""
        with self.store.connect() as conn:
            return read_budget(conn, self.account.key)

    # -- under the lock ------------------------------------------------------------------------

    def _sending(self, now: float) -> float:
        self._sent.append(now)
        while self._sent and self._sent[0] < now - 1.0:
            self._sent.popleft()
        return now

    def _observed_rps(self, now: float) -> float:
        # over the last second, or since the first send if that is sooner (a sync refused in
        # its first milliseconds was sending fast, not at a few requests a second)
        recent = [t for t in self._sent if t >= now - 1.0]
        return len(recent) / max(LEASE_S, now - recent[0]) if recent else 0.0

    def _lease(self, now: float) -> None:
        lease: Lease | None = None

        def change(row: BudgetRow) -> BudgetRow:
            nonlocal lease
            row, lease = take_lease(row, now, self.limit_rps)
            return row

        row = self._swap(change)
        assert lease is not None
        self._paused_until = max(self._paused_until, row.paused_until_s)
        if lease.count:
            self._slots.extend(lease.start_s + i * lease.interval_s for i in range(lease.count))
        else:
            self._unpaced_until = lease.unpaced_until_s

    def _swap(self, change: Callable[[BudgetRow], BudgetRow]) -> BudgetRow:
        """Read the row, change it, compare-and-set it (not written when unchanged: an unpaced
        lease only reads); again while another process won."""
        self.leases += 1
        while True:
            now = self._clock()
            with self.store.transaction() as conn:
                row = read_budget(conn, self.account.key)
                if row is None:
                    fresh = change(new_budget(self.account, self.limit_rps, now))
                    if create_budget(conn, fresh):
                        return fresh
                    continue
                changed = change(row)
                if changed == row:
                    return row
                if swap_budget(conn, changed, seen_version=row.version):
                    return dataclasses.replace(changed, version=row.version + 1)


_shared: dict[tuple[str, str, float | None], RateBudget] = {}
_shared_lock = threading.Lock()


def shared_budget(store: Store, account: Account, limit_rps: float | None) -> RateBudget:
    """The process's one budget object for `account` in `store` (every sync and thread of the
    process shares it; processes share the store row)."""
    key = (store.location, account.key, limit_rps)
    with _shared_lock:
        budget = _shared.get(key)
        if budget is None:
            budget = _shared[key] = RateBudget(store, account, limit_rps)
        return budget


@dataclass(frozen=True, slots=True)
class Pacing:
    """What a sync's clients pace by: the store holding the budgets, and the account minus its
    host (known once a client is built for a base URL)."""

    store: Store
    provider: str
    credential_ref: str
    limit_rps: float | None = None

    def budget_for(self, base_url: str) -> RateBudget:
        return shared_budget(
            self.store, Account.of(self.provider, base_url, self.credential_ref), self.limit_rps
        )
