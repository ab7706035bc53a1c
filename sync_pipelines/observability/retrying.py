"""One retry policy for every provider call, built on tenacity.

A call is retried only when the error taxonomy (errors.py) says trying again can help —
`rate_limited` and `transient` — never for `auth`, `permanent`, `validation`, `conflict` or
`config`. Between attempts it waits what the server asked for (`Retry-After`,
`retry_after_s`), else an exponential backoff with jitter. It is bounded twice:

- a failure other than throttling: at most `max_attempts` such attempts, and no retry whose
  wait would end past `max_total_s` after the first attempt started; a server asking for longer
  than the budget has left stops the call at once, so the caller gets the error with the
  server's `retry_after_s` instead of a sleep it cannot use;
- throttling (a 429, `rate_limited`) does not count against `max_attempts`: the call is asked
  again until it has been refused for `max_total_s` (its last wait may end past it, by at most
  one `Retry-After`), so throttling slows a sync and never dead-letters a record the provider
  would have served later; a server asking for longer than the whole `max_total_s` stops it at
  once.

The HTTP transport (http_recording), the MQTT connection (mqtt_client) and, for the time
budget, the boto3 client (boto_recording) all read the same `RetryPolicy`, configured per
integration with the settings `retry_max_attempts`, `retry_max_total_s`,
`retry_base_backoff_s`, `retry_max_backoff_s` and `retry_jitter_s`.
"""

from __future__ import annotations

import email.utils
import itertools
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, TypeVar

import tenacity
from tenacity.stop import stop_base

from sync_pipelines.errors import RATE_LIMITED, RETRYABLE_CATEGORIES, ConfigError, category_of

T = TypeVar("T")

#: integration setting -> RetryPolicy field
SETTINGS = {
    "retry_max_attempts": "max_attempts",
    "retry_max_total_s": "max_total_s",
    "retry_base_backoff_s": "base_backoff_s",
    "retry_max_backoff_s": "max_backoff_s",
    "retry_jitter_s": "jitter_s",
}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long one logical call may be tried (see the module docstring)."""

    max_attempts: int = 4
    max_total_s: float = 60.0
    #: the first backoff; doubles per retry up to `max_backoff_s`
    base_backoff_s: float = 0.5
    max_backoff_s: float = 10.0
    #: up to this much is added at random to every wait, so callers throttled together
    #: do not come back together
    jitter_s: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.max_total_s <= 0:
            raise ValueError(f"max_total_s must be > 0, got {self.max_total_s}")
        for name in ("base_backoff_s", "max_backoff_s", "jitter_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any], integration_id: str | None = None
    ) -> RetryPolicy:
        """The policy of an integration: defaults, overridden by its `retry_*` settings."""
        values: dict[str, Any] = {}
        types = {f.name: (int if f.name == "max_attempts" else float) for f in fields(cls)}
        for setting, name in SETTINGS.items():
            raw = settings.get(setting)
            if raw in (None, ""):
                continue
            try:
                values[name] = types[name](raw)
            except (TypeError, ValueError):
                raise ConfigError(
                    integration_id, f"setting {setting} must be a number, got {raw!r}"
                ) from None
        try:
            return cls(**values)
        except ValueError as exc:
            raise ConfigError(integration_id, f"retry settings: {exc}") from None

    @property
    def retries(self) -> bool:
        return self.max_attempts > 1

    def backoff_s(self, attempt: int) -> float:
        """The wait after failed attempt `attempt` (1-based) when the server named none."""
        exp = self.base_backoff_s * 2 ** (attempt - 1)
        return min(exp, self.max_backoff_s) + random.uniform(0, self.jitter_s)

    def retrying(
        self,
        should_retry: Callable[[tenacity.RetryCallState], bool],
        *,
        retry_after: Callable[[tenacity.RetryCallState], float | None] = lambda _: None,
        throttled: Callable[[tenacity.RetryCallState], bool] = lambda _: False,
        before: Callable[[tenacity.RetryCallState], None] | None = None,
        before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> tenacity.Retrying:
        """A tenacity controller for this policy. Reusable across threads (tenacity keeps its
        per-call state thread-local).

        `should_retry(state)` decides on the outcome (an exception or a result such as an HTTP
        response); `retry_after(state)` is the server's wait, if it named one; `throttled(state)`
        says the outcome is the provider throttling (not counted against `max_attempts`);
        `before(state)` runs before each attempt. When
        the attempts or the budget run out, the last outcome is what the caller gets: the
        exception is re-raised, a result (the last HTTP response) returned.
        """

        def wait(state: tenacity.RetryCallState) -> float:
            asked = retry_after(state)
            if asked is not None:
                # the server's wait, plus jitter; the stop below refuses it past the budget
                return max(0.0, asked) + random.uniform(0, self.jitter_s)
            return self.backoff_s(state.attempt_number)

        return tenacity.Retrying(
            retry=should_retry,
            wait=wait,
            stop=_AttemptCap(self.max_attempts, throttled)
            | _TimeBudget(self.max_total_s, throttled),
            before=before,
            before_sleep=before_sleep,
            retry_error_callback=_last_outcome,
            sleep=sleep,
        )

    def call(
        self,
        fn: Callable[[int], T],
        *,
        before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
    ) -> T:
        """Run `fn(attempt)` until it returns, retrying the exceptions the taxonomy calls
        retryable (`retryable_error`); a server's `retry_after_s` on the error is honoured."""
        counter = itertools.count(1)
        return self.retrying(
            lambda state: (
                state.outcome is not None
                and state.outcome.failed
                and retryable_error(state.outcome.exception())
            ),
            retry_after=lambda state: _error_retry_after(state),
            throttled=_error_throttled,
            before_sleep=before_sleep,
        )(lambda: fn(next(counter)))


