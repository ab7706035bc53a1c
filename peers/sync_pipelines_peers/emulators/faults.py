"""Fault injection for the local provider emulators, shared by every emulator.

Tests ask for latency, 429 + Retry-After, 5xx, hangs, dropped connections, broken JSON, auth
failures and poisoned records, scoped by URL path and method and limited by `times`/`after`/
`probability`. `FaultInjectionMiddleware` applies them around any ASGI app; the provider's
own error body (Golioth rpcStatus, Azure ErrorDetails, ...) comes from a function the
emulator passes in, so nothing here knows any provider's wire format.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Renders the provider's error body for an HTTP status and a human message.
ErrorRenderer = Callable[[int, str], bytes]

#: Where the middleware leaves the `FaultPlan` for the app (poison records) and the request log.
FAULT_PLAN_SCOPE_KEY = "emulator.fault_plan"

DEFAULT_TIMEOUT_HANG_MS = 30_000
DEFAULT_RETRY_AFTER_S = 1
# A Content-Length the dropped response promises but never delivers.
_DROPPED_CONTENT_LENGTH = 4096
# Starts like a real list page, then turns into the HTML error page a proxy would send.
_MALFORMED_BODY = b'{"list":[{"id":"<html><body><h1>502 Bad Gateway</h1></body></html>'


class FaultKind(StrEnum):
    LATENCY = "latency"
    RATE_LIMIT = "rate_limit"
    SERVER_ERROR = "server_error"
    MALFORMED_JSON = "malformed_json"
    TRUNCATED_JSON = "truncated_json"
    AUTH_FAILURE = "auth_failure"
    TIMEOUT = "timeout"
    DROP_CONNECTION = "drop_connection"
    POISON_RECORD = "poison_record"


class PoisonShape(StrEnum):
    #: keeps the id, breaks types: `createdAt: "not-a-time"`, `hardwareIds: "oops"`
    BAD_TYPES = "bad_types"
    #: drops the id entirely
    MISSING_ID = "missing_id"


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One fault a test asked for. The JSON form uses the same field names."""

    kind: FaultKind
    #: regex searched in the URL path; None matches every path
    path: str | None = None
    #: HTTP method (any case); None matches every method
    method: str | None = None
    #: apply to the next N eligible requests, then expire; None = until cleared
    times: int | None = None
    #: let the first K requests matching path/method through untouched first
    after: int = 0
    #: chance (0..1) that an eligible request gets the fault; drawn from a seeded RNG
    probability: float | None = None
    #: latency: added delay; timeout: how long to hang (default 30 s)
    latency_ms: int | None = None
    #: server_error: HTTP status (default 503)
    status: int | None = None
    #: rate_limit: Retry-After seconds (default 1)
    retry_after_s: int | None = None
    #: rate_limit: how Retry-After says it — "seconds" (delta-seconds) or "http-date" (the
    #: moment `retry_after_s` from now, RFC 9110 §10.2.3)
    retry_after_format: str = "seconds"
    #: poison_record: which device to break, by creation index or by id
    device_index: int | None = None
    device_id: str | None = None
    #: poison_record: how to break it
    shape: PoisonShape = PoisonShape.BAD_TYPES

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FaultKind(self.kind))
        object.__setattr__(self, "shape", PoisonShape(self.shape))
        if self.path is not None:
            try:
                re.compile(self.path)
            except re.error as exc:
                raise ValueError(f"fault 'path' is not a valid regex: {exc}") from exc
        if self.times is not None and self.times < 1:
            raise ValueError(f"fault 'times' must be >= 1, got {self.times}")
        if self.after < 0:
            raise ValueError(f"fault 'after' must be >= 0, got {self.after}")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"fault 'probability' must be within 0..1, got {self.probability}")
        if self.latency_ms is not None and self.latency_ms < 0:
            raise ValueError(f"fault 'latency_ms' must be >= 0, got {self.latency_ms}")
        if self.kind is FaultKind.LATENCY and self.latency_ms is None:
            raise ValueError("a 'latency' fault needs 'latency_ms'")
        if self.retry_after_format not in ("seconds", "http-date"):
            raise ValueError(
                f"fault 'retry_after_format' must be seconds or http-date, got {self.retry_after_format!r}"
            )
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError(f"fault 'status' must be an HTTP error status, got {self.status}")
        if self.kind is FaultKind.POISON_RECORD and (self.device_index, self.device_id) == (
            None,
            None,
        ):
            raise ValueError("a 'poison_record' fault needs 'device_index' or 'device_id'")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultSpec:
        """Build from a JSON object; unknown fields are refused so typos don't pass silently."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a fault spec must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault spec field(s) {unknown}; known: {sorted(known)}")
        if "kind" not in data:
            raise ValueError(f"a fault spec needs 'kind', one of {[k.value for k in FaultKind]}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"invalid fault spec {dict(data)!r}: {exc}") from exc

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, StrEnum) else v) for k, v in asdict(self).items()}

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or re.search(self.path, path) is not None


@dataclass(slots=True)
class _ActiveFault:
    """A fault in force, with the counters `times`/`after` need."""

    id: int
    spec: FaultSpec
    matched: int = 0
    applied: int = 0

    @property
    def expired(self) -> bool:
        return self.spec.times is not None and self.applied >= self.spec.times

    def to_json(self) -> dict[str, Any]:
        remaining = None if self.spec.times is None else self.spec.times - self.applied
        return {
            "id": self.id,
            **self.spec.to_json(),
            "matched": self.matched,
            "applied": self.applied,
            "remaining": remaining,
        }


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What to do to one request: extra delay, at most one response fault, records to poison."""

    #: configured base latency plus every applied latency fault
    added_latency_ms: int = 0
    response_fault: FaultSpec | None = None
    poison: tuple[FaultSpec, ...] = ()
    #: the kinds of the faults applied, in the order they were put in force (for request logs)
    applied_kinds: tuple[str, ...] = ()


