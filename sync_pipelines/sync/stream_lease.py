"""One sync per (integration, stream) at a time, across processes and hosts, fenced.

A sync takes the stream's lease in the store before it writes anything (`SyncRun` does, on
enter). Another sync of the stream waits up to `SYNC_LEASE_WAIT_S` for it, then fails with
`LeaseHeldError` (not retried) naming the holder's run and since when. The holder renews the
lease at every batch commit — `fence(conn)`, in the batch's own transaction, where a lost lease
raises `FencedError` and nothing of the batch commits — and from a light heartbeat thread in
between. A lease not renewed for `SYNC_LEASE_TTL_S` has expired: the next sync takes it over
(epoch + 1), and the old holder, should it wake up, is fenced. A holder on the same host whose
process is gone is known dead at once, so re-running a killed sync does not wait for the expiry.

Whoever takes the lease closes the stream's sync-log rows left `running` as `abandoned`, with the
dead holder's `started` activity operation; `close_abandoned_syncs` does the same for the
stale-sync sensor, for streams nobody syncs again soon.
"""

from __future__ import annotations

import contextvars
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar, cast

from sqlalchemy.engine import Connection

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import FencedError, LeaseHeldError
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import for_each_organization
from sync_pipelines.store.sync_leases import (
    Lease,
    LeaseHolder,
    close_abandoned,
    read_lease,
    record_lease_holder,
    release_lease,
    renew_lease,
    streams_to_close,
    take_lease,
)

#: seconds a lease lives after its last renewal; a holder silent that long is presumed dead
LEASE_TTL_ENV = "SYNC_LEASE_TTL_S"
DEFAULT_LEASE_TTL_S = 120.0
#: seconds a sync waits for the stream's lease before it gives up
LEASE_WAIT_ENV = "SYNC_LEASE_WAIT_S"
DEFAULT_LEASE_WAIT_S = 30.0
#: seconds between heartbeat renewals (default: a third of the TTL); 0 = renew only at commits
LEASE_HEARTBEAT_ENV = "SYNC_LEASE_HEARTBEAT_S"

_log = get_logger("sync.lease")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    ttl_s: float
    wait_s: float
    heartbeat_s: float

    @classmethod
    def resolve(
        cls,
        *,
        ttl_s: float | None = None,
        wait_s: float | None = None,
        heartbeat_s: float | None = None,
    ) -> LeaseSettings:
        """Arguments first, then the environment, then the defaults."""
        ttl = ttl_s if ttl_s is not None else _env_seconds(LEASE_TTL_ENV, DEFAULT_LEASE_TTL_S)
        wait = wait_s if wait_s is not None else _env_seconds(LEASE_WAIT_ENV, DEFAULT_LEASE_WAIT_S)
        beat = (
            heartbeat_s if heartbeat_s is not None else _env_seconds(LEASE_HEARTBEAT_ENV, ttl / 3)
        )
        if ttl <= 0:
            raise ValueError(f"{LEASE_TTL_ENV} must be > 0 seconds, got {ttl}")
        return cls(ttl_s=ttl, wait_s=max(wait, 0.0), heartbeat_s=max(beat, 0.0))


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a number of seconds") from None


def this_process(run_id: str | None) -> LeaseHolder:
    pid = os.getpid()
    return LeaseHolder(run_id=run_id, host=socket.gethostname(), pid=pid, process=_start_time(pid))


#: the leases syncs of this process hold now: one this process took but no longer holds was left
#: behind by a sync that ended without releasing it (the store was down at its end)
_HELD_HERE: set[tuple[str, str, str, int]] = set()
_HELD_HERE_LOCK = threading.Lock()


def holder_is_dead(lease: Lease, here: LeaseHolder) -> bool:
    """True only when the holder is known gone: it ran on this host and its process no longer
    exists (or its pid now belongs to a younger process), or it is this process and no sync of
    it holds the lease any more. Other hosts' holders are waited for until the lease expires."""
    if not lease.held or lease.holder_host != here.host or lease.holder_pid is None:
        return False
    if lease.holder_pid == here.pid and lease.holder_process == here.process:
        key = (lease.organization_id, lease.integration_id, lease.stream, lease.epoch)
        with _HELD_HERE_LOCK:
            return key not in _HELD_HERE
    try:
        os.kill(lease.holder_pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    started = _start_time(lease.holder_pid)
    return started == "zombie" or bool(lease.holder_process and started != lease.holder_process)


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux /proc), "zombie" for a dead
    process not yet reaped; "" where the OS does not say."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return "zombie" if fields[0] in ("Z", "X") else fields[19]


