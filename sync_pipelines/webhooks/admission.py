"""Admission control of one receiver process: at most `limit` deliveries in progress, the rest
answered 429 at once with a `Retry-After` that grows with the overload.

A fixed `Retry-After: 1` brings a crowd of throttled senders back all at once a second later,
and every retry is a request the receiver must parse and answer: under a sustained overload the
429s eat the capacity that would serve deliveries (measured: half the throughput lost). So the
wait told is about how long the refused take to be served at the rate deliveries finish —
1 + refused ÷ finished over the last full second, 1 s when few were refused — with up to half
again of random spread, so they do not return together either. A second in which little
finished (a stall) counts as one in which `limit` did, and the wait is at most 10 s: told too
long a wait, the senders would leave the receiver idle.
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
        self._last_finished = self._last_refused = 0  # the last full second

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
        wait = 1 + self._last_refused // max(self._last_finished, self.limit)
        wait = min(wait, MAX_RETRY_AFTER_S)
        return wait if wait == 1 else min(self._spread(wait, wait + wait // 2), MAX_RETRY_AFTER_S)

    def _roll(self) -> None:
        second = int(self._clock())
        if second == self._second:
            return
        if second == self._second + 1:
            self._last_finished, self._last_refused = self._finished, self._refused
        else:  # a quiet gap of whole seconds: nothing finished or refused in the last one
            self._last_finished = self._last_refused = 0
        self._second, self._finished, self._refused = second, 0, 0
