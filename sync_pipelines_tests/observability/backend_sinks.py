"""A loopback HTTP sink standing in for Sentry and an OpenTelemetry collector: it keeps every
request the real SDKs send (bodies decompressed) and decodes Sentry envelopes and OTLP/HTTP
trace exports (protobuf, with opentelemetry-proto). Used by the tests and bench/."""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes  # decompressed


class BackendSink:
    """Answers 200 to every POST and remembers it. `with BackendSink() as sink:`."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    raw = gzip.decompress(raw)
                elif encoding == "deflate":
                    raw = zlib.decompress(raw)
                with sink._lock:
                    sink.requests.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
                    )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def sentry_dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self._server.server_address[1]}/1"

    def __enter__(self) -> BackendSink:
        self._thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def received(self, path_part: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path_part in r.path]

    # -- Sentry -----------------------------------------------------------------------------

    def sentry_envelopes(self) -> list[Received]:
        return self.received("/envelope/")

    def sentry_events(self) -> list[dict[str, Any]]:
        """The error events of every envelope (sessions, client reports left out)."""
        events = []
        for envelope in self.sentry_envelopes():
            for item_header, payload in _envelope_items(envelope.body):
                if item_header.get("type") == "event":
                    events.append(json.loads(payload))
        return events

    # -- OTLP -------------------------------------------------------------------------------

    def otlp_spans(self) -> list[Any]:
        """Every span of every `/v1/traces` export, as opentelemetry.proto Span messages."""
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        spans = []
        for export in self.received("/v1/traces"):
            request = ExportTraceServiceRequest()
            request.ParseFromString(export.body)
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    spans.extend(scope_spans.spans)
        return spans


def _envelope_items(body: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """Sentry envelope: a header line, then per item a header line and its payload (of
    `length` bytes when given, else up to the next newline)."""
    items = []
    _header, _, rest = body.partition(b"\n")
    while rest.strip():
        line, _, rest = rest.partition(b"\n")
        item_header = json.loads(line)
        length = item_header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length + 1 :]
        items.append((item_header, payload))
    return items
