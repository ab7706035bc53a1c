"""State syncs against a Golioth emulator that meters its account (a token bucket answering 429 +
Retry-After), on SQLite and Postgres: paced by the account's shared budget, they use the limit
without tripping it, and throttling slows a sync but dead-letters nothing. The figures at scale
(3,000 devices, 20 and 50 req/s, a 60 s storm) are bench/pacing.py's."""

from __future__ import annotations

import threading
from datetime import datetime

import sqlalchemy as sa

from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.dead_letters import open_dead_letter_count
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.inventory import sync_devices

LIMIT = 50.0
#: small backoffs so the suite stays fast; Retry-After waits stay real
#: pacing is about one request per device: state reads one by one, not from the device list
FAST = {
    "retry_base_backoff_s": 0.05,
    "retry_max_backoff_s": 0.2,
    "retry_jitter_s": 0.05,
    "state_source": "device",
}


def _state_reads(store, integ) -> list[dict]:
    """The state reads' attempt rows (a row names its device), every attempt of each."""
    with store.connect() as conn:
        rows = activity_rows(
            conn,
            integ.organization_id,
            integration_id=integ.integration_id,
            activity_type="http_request",
        )
    return [r for r in rows if r["external_id"]]


def _when(row) -> float:
    at = row["created_at"]
    return (at if isinstance(at, datetime) else datetime.fromisoformat(str(at))).timestamp()


def _figures(rows: list[dict]) -> tuple[float, float]:
    """(requests per second between the first and the last attempt, share answered 429)."""
    times = sorted(_when(r) for r in rows)
    rate = (len(times) - 1) / (times[-1] - times[0])
    return rate, sum(1 for r in rows if r["status_code"] == 429) / len(rows)


def _budget_paces(store) -> list[float]:
    """The pace every account's budget held at the end (the pacer's own schedule: what it let
    through, whatever the machine's load did to the requests' own speed)."""
    with store.connect() as conn:
        return [row[0] for row in conn.execute(sa.text("SELECT rate_rps FROM rate_budgets"))]


def _uses_the_limit_without_tripping_it(store, rows: list[dict]) -> None:
    """The pacer granted the account's whole limit (its pace never cut below it) and the
    requests never went faster than it nor drew a 429 worth counting. The observed rate is an
    upper bound only: a loaded machine makes the requests slower than their slots, never faster
    (the rate reached on a quiet machine, 0.9+ of the limit, is bench/pacing.py's figure)."""
    rate, throttled = _figures(rows)
    assert _budget_paces(store) == [LIMIT], _budget_paces(store)
    assert rate <= 1.1 * LIMIT and throttled < 0.02, (rate, throttled)


def _synced(store, running, register_golioth, open_session, integration_id, **settings):
    integ = register_golioth(store, running, integration_id=integration_id, **FAST, **settings)
    with open_session(store, integ.integration_id) as session:
        sync_devices(session)
    return integ


def _open_letters(store, integ) -> int:
    with store.connect() as conn:
        return open_dead_letter_count(conn, integ.organization_id, integ.integration_id)


def test_a_state_sync_uses_the_accounts_limit_without_tripping_it(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=150, token_bucket_rps=LIMIT)
    integ = _synced(
        store, running, register_golioth, open_session, "golioth-a", rate_limit_rps=LIMIT
    )
    with open_session(store, integ.integration_id) as session:
        result = sync_device_states(session)
    assert (result.status, result.counts.created) == ("success", 150)
    _uses_the_limit_without_tripping_it(store, _state_reads(store, integ))
    assert _open_letters(store, integ) == 0


def test_two_integrations_of_one_account_share_its_limit(
    store, golioth_factory, register_golioth, open_session
):
    running = golioth_factory(device_count=100, token_bucket_rps=LIMIT)
    integs = [
        _synced(store, running, register_golioth, open_session, iid, rate_limit_rps=LIMIT)
        for iid in ("golioth-a", "golioth-b")
    ]
    results = {}

    def sync(integ) -> None:
        with open_session(store, integ.integration_id) as session:
            results[integ.integration_id] = sync_device_states(session)

    threads = [threading.Thread(target=sync, args=(i,)) for i in integs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {i: (r.status, r.counts.created) for i, r in results.items()} == {
        "golioth-a": ("success", 100),
        "golioth-b": ("success", 100),
    }
    _uses_the_limit_without_tripping_it(store, [r for i in integs for r in _state_reads(store, i)])
    assert sum(_open_letters(store, i) for i in integs) == 0


def test_a_429_storm_as_long_as_the_retry_budget_dead_letters_nothing(
    store, golioth_factory, register_golioth, open_session
):
    # the limit unset: the budget learns it from the storm's 429s; four attempts would not
    # have lasted the storm (the record's retries now last its retry_max_total_s)
    running = golioth_factory(device_count=60)
    integ = _synced(
        store, running, register_golioth, open_session, "golioth-a", retry_max_total_s=3
    )
    running.emulator.add_faults({"kind": "rate_limit", "retry_after_s": 1, "path": "/data$"})
    threading.Timer(3.0, running.emulator.clear_faults).start()
    with open_session(store, integ.integration_id) as session:
        result = sync_device_states(session)
    assert (result.status, result.counts.created, result.counts.failed) == ("success", 60, 0)
    assert _open_letters(store, integ) == 0
    rows = _state_reads(store, integ)
    throttled = [r for r in rows if r["status_code"] == 429]
    # the storm paused every worker: a few probes per Retry-After, not eight workers hammering
    assert 2 <= len(throttled) <= 3 * 8
    assert _when(throttled[-1]) - _when(throttled[0]) >= 1.5  # refused for most of the budget
