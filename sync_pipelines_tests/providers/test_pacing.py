"""The shared rate budget (providers/pacing.py) on a real store, SQLite and Postgres, with a
simulated clock: two budget objects on one store stand for two processes (each has its own
local bucket and shares only the row)."""

from __future__ import annotations

import threading

import pytest

from sync_pipelines.errors import ConfigError
from sync_pipelines.providers.pacing import (
    DECREASE,
    FLOOR_RPS,
    Account,
    RateBudget,
    shared_budget,
)
from sync_pipelines.providers.settings import GoliothSettings

ACCOUNT = Account.of("golioth", "http://127.0.0.1:9/v1", "GOLIOTH_API_KEY")


class FakeClock:
    """Time that moves only when someone sleeps (shared by every budget of a test)."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += max(0.0, seconds)


def _budget(store, clock, limit=None, account=ACCOUNT) -> RateBudget:
    return RateBudget(store, account, limit, clock=clock, sleep=clock.sleep)


def test_two_processes_on_one_account_share_its_pace_and_never_overlap(store):
    clock = FakeClock()
    a, b = _budget(store, clock, 50.0), _budget(store, clock, 50.0)
    sent = [(a if i % 3 else b).acquire() for i in range(300)]
    # 300 requests at 50 req/s between them: 6 s, whoever sent them
    assert sent[-1] - sent[0] == pytest.approx(299 / 50, rel=0.05)
    # in no second did the two together send more than the limit, but for a slot used late
    # within its lease (at most a lease, 5, early on the next second's)
    assert max(sum(1 for t in sent if s <= t < s + 1.0) for s in sent) <= 55
    # in batches: the store was asked a tenth of a second at a time, not per request
    assert a.leases + b.leases <= 300 / 5 + 2
    row = a.state()
    assert (row.rate_rps, row.limit_rps, row.throttled_total) == (50.0, 50.0, 0)


def test_a_429_cuts_the_pace_once_per_round_and_its_retry_after_pauses_everyone(store):
    clock = FakeClock()
    a, b = _budget(store, clock, 40.0), _budget(store, clock, 40.0)
    first = a.acquire()
    second = b.acquire()
    clock.sleep(0.01)
    a.throttled(first, retry_after_s=2.0)
    b.throttled(second, retry_after_s=2.0)  # answered at the same pace: no second cut
    row = a.state()
    assert row.rate_rps == pytest.approx(40.0 * DECREASE) and row.throttled_total == 2
    # the other process learns of the pause from the row at its next lease: nobody sends before it
    assert b.acquire() >= row.paused_until_s and a.acquire() >= row.paused_until_s
    # a second without a 429 climbs back, never past the configured limit
    for _ in range(2000):
        b.acquire()
    assert a.state().rate_rps == 40.0


def test_unset_the_limit_is_found_from_429s_and_probed_upwards(store):
    clock = FakeClock()
    budget = _budget(store, clock)
    # unpaced: 100 requests a second cost a read of the row per 100 ms, no write
    sent = []
    for _ in range(100):
        sent.append(budget.acquire())
        clock.sleep(0.01)
    assert sent[-1] - sent[0] == pytest.approx(0.99) and budget.leases <= 11
    assert budget.state().rate_rps is None and budget.state().version == 1
    budget.throttled(sent[-1], retry_after_s=None)
    row = budget.state()
    # the pace that drew the 429 is what this process sent in the last second; cut by 30 %
    assert row.ceiling_rps == pytest.approx(100, rel=0.02)
    assert row.rate_rps == pytest.approx(row.ceiling_rps * DECREASE)
    started = clock()
    for _ in range(2000):
        budget.acquire()
    # back fast to 90 % of the ceiling (two seconds), then probing past it a percent a second
    elapsed = clock() - started
    ceiling = row.ceiling_rps
    assert budget.state().rate_rps == pytest.approx(ceiling * (0.9 + 0.01 * (elapsed - 2)), abs=2)
    assert budget.state().rate_rps > ceiling


def test_a_storm_never_paces_below_the_floor(store):
    clock = FakeClock()
    budget = _budget(store, clock, 20.0)
    for _ in range(30):
        budget.throttled(budget.acquire(), retry_after_s=1.0)
    row = budget.state()
    assert row.rate_rps == FLOOR_RPS and row.throttled_total == 30


def test_threads_of_a_process_share_one_budget_per_account(store):
    one = shared_budget(store, ACCOUNT, 10.0)
    assert shared_budget(store, ACCOUNT, 10.0) is one
    other = Account.of("golioth", "http://127.0.0.1:9/v1", "OTHER_KEY")
    assert shared_budget(store, other, 10.0) is not one
    # an account is its host and credential variable, not the path or the scheme's case
    assert Account.of("golioth", "HTTP://127.0.0.1:9/other", "GOLIOTH_API_KEY").key == ACCOUNT.key


@pytest.mark.parametrize("bad", ["0", "-5", "fast", True])
def test_the_limit_is_a_typed_setting(bad):
    base = {"base_url": "http://x", "project_id": "p"}
    assert GoliothSettings.parse({**base, "rate_limit_rps": "12.5"}, "g").rate_limit_rps == 12.5
    assert GoliothSettings.parse(base, "g").rate_limit_rps is None
    with pytest.raises(ConfigError, match="rate_limit_rps"):
        GoliothSettings.parse({**base, "rate_limit_rps": bad}, "g")
