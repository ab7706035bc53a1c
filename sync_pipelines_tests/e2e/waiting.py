"""Waiting for what the daemon does in its own time: poll a probe until it returns something."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None], *, timeout_s: float, what: str, every_s: float = 1.0
) -> T:
    """The first truthy value `probe` returns; fails naming `what` (and the last value seen)
    once `timeout_s` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s:.0f} s for {what}; last seen: {value!r}")
        time.sleep(every_s)