class StreamLease:
    """The lease of one (integration, stream) as one sync holds it. See the module docstring."""

    def __init__(
        self,
        store: Store,
        organization_id: str,
        integration_id: str,
        stream: str,
        run_id: str | None,
        settings: LeaseSettings,
    ) -> None:
        self.store = store
        self.organization_id = organization_id
        self.integration_id = integration_id
        self.stream = stream
        self.settings = settings
        self.holder = this_process(run_id)
        self.epoch: int | None = None
        #: a commit found the lease taken over: this sync is a stale writer, whatever it does next
        self.fenced = False
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @property
    def key(self) -> tuple[str, str, str, int]:
        assert self.epoch is not None, "the lease is not held"
        return (self.organization_id, self.integration_id, self.stream, self.epoch)

    def acquire(self, begin: Callable[[Connection], T]) -> T:
        """Take the lease, waiting for it up to the wait setting, and in the transaction that
        takes it close what a dead holder left `running` and run `begin(conn)` (the sync's
        started row). Raises LeaseHeldError naming the holder when the wait runs out."""
        deadline = time.monotonic() + self.settings.wait_s
        waited_since = time.monotonic()
        logged_wait = False
        while True:
            with self.store.connect() as conn:  # read apart: the taking transaction writes first
                seen = read_lease(conn, self.organization_id, self.integration_id, self.stream)
            dead = seen is not None and holder_is_dead(seen, self.holder)
            try:
                started, epoch, closed = self._take(seen, dead, begin)
            except BaseException:
                if self.epoch is not None:  # taken, then rolled back: not held after all
                    with _HELD_HERE_LOCK:
                        _HELD_HERE.discard(self.key)
                    self.epoch = None
                raise
            if epoch is not None:
                if closed:
                    _log.warning(
                        "abandoned_syncs_closed",
                        stream=self.stream,
                        sync_ids=closed,
                        dead_run_id=seen.holder_run_id if seen else None,
                    )
                return cast(T, started)
            remaining = deadline - time.monotonic()
            if (seen is None or not seen.held) and remaining > 0:
                time.sleep(0.01)
                continue  # changed hands between the read and the take: look again
            if not logged_wait and seen is not None:
                _log.info(
                    "sync_lease_waiting",
                    stream=self.stream,
                    holder_run_id=seen.holder_run_id,
                    held_since=seen.acquired_at.isoformat(),
                    wait_s=self.settings.wait_s,
                )
                logged_wait = True
            if remaining <= 0:
                raise LeaseHeldError(
                    self.integration_id,
                    self.stream,
                    holder_run_id=seen.holder_run_id if seen else None,
                    since=seen.acquired_at.isoformat() if seen else None,
                    expires_at=seen.expires_at.isoformat() if seen else None,
                    waited_s=time.monotonic() - waited_since,
                )
            time.sleep(min(0.25, remaining))

    def _take(
        self, seen: Lease | None, dead: bool, begin: Callable[[Connection], T]
    ) -> tuple[T | None, int | None, list[str]]:
        """One attempt, in one transaction: take the lease, close what the dead holder left
        `running`, `begin(conn)`."""
        started: T | None = None
        closed: list[str] = []
        with self.store.transaction() as conn:
            now = utc_now()
            epoch = take_lease(
                conn,
                self.organization_id,
                self.integration_id,
                self.stream,
                self.holder,
                seen=seen,
                now=now,
                ttl_s=self.settings.ttl_s,
                dead=dead,
            )
            if epoch is not None:
                self.epoch = epoch
                with _HELD_HERE_LOCK:
                    _HELD_HERE.add(self.key)
                closed = close_abandoned(
                    conn,
                    self.organization_id,
                    self.integration_id,
                    self.stream,
                    dead=seen if seen is not None and seen.held else None,
                    now=now,
                    closed_by=f"the next sync of the stream (run {self.holder.run_id})",
                )
                started = begin(conn)
        return started, epoch, closed

    def name_holder(self, *, sync_id: str | None = None, activity_id: str | None = None) -> None:
        with self.store.transaction() as conn:
            record_lease_holder(conn, self.key, sync_id=sync_id, activity_id=activity_id)

    def fence(self, conn: Connection) -> None:
        """Inside a batch's transaction, before it writes: renew the lease, or raise FencedError
        (the transaction then rolls back: nothing of the batch commits)."""
        if not renew_lease(conn, self.key, now=utc_now(), ttl_s=self.settings.ttl_s):
            self.fenced = True
            raise FencedError(self.integration_id, self.stream, epoch=self.key[3])

    def start_heartbeat(self) -> None:
        if self.settings.heartbeat_s <= 0 or self._heartbeat is not None:
            return
        context = contextvars.copy_context()  # the heartbeat's log lines carry the run's fields
        self._heartbeat = threading.Thread(
            target=context.run, args=(self._beat,), name="sync-lease-heartbeat", daemon=True
        )
        self._heartbeat.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=10)

    def release(self) -> None:
        """Give the lease up (a no-op if it was taken over). Never raises: the sync's own outcome
        matters more. A release the store refused (it was down) is retried in the background
        until it lands or the lease would have expired anyway: while this process lives, another
        process cannot tell its lease is stale, and would wait for it."""
        self.stop_heartbeat()
        if self.epoch is None:
            return
        with _HELD_HERE_LOCK:
            _HELD_HERE.discard(self.key)
        if self._try_release():
            return
        context = contextvars.copy_context()
        threading.Thread(
            target=context.run, args=(self._retry_release,), name="sync-lease-release", daemon=True
        ).start()

    def _try_release(self) -> bool:
        try:
            with self.store.transaction() as conn:
                release_lease(conn, self.key, now=utc_now())
            return True
        except Exception:
            _log.warning("sync_lease_release_failed", stream=self.stream, exc_info=True)
            return False

    def _retry_release(self) -> None:
        deadline, pause = time.monotonic() + self.settings.ttl_s, 0.5
        while time.monotonic() < deadline:
            time.sleep(pause)
            if self._try_release():
                _log.info("sync_lease_released_late", stream=self.stream)
                return
            pause = min(pause * 2, 5.0)

    def _beat(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_s):
            try:
                with self.store.transaction() as conn:
                    held = renew_lease(conn, self.key, now=utc_now(), ttl_s=self.settings.ttl_s)
            except Exception:  # the store blinked: the next beat (or commit) tries again
                _log.warning("sync_lease_renewal_failed", stream=self.stream, exc_info=True)
                continue
            if not held:
                _log.warning("sync_lease_lost", stream=self.stream, epoch=self.epoch)
                return