_NO_FAULTS = FaultPlan()
_RESPONSE_KINDS = frozenset(FaultKind) - {FaultKind.LATENCY, FaultKind.POISON_RECORD}


class TokenBucket:
    """A plain token bucket: `rate_per_s` sustained, `burst` at once."""

    def __init__(
        self,
        rate_per_s: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"token bucket rate must be > 0, got {rate_per_s}")
        self.rate_per_s = rate_per_s
        self.burst = burst if burst is not None else max(1.0, rate_per_s)
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def try_acquire(self) -> float:
        """Take a token and return 0.0, or return the seconds until one will be available."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate_per_s)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate_per_s


class FaultInjector:
    """The faults in force and the decision, per request, of which ones apply.

    Thread-safe: tests add faults from their own thread while the server's loop plans requests.
    Every fault counts the requests matching its path/method; once past `after` (and a
    `probability` draw) a request is eligible. All eligible latency and poison faults apply;
    of the rest, only the oldest eligible one does, and only that one spends one of its `times`.
    """

    def __init__(
        self,
        seed: int = 0,
        base_latency_ms: int = 0,
        rate_limiter: TokenBucket | None = None,
    ) -> None:
        self.base_latency_ms = base_latency_ms
        self.rate_limiter = rate_limiter
        self._seed = seed
        self._rng = random.Random(seed)
        self._faults: list[_ActiveFault] = []
        self._next_id = 1
        self._applied_by_kind: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, specs: Iterable[FaultSpec | Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Put faults in force (after any already there); returns them with their ids."""
        parsed = [s if isinstance(s, FaultSpec) else FaultSpec.from_json(s) for s in specs]
        with self._lock:
            added = []
            for spec in parsed:
                active = _ActiveFault(id=self._next_id, spec=spec)
                self._next_id += 1
                self._faults.append(active)
                added.append(active.to_json())
            return added

    def clear(self) -> None:
        """Remove every fault and restart the RNG, so a test's draws don't depend on the last."""
        with self._lock:
            self._faults.clear()
            self._rng = random.Random(self._seed)

    def active(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_json() for f in self._faults]

    def applied_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._applied_by_kind)

    def plan(self, method: str, path: str) -> FaultPlan:
        """Decide what happens to one request, spending counters as it goes."""
        if self.rate_limiter is not None:
            wait_s = self.rate_limiter.try_acquire()
            if wait_s > 0:
                limited = FaultSpec(
                    kind=FaultKind.RATE_LIMIT, retry_after_s=max(1, math.ceil(wait_s))
                )
                self._count_applied(limited.kind)
                return FaultPlan(response_fault=limited, applied_kinds=(limited.kind.value,))
        if not self._faults and not self.base_latency_ms:
            return _NO_FAULTS
        with self._lock:
            latency_ms = self.base_latency_ms
            response_fault: _ActiveFault | None = None
            poison: list[FaultSpec] = []
            applied_kinds: list[str] = []
            for active in self._faults:
                if not active.spec.matches(method, path):
                    continue
                active.matched += 1
                if active.matched <= active.spec.after:
                    continue
                kind = active.spec.kind
                if kind in _RESPONSE_KINDS and response_fault is not None:
                    continue
                if active.spec.probability is not None and (
                    self._rng.random() >= active.spec.probability
                ):
                    continue
                active.applied += 1
                applied_kinds.append(kind.value)
                self._applied_by_kind[kind.value] = self._applied_by_kind.get(kind.value, 0) + 1
                if kind is FaultKind.LATENCY:
                    latency_ms += active.spec.latency_ms or 0
                elif kind is FaultKind.POISON_RECORD:
                    poison.append(active.spec)
                else:
                    response_fault = active
            self._faults = [f for f in self._faults if not f.expired]
            return FaultPlan(
                added_latency_ms=latency_ms,
                response_fault=response_fault.spec if response_fault else None,
                poison=tuple(poison),
                applied_kinds=tuple(applied_kinds),
            )

    def _count_applied(self, kind: FaultKind) -> None:
        with self._lock:
            self._applied_by_kind[kind.value] = self._applied_by_kind.get(kind.value, 0) + 1


