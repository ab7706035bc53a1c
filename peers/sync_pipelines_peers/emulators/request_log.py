"""The request log an emulator keeps: what it received, for tests to compare with what the
client sent. Provider-agnostic: any emulator's app records through `RequestRecordingMiddleware`."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from sync_pipelines_peers.emulators.faults import ASGIApp, Receive, Scope, Send, fault_plan_of

JsonDict = dict[str, Any]

#: the emulators' own control routes, never logged (nor faulted)
CONTROL_PREFIX = "/_emulator"

# Present in the log (so a test can see the header was sent) but never with its value.
_SECRET_HEADERS = frozenset({b"x-api-key", b"authorization", b"proxy-authorization", b"cookie"})
_REDACTED = "[REDACTED]"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    #: None when the client went away before any response started (e.g. a `timeout` fault)
    status: int | None
    #: the X-Request-ID header the client sent
    request_id: str | None
    #: the raw headers; `headers` gives them sanitized
    raw_headers: tuple[tuple[bytes, bytes], ...]
    #: the fault kinds applied to this request
    faults: tuple[str, ...]
    received_at: float

    @property
    def headers(self) -> dict[str, str]:
        sanitized: dict[str, str] = {}
        for raw_name, raw_value in self.raw_headers:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            if raw_name.lower() in _SECRET_HEADERS:
                scheme, _, credentials = value.partition(" ")
                value = f"{scheme} {_REDACTED}" if credentials else _REDACTED
            sanitized[name] = f"{sanitized[name]}, {value}" if name in sanitized else value
        return sanitized

    def to_json(self) -> JsonDict:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "request_id": self.request_id,
            "headers": self.headers,
            "faults": list(self.faults),
            "received_at": self.received_at,
        }


class RequestLog:
    """The last `max_entries` requests, plus a running total."""

    def __init__(self, max_entries: int) -> None:
        self._entries: deque[RecordedRequest] = deque(maxlen=max_entries)
        self.total = 0

    def append(self, entry: RecordedRequest) -> None:
        self._entries.append(entry)
        self.total += 1

    def entries(self) -> list[RecordedRequest]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()


class RequestRecordingMiddleware:
    """Pure ASGI middleware appending every non-control request to a `RequestLog`.

    Sits outside fault injection so it records what the client actually got.
    """

    def __init__(
        self,
        app: ASGIApp,
        log: RequestLog,
        exempt_path_prefixes: tuple[str, ...] = (CONTROL_PREFIX,),
    ) -> None:
        self.app = app
        self.log = log
        self.exempt_path_prefixes = exempt_path_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt_path_prefixes):
            await self.app(scope, receive, send)
            return
        received_at = time.time()
        status: int | None = None

        async def send_and_note_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        except Exception:
            status = status or 500
            raise
        finally:
            headers = tuple(scope["headers"])
            request_id = next(
                (v.decode("latin-1") for k, v in headers if k.lower() == b"x-request-id"), None
            )
            self.log.append(
                RecordedRequest(
                    method=scope["method"],
                    path=scope["path"],
                    query=scope["query_string"].decode("latin-1"),
                    status=status,
                    request_id=request_id,
                    raw_headers=headers,
                    faults=fault_plan_of(scope).applied_kinds,
                    received_at=received_at,
                )
            )