def close_abandoned_syncs(
    store: Store, now: datetime | None = None, *, closed_by: str = "the stale-sync sensor"
) -> list[str]:
    """For the stale-sync sensor: close, as `abandoned`, the sync-log rows (and their `started`
    activity operations) of every stream whose lease has expired or is free while a row still
    says `running`. Each stream is closed holding its lease for that one transaction (epoch + 1,
    so a stalled holder that wakes up is fenced), then released. A stream whose lease is live is
    left alone. Returns the sync-log ids closed."""
    now = now or utc_now()
    sensor = LeaseHolder(run_id=None, host=socket.gethostname(), pid=os.getpid(), process="")
    with store.connect() as conn:
        candidates = [
            candidate
            for organization_id in for_each_organization(conn)
            for candidate in streams_to_close(conn, organization_id, now=now)
        ]
    closed: list[str] = []
    for organization_id, integration_id, stream in candidates:
        store = store.scoped(organization_id)
        with store.connect() as conn:
            seen = read_lease(conn, organization_id, integration_id, stream)
        with store.transaction() as conn:
            epoch = take_lease(
                conn,
                organization_id,
                integration_id,
                stream,
                sensor,
                seen=seen,
                now=now,
                ttl_s=DEFAULT_LEASE_TTL_S,
            )
            if epoch is None:
                continue  # held and alive, or changed hands since it was read
            ids = close_abandoned(
                conn,
                organization_id,
                integration_id,
                stream,
                dead=seen if seen is not None and seen.held else None,
                now=now,
                closed_by=closed_by,
            )
            release_lease(conn, (organization_id, integration_id, stream, epoch), now=now)
        if ids:
            _log.warning(
                "abandoned_syncs_closed",
                organization_id=organization_id,
                integration_id=integration_id,
                stream=stream,
                sync_ids=ids,
            )
        closed.extend(ids)
    return closed
