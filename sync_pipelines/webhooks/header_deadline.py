"""A request head must arrive in time: the receiver's HTTP protocol (uvicorn's h11 one, which
has no such limit) closes a connection whose request line and headers are not complete within
`SYNC_RECEIVER_HEADER_TIMEOUT_S` (10 s) of its first byte — or of the connection, for the
first request — so connections that trickle a header a minute (slowloris) cannot pile up.

Idle keep-alive connections are uvicorn's own `timeout_keep_alive`; a body that streams slowly
is bounded by the size limit and the sender's patience, not here."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from sync_pipelines.observability.logging import get_logger

HEADER_TIMEOUT_ENV = "SYNC_RECEIVER_HEADER_TIMEOUT_S"
DEFAULT_HEADER_TIMEOUT_S = 10.0

_log = get_logger("webhooks.receiver")


def header_timeout_s(environ: dict[str, str] | None = None) -> float:
    raw = (os.environ if environ is None else environ).get(HEADER_TIMEOUT_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_HEADER_TIMEOUT_S
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{HEADER_TIMEOUT_ENV} must be a number of seconds > 0, got {raw[:40]!r}")
    return value


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, with a deadline on every request head."""

    header_timeout_s = DEFAULT_HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # a head still on its way
            if self._head_deadline is None:
                self._arm()
        else:  # the head is in: the request is the application's now
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            _log.info(
                "webhook_request_head_timeout",
                client=self.client[0] if self.client else None,
                timeout_s=self.header_timeout_s,
            )
            self.transport.close()


def protocol_with_deadline(timeout_s: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class for uvicorn's `http=` with this deadline."""
    return type("ReceiverProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": timeout_s})
