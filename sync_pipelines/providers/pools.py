"""Worker-thread pools that keep the caller's context.

A provider's page and state threads do not inherit contextvars, so their log lines would lose
the run's bound fields (run_id, integration_id, step) and their spans the run's trace. Every
call handed to a pool here runs in a copy of the submitting thread's context.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from itertools import repeat
from typing import Any, TypeVar

T = TypeVar("T")


def submit_in_context(pool: Executor, fn: Callable[..., T], *args: Any) -> Future[T]:
    return pool.submit(contextvars.copy_context().run, fn, *args)


def map_in_context(pool: Executor, fn: Callable[..., T], *iterables: Iterable[Any]) -> Iterator[T]:
    """`pool.map(fn, *iterables)`, each call in its own copy of this thread's context (taken
    here, since `map` submits every call from the calling thread)."""
    columns = [list(it) for it in iterables]
    contexts = [contextvars.copy_context() for _ in range(min(map(len, columns), default=0))]
    return pool.map(contextvars.Context.run, contexts, repeat(fn), *columns)
