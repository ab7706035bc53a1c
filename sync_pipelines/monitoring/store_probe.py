"""Short-timeout access to the store for health checks and metric scrapes.

They must answer within seconds when the store is down or hung, and never queue behind the
syncs' pool. A probe has its own small engine (Postgres: `connect_timeout`, a
`statement_timeout` and an `application_name`; SQLite: a short busy timeout), and each piece
of work runs in a daemon thread the caller waits on for at most a deadline: a connection that
hangs past every timeout leaves a thread behind, never a caller. At most `MAX_IN_FLIGHT`
threads per probe: beyond that a check fails at once instead of piling up threads.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from sync_pipelines.observability.redaction import redact_text, register_secret
from sync_pipelines.store.database import Store

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 2.0
MAX_IN_FLIGHT = 4
APPLICATION_NAME = "sync-pipelines-probe"


class ProbeTimeout(TimeoutError):
    """The work did not finish within its deadline (or too many earlier probes still hang)."""


class BoundedCalls:
    """Runs callables in daemon threads, waits at most a deadline, keeps at most `slots` in flight."""

    def __init__(self, name: str, slots: int = MAX_IN_FLIGHT) -> None:
        self.name = name
        self._slots = threading.BoundedSemaphore(slots)
        self._size = slots

    def start(self, work: Callable[[], T]) -> Future[T]:
        """Start `work` now; the future fails with ProbeTimeout when no slot is free."""
        future: Future[T] = Future()
        if not self._slots.acquire(blocking=False):
            future.set_exception(
                ProbeTimeout(
                    f"{self._size} earlier {self.name} checks are still waiting for an answer"
                )
            )
            return future

        def run() -> None:
            try:
                future.set_result(work())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                future.set_exception(exc)
            finally:
                self._slots.release()

        threading.Thread(target=run, name=f"{self.name}-check", daemon=True).start()
        return future


def wait(future: Future[T], timeout_s: float, what: str) -> T:
    """The future's result, or ProbeTimeout after `timeout_s`."""
    try:
        return future.result(timeout=max(0.0, timeout_s))
    except TimeoutError as exc:
        if isinstance(exc, ProbeTimeout):
            raise
        raise ProbeTimeout(f"{what} did not answer within {timeout_s:g} s") from None


class StoreProbe:
    """The store, for checks that must not wait long."""

    def __init__(self, store: Store, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        # no reference to `store` itself: probes are cached per store, weakly
        self.timeout_s = timeout_s
        # the URL's password must never reach a health report or a log line
        register_secret(store.engine.url.password)
        self.store_location = store.location
        self.engine = _probe_engine(store, timeout_s)
        self._owns_engine = self.engine is not store.engine
        self._calls = BoundedCalls("store")

    def run(self, work: Callable[[Connection], T], *, timeout_s: float | None = None) -> T:
        """`work(conn)` on a probe connection, within `timeout_s` (default: the probe's)."""
        return wait(self.start(work), timeout_s or self.timeout_s, "the store")

    def start(self, work: Callable[[Connection], T]) -> Future[T]:
        """Like `run`, without waiting: the caller waits on the future (see `wait`)."""

        def on_connection() -> T:
            with self.engine.connect() as conn:
                return work(conn)

        return self._calls.start(on_connection)

    def dispose(self) -> None:
        if self._owns_engine:
            self.engine.dispose()


_probes: weakref.WeakKeyDictionary[Store, StoreProbe] = weakref.WeakKeyDictionary()
_probes_lock = threading.Lock()


def probe_for(store: Store, timeout_s: float = DEFAULT_TIMEOUT_S) -> StoreProbe:
    """The store's probe, made once per store and timeout (its engine keeps a small pool)."""
    with _probes_lock:
        probe = _probes.get(store)
        if probe is None or probe.timeout_s != timeout_s:
            if probe is not None:
                probe.dispose()
            probe = _probes[store] = StoreProbe(store, timeout_s)
            weakref.finalize(store, probe.dispose)  # its connections go with the store
        return probe


def describe_error(exc: BaseException) -> str:
    """An error for a report: type and first line of the message, secrets masked, short."""
    if isinstance(exc, ProbeTimeout):
        return str(exc)
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    lines = str(cause).strip().splitlines()
    message = lines[0] if lines else ""
    text = f"{type(cause).__name__}: {message}" if message else type(cause).__name__
    return redact_text(text)[:300]


def _probe_engine(store: Store, timeout_s: float) -> Engine:
    url = store.engine.url
    if store.is_postgres:
        return sa.create_engine(
            url,
            pool_size=1,
            max_overflow=MAX_IN_FLIGHT,
            pool_pre_ping=True,
            pool_timeout=timeout_s,
            connect_args={
                # libpq's connect_timeout counts whole seconds, at least 2
                "connect_timeout": max(2, math.ceil(timeout_s)),
                "options": f"-c statement_timeout={max(1, int(timeout_s * 1000))}",
                "application_name": APPLICATION_NAME,
            },
        )
    if not url.database or url.database == ":memory:":
        return store.engine  # a private in-memory database: only the store's engine sees it
    return sa.create_engine(url, connect_args={"timeout": timeout_s, "check_same_thread": False})