#: one attempt, no retries (what the client builders make when given no policy)
SINGLE_ATTEMPT = RetryPolicy(max_attempts=1)


def retryable_error(exc: BaseException | None) -> bool:
    """The taxonomy's answer: is this error worth another attempt?"""
    return exc is not None and category_of(exc) in RETRYABLE_CATEGORIES


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds — the one reading of it, for every provider and the retry
    policy: delta-seconds (`"2"`, tolerated `"1.5"`) or an HTTP-date (RFC 9110 §10.2.3), never
    below 0 (a date in the past is "now"); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return max(0.0, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


#: delta-seconds (a sign and a fraction tolerated); not "inf", "nan" or "1e9"
_DELTA_SECONDS = re.compile(r"[+-]?\d+(\.\d+)?")


def _error_retry_after(state: tenacity.RetryCallState) -> float | None:
    outcome = state.outcome
    if outcome is None or not outcome.failed:
        return None
    value = getattr(outcome.exception(), "retry_after_s", None)
    return float(value) if isinstance(value, int | float) else None


def _error_throttled(state: tenacity.RetryCallState) -> bool:
    outcome = state.outcome
    return (
        outcome is not None and outcome.failed and category_of(outcome.exception()) == RATE_LIMITED
    )


class _AttemptCap(stop_base):
    """Stop after `max_attempts` attempts that were not throttled (a throttled one is counted
    apart, on the call's own state, so the retrying controller stays shareable)."""

    def __init__(self, max_attempts: int, throttled: Callable[[tenacity.RetryCallState], bool]):
        self.max_attempts = max_attempts
        self.throttled = throttled

    def __call__(self, state: tenacity.RetryCallState) -> bool:
        if self.throttled(state):
            state.sync_throttled = getattr(state, "sync_throttled", 0) + 1  # type: ignore[attr-defined]
        return state.attempt_number - getattr(state, "sync_throttled", 0) >= self.max_attempts


class _TimeBudget(stop_base):
    """`max_total_s` (see the module docstring): a retry's wait may not end past it, unless the
    attempt was throttled — then the call stops once it has been refused for the whole budget."""

    def __init__(self, max_total_s: float, throttled: Callable[[tenacity.RetryCallState], bool]):
        self.max_total_s = max_total_s
        self.throttled = throttled

    def __call__(self, state: tenacity.RetryCallState) -> bool:
        elapsed = state.seconds_since_start or 0.0
        if self.throttled(state):
            return elapsed >= self.max_total_s or state.upcoming_sleep > self.max_total_s
        return elapsed + state.upcoming_sleep >= self.max_total_s


def _last_outcome(state: tenacity.RetryCallState) -> Any:
    # attempts or budget spent: hand the caller the last outcome itself, not a RetryError
    assert state.outcome is not None
    return state.outcome.result()
