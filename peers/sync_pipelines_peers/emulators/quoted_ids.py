"""Device ids as the real APIs take them: one percent-encoded path segment each.

An ASGI server decodes the path before routing, so an id holding `/` (sent as `%2F`) would
split in two and match no route. The emulators route on the path as it was sent
(`RouteOnRawPath`, innermost, so the request log and the faults still see the decoded path)
and declare device ids `{device_id:segment}`, which decodes the one segment.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from starlette.convertors import Convertor, register_url_convertor
from starlette.types import ASGIApp, Receive, Scope, Send


class _SegmentConvertor(Convertor[str]):
    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return unquote(value)

    def to_string(self, value: str) -> str:
        return quote(value, safe="")


register_url_convertor("segment", _SegmentConvertor())


class RouteOnRawPath:
    """Routes on the path as sent, percent-escapes kept (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw:
            scope = {**scope, "path": raw.decode("latin-1")}
        await self.app(scope, receive, send)
