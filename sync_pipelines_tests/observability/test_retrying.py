"""The retry policy itself (tenacity underneath): what is retried, how long it waits, and the
two bounds — attempts and total time. Real sleeps, kept short."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from sync_pipelines.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    MalformedResponseError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from sync_pipelines.observability.retrying import RetryPolicy, parse_retry_after

FAST = RetryPolicy(
    max_attempts=4, max_total_s=5, base_backoff_s=0.01, max_backoff_s=0.05, jitter_s=0
)


def _failing(errors):
    """fn(attempt) raising the given errors in turn, then returning the attempt number."""
    seen: list[int] = []

    def fn(attempt: int) -> int:
        seen.append(attempt)
        if errors:
            raise errors.pop(0)
        return attempt

    return fn, seen


def _transient() -> TransientError:
    return TransientError("503", provider="p", status_code=503)


def test_transient_failures_are_retried_until_success():
    fn, seen = _failing([_transient(), _transient()])
    assert FAST.call(fn) == 3
    assert seen == [1, 2, 3]


@pytest.mark.parametrize(
    "error",
    [
        AuthError("401", provider="p", status_code=401),
        PermanentError("404", provider="p", status_code=404),
        MalformedResponseError("bad json", provider="p"),
        ConflictError("412", provider="p", status_code=412),
        ConfigError("i", "missing setting"),
        KeyError("a bug"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_that_another_attempt_cannot_fix_are_raised_at_once(error):
    fn, seen = _failing([error])
    with pytest.raises(type(error)):
        FAST.call(fn)
    assert seen == [1]


def test_attempts_are_bounded_and_the_last_error_itself_is_raised():
    fn, seen = _failing([_transient() for _ in range(10)])
    with pytest.raises(TransientError):  # not tenacity's RetryError
        FAST.call(fn)
    assert seen == [1, 2, 3, 4]


def test_the_servers_retry_after_is_waited_out():
    fn, seen = _failing([RateLimitedError("429", provider="p", retry_after_s=0.4)])
    started = time.monotonic()
    assert FAST.call(fn) == 2
    assert time.monotonic() - started >= 0.4


def test_a_retry_after_beyond_the_remaining_budget_stops_at_once():
    policy = RetryPolicy(max_attempts=4, max_total_s=1.0, base_backoff_s=0.01, jitter_s=0)
    fn, seen = _failing([RateLimitedError("429", provider="p", retry_after_s=5)])
    started = time.monotonic()
    with pytest.raises(RateLimitedError) as raised:
        policy.call(fn)
    assert time.monotonic() - started < 0.5 and seen == [1]
    assert raised.value.retry_after_s == 5  # the caller still learns how long the server asked


def test_total_time_is_bounded_however_many_attempts_are_allowed():
    policy = RetryPolicy(
        max_attempts=1000, max_total_s=0.5, base_backoff_s=0.05, max_backoff_s=0.1, jitter_s=0
    )
    fn, seen = _failing([_transient() for _ in range(1000)])
    started = time.monotonic()
    with pytest.raises(TransientError):
        policy.call(fn)
    assert time.monotonic() - started < 0.6
    assert 3 <= len(seen) < 20


def test_backoff_doubles_up_to_its_cap_with_bounded_jitter():
    policy = RetryPolicy(base_backoff_s=0.5, max_backoff_s=3, jitter_s=0.25)
    for attempt, floor in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        waits = [policy.backoff_s(attempt) for _ in range(50)]
        assert all(floor <= w <= floor + 0.25 for w in waits)
        assert len(set(waits)) > 1  # jittered


def test_an_integrations_settings_configure_the_policy_and_bad_ones_are_config_errors():
    policy = RetryPolicy.from_settings(
        {
            "retry_max_attempts": "2",
            "retry_max_total_s": 7.5,
            "retry_base_backoff_s": "0.1",
            "page_size": 5,
        }
    )
    assert (policy.max_attempts, policy.max_total_s, policy.base_backoff_s) == (2, 7.5, 0.1)
    assert RetryPolicy.from_settings({}) == RetryPolicy(max_attempts=4, max_total_s=60.0)
    for bad in (
        {"retry_max_attempts": "many"},
        {"retry_max_attempts": 0},
        {"retry_max_total_s": -1},
    ):
        with pytest.raises(ConfigError, match="integration 'golioth-x'.*retry"):
            RetryPolicy.from_settings(bad, "golioth-x")


def test_retry_after_is_read_as_seconds_or_an_http_date():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert (
        parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now)
        == 30.0
    )
    assert (
        parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    )
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


@pytest.mark.parametrize("junk", ["", "  ", "inf", "nan", "1e9", "2 seconds", "Tomorrow, 25:99"])
def test_an_unreadable_retry_after_is_none(junk):
    assert parse_retry_after(junk) is None


def test_a_negative_retry_after_is_clamped_to_now():
    assert parse_retry_after("-5") == 0.0