def fault_plan_of(scope: Scope) -> FaultPlan:
    """The plan the middleware made for this request (no faults if it was exempt)."""
    return scope.get(FAULT_PLAN_SCOPE_KEY, _NO_FAULTS)


class FaultInjectionMiddleware:
    """Pure ASGI middleware that applies the injector's plan to each HTTP request.

    Paths under `exempt_path_prefixes` (the emulators' own control routes) are never faulted,
    so a test can always reach the knobs to turn a fault off.
    """

    def __init__(
        self,
        app: ASGIApp,
        injector: FaultInjector,
        render_error: ErrorRenderer,
        exempt_path_prefixes: tuple[str, ...] = ("/_emulator",),
    ) -> None:
        self.app = app
        self.injector = injector
        self.render_error = render_error
        self.exempt_path_prefixes = exempt_path_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt_path_prefixes):
            await self.app(scope, receive, send)
            return
        plan = self.injector.plan(scope["method"], scope["path"])
        scope[FAULT_PLAN_SCOPE_KEY] = plan
        if plan.added_latency_ms:
            await asyncio.sleep(plan.added_latency_ms / 1000)
        fault = plan.response_fault
        if fault is None:
            await self.app(scope, receive, send)
            return
        kind = fault.kind
        if kind is FaultKind.RATE_LIMIT:
            retry_after_s = fault.retry_after_s or DEFAULT_RETRY_AFTER_S
            retry_after = (
                email.utils.formatdate(time.time() + retry_after_s, usegmt=True)
                if fault.retry_after_format == "http-date"
                else str(retry_after_s)
            )
            await self._send_error(
                send,
                429,
                f"rate limit exceeded: retry after {retry_after_s}s",
                extra_headers=[(b"retry-after", retry_after.encode())],
            )
        elif kind is FaultKind.SERVER_ERROR:
            status = fault.status or 503
            await self._send_error(send, status, f"injected server error ({status})")
        elif kind is FaultKind.AUTH_FAILURE:
            await self._send_error(send, 401, "invalid credentials (injected auth failure)")
        elif kind is FaultKind.MALFORMED_JSON:
            await _send_response(send, 200, _MALFORMED_BODY)
        elif kind is FaultKind.TRUNCATED_JSON:
            await self._send_truncated(scope, receive, send)
        elif kind is FaultKind.TIMEOUT:
            await self._hang_then_answer(scope, receive, send, fault)
        elif kind is FaultKind.DROP_CONNECTION:
            await _send_then_drop(send)

    async def _send_error(
        self,
        send: Send,
        status: int,
        message: str,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        await _send_response(send, status, self.render_error(status, message), extra_headers)

    async def _send_truncated(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        cut = body[: len(body) // 2]
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(cut)).encode()))
        await send(
            {"type": "http.response.start", "status": start.get("status", 200), "headers": headers}
        )
        await send({"type": "http.response.body", "body": cut})

    async def _hang_then_answer(
        self, scope: Scope, receive: Receive, send: Send, fault: FaultSpec
    ) -> None:
        hang_s = (
            fault.latency_ms if fault.latency_ms is not None else DEFAULT_TIMEOUT_HANG_MS
        ) / 1000
        disconnected, buffered = await _wait_unless_disconnected(receive, hang_s)
        if disconnected:
            # The client gave up, which is the point; there is nobody left to answer.
            return
        await self.app(scope, _replaying(buffered, receive), send)


async def _send_response(
    send: Send,
    status: int,
    body: bytes,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_then_drop(send: Send) -> None:
    # Promise a body, send a sliver of it and return: the server closes the connection because
    # the response is incomplete, and the client sees a protocol error mid-body.
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(_DROPPED_CONTENT_LENGTH).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b'{"list":[{"id":"', "more_body": True})


async def _wait_unless_disconnected(receive: Receive, seconds: float) -> tuple[bool, list[Message]]:
    """Wait `seconds`, returning early if the client disconnects.

    Reads the request body while waiting (that is how ASGI reports a disconnect), so the
    messages read are returned for replay to the app.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    buffered: list[Message] = []
    while (remaining := deadline - loop.time()) > 0:
        try:
            message = await asyncio.wait_for(receive(), remaining)
        except TimeoutError:
            break
        if message["type"] == "http.disconnect":
            return True, buffered
        buffered.append(message)
    return False, buffered


def _replaying(buffered: list[Message], receive: Receive) -> Receive:
    async def replay() -> Message:
        if buffered:
            return buffered.pop(0)
        return await receive()

    return replay
