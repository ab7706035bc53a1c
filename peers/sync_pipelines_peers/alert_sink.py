"""A local alert receiver for tests and the demo: a tiny starlette app served by uvicorn in a
thread on a free loopback port. It records every POST (path and JSON body) and can be told to
fail (answer 500, or any status) until told to recover.

    with AlertSink() as sink:
        settings = AlertSettings(channels=(Channel("webhook", "webhook", sink.webhook_url),))
        ...
        for post in sink.received: print(post.path, post.body)
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sync_pipelines_peers.emulators.server import EmulatorServer

WEBHOOK_PATH = "/hooks/alerts"
#: shaped like a Slack incoming-webhook path (workspace / channel / token)
SLACK_PATH = "/services/T0LOCAL/B0LOCAL/local-sink-slack-token"


@dataclass(frozen=True, slots=True)
class ReceivedPost:
    path: str
    body: Any
    #: what the sink answered
    status_code: int


class AlertSink:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[ReceivedPost] = []
        self._fail_with: int | None = None
        app = Starlette(routes=[Route("/{path:path}", self._receive, methods=["POST"])])
        self._server = EmulatorServer(app)

    # -- control ----------------------------------------------------------------------------

    def start(self) -> AlertSink:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def fail(self, status_code: int = 500) -> None:
        """Answer every POST with this status until `recover()`."""
        self._fail_with = status_code

    def recover(self) -> None:
        self._fail_with = None

    def clear(self) -> None:
        with self._lock:
            self._received.clear()

    # -- what it saw --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def webhook_url(self) -> str:
        return self.url + WEBHOOK_PATH

    @property
    def slack_url(self) -> str:
        return self.url + SLACK_PATH

    @property
    def received(self) -> list[ReceivedPost]:
        with self._lock:
            return list(self._received)

    def accepted(self, path: str | None = None) -> list[Any]:
        """Bodies of the POSTs answered 2xx (to `path`, when given), in arrival order."""
        return [
            p.body
            for p in self.received
            if 200 <= p.status_code < 300 and (path is None or p.path == path)
        ]

    # -- the app ----------------------------------------------------------------------------

    async def _receive(self, request: Request) -> PlainTextResponse:
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        status = self._fail_with or 200
        with self._lock:
            self._received.append(ReceivedPost(request.url.path, body, status))
        if status >= 300:
            return PlainTextResponse("sink told to fail", status_code=status)
        return PlainTextResponse("ok")

    def __enter__(self) -> AlertSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
