"""Admission control of one receiver process: at most `limit` deliveries in progress, the rest
answered 429 at once with a `Retry-After` that grows while the overload lasts.

A fixed `Retry-After: 1` brings a crowd of throttled senders back all at once a second later,
and every retry is a request the receiver must parse and answer: under a sustained overload the
429s eat the capacity that would serve deliveries. So the wait told doubles after every second
in which many were refused (more than a quarter of what the process can have in progress or
finished), up to 10 s, and halves after every second in which few were, back to 1 s; each
refused delivery is told that wait plus up to half again at random, so they do not return
together either. Too long a wait would leave the receiver idle while its senders sleep.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

#: the longest wait told
MAX_RETRY_AFTER_S = 10


class Admission:
    """Counts deliveries in progress, and those finished and refused per second. One event loop
    uses it, so it needs no lock."""

    def __init__(
        self,
        limit: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        spread: Callable[[int, int], int] = random.randint,
    ) -> None:
        self.limit = limit
        self.in_flight = 0
        self._clock = clock
        self._spread = spread
        self._second = int(clock())
        self._finished = self._refused = 0  # this second so far
        self._wait_s = 1

    def enter(self) -> bool:
        """True (and counted in progress) if there is room; False: answer 429."""
        self._roll()
        if self.in_flight >= self.limit:
            self._refused += 1
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self._roll()
        self.in_flight -= 1
        self._finished += 1

    def retry_after_s(self) -> int:
        """What a refused delivery is told to wait, whole seconds (see the module docstring)."""
        self._roll()
        wait = self._wait_s
        return wait if wait == 1 else min(self._spread(wait, wait + wait // 2), MAX_RETRY_AFTER_S)

    def _roll(self) -> None:
        second = int(self._clock())
        if second == self._second:
            return
        for elapsed in range(min(second - self._second, 8)):  # 8 quiet seconds bring 10 s to 1
            many = self._refused > max(self._finished, self.limit) // 4 if elapsed == 0 else False
            self._wait_s = (
                min(self._wait_s * 2, MAX_RETRY_AFTER_S) if many else max(1, self._wait_s // 2)
            )
        self._second, self._finished, self._refused = second, 0, 0
