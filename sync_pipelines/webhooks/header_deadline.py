"""A request head must arrive in time: the receiver's HTTP protocol (uvicorn's, which has no such
limit) closes a connection whose request line and headers are not complete within
`SYNC_RECEIVER_HEADER_TIMEOUT_S` (10 s) of the request's first byte — or of the connection, for
its first request — so connections that trickle a header a minute (slowloris) cannot pile up.

Both of uvicorn's HTTP/1.1 protocols get the deadline; the one used is uvicorn's own "auto"
choice — httptools' C parser when installed (pinned: it is about 1.3× cheaper per delivery than
h11's pure-Python one), else h11. Idle keep-alive connections are uvicorn's own
`timeout_keep_alive`; a body that streams slowly is bounded by the size limit and the sender's
patience, not here."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from sync_pipelines.observability.logging import get_logger

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools not installed: uvicorn's "auto" falls back to h11 as well
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

HEADER_TIMEOUT_ENV = "SYNC_RECEIVER_HEADER_TIMEOUT_S"
DEFAULT_HEADER_TIMEOUT_S = 10.0

_log = get_logger("webhooks.receiver")


def header_timeout_s(environ: Mapping[str, str] | None = None) -> float:
    raw = (os.environ if environ is None else environ).get(HEADER_TIMEOUT_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_HEADER_TIMEOUT_S
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{HEADER_TIMEOUT_ENV} must be a number of seconds > 0, got {raw[:40]!r}")
    return value


class _HeadDeadline:
    """The timer: armed when a request (or the connection) begins, disarmed when its head is
    complete; firing closes the connection."""

    header_timeout_s = DEFAULT_HEADER_TIMEOUT_S
    _head_deadline: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    client: Any

    def _arm(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            _log.info(
                "webhook_request_head_timeout",
                client=self.client[0] if self.client else None,
                timeout_s=self.header_timeout_s,
            )
            self.transport.close()


class H11HeadDeadline(_HeadDeadline, H11Protocol):
    """uvicorn's h11 protocol with the deadline: h11's state says whether a head is pending."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # a head still on its way
            self._arm()
        else:  # the head is in: the request is the application's now
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


if HttpToolsProtocol is not None:

    class HttpToolsHeadDeadline(_HeadDeadline, HttpToolsProtocol):
        """uvicorn's httptools protocol with the deadline, from the parser's own callbacks."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:  # the first byte of a request
            self._arm()
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)


def protocol_with_deadline(timeout_s: float) -> type[asyncio.Protocol]:
    """The protocol class for uvicorn's `http=`: httptools' when installed, else h11's."""
    base: type[_HeadDeadline] = (
        H11HeadDeadline if HttpToolsProtocol is None else HttpToolsHeadDeadline
    )
    return type("ReceiverProtocol", (base,), {"header_timeout_s": timeout_s})


def __getattr__(name: str) -> Any:
    """`ReceiverProtocol`: the protocol with the deadline of `$SYNC_RECEIVER_HEADER_TIMEOUT_S`,
    as an import path for uvicorn's worker processes (a class made at run time cannot be sent
    to a spawned process; its import path can)."""
    if name == "ReceiverProtocol":
        return protocol_with_deadline(header_timeout_s())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
