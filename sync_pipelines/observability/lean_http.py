"""The lean HTTP client: the reads a sync makes by the thousand — the per-device GETs of a
state sync (Golioth's LightDB read, Azure's twin read), a device list's pages (Golioth's GET,
Azure's twin query, a read sent as POST) — over the standard library's `http.client`,
recorded and retried by the same `CallRecorder` as the httpx client (http_recording.py).

Why: a state read is one small GET per device, thousands per sync, and most of its CPU was the
HTTP stack: httpx over httpcore and h11 (pure Python) costs about four times what
`http.client` (whose parser urllib3 uses too) does for the same request (bench/state_read_cpu.py).
Everything else is the recording transport's, unchanged: one activity row per attempt, the
call's one `X-Request-ID` on every attempt, retries per the integration's `RetryPolicy`
(`Retry-After` honoured and reported to the `RateBudget`), the provider-call metrics, a CLIENT
span per attempt when tracing is on, redacted rows. Transport failures are raised as the httpx
exceptions the httpx client raises for them (`ConnectError`, `ConnectTimeout`, `ReadTimeout`,
`RemoteProtocolError`, `PoolTimeout`…), so classifying, retrying and reporting them is one code.

Connections are kept alive (at most `max_connections`, idle ones closed after
`KEEPALIVE_EXPIRY_S` or when the server has closed them, as httpcore does). The outbound guard
(outbound.py) checks each new connection's addresses and the connection goes to exactly those,
so DNS rebinding cannot move it inward. Redirects are not followed and cookies not kept (as our
httpx clients). Proxies from the environment are not supported: with one configured for the
host, `lean_serves` says no and the provider reads through httpx.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode, urlsplit

import httpx

from sync_pipelines.observability.activity import ActivityRecorder
from sync_pipelines.observability.http_recording import (
    REQUEST_ID_HEADER,
    Call,
    CallRecorder,
    new_request_id,
)
from sync_pipelines.observability.redaction import redact_url
from sync_pipelines.observability.retrying import RetryPolicy
from sync_pipelines.outbound import DestinationGuard

if TYPE_CHECKING:
    from sync_pipelines.providers.pacing import RateBudget

#: an idle connection is not reused after this long (httpx's default keep-alive expiry)
KEEPALIVE_EXPIRY_S = 5.0
USER_AGENT = "sync_pipelines"


class LeanResponse:
    """An answer of the lean client, its body read: what a provider reads of a state answer
    (`status_code`, `headers` with a case-insensitive `get`, `content`, `request_id`), and the
    same answer as an `httpx.Response` (`as_httpx`) for the rare paths — an error status, a
    malformed body — that word it the way they word any other answer."""

    __slots__ = ("status_code", "reason_phrase", "headers", "content", "method", "url", "_sent")

    def __init__(
        self,
        status_code: int,
        reason_phrase: str,
        headers: Any,
        content: bytes,
        method: str,
        url: str,
        sent: Mapping[str, str],
    ) -> None:
        self.status_code = status_code
        self.reason_phrase = reason_phrase
        self.headers = headers
        self.content = content
        self.method = method
        self.url = url
        self._sent = sent

    @property
    def request_id(self) -> str | None:
        return self._sent.get(REQUEST_ID_HEADER)

    @property
    def text(self) -> str:
        return self.as_httpx().text  # httpx's charset rules, on the rare path that needs text

    def close(self) -> None:
        pass  # read whole, its connection already given back

    def as_httpx(self) -> httpx.Response:
        return httpx.Response(
            self.status_code,
            headers=list(self.headers.items()),
            content=self.content,
            request=httpx.Request(self.method, self.url, headers=dict(self._sent)),
        )


class Exchange(Protocol):
    """Sends one request and reads its whole answer: (status, reason, headers, body)."""

    def __call__(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None = None
    ) -> tuple[int, str, Any, bytes]: ...


class LeanHttpClient:
    """Reads below `base_url` (GETs, and POSTs that read), each a recorded, retried call (see
    the module docstring).
    `per_call_headers`, when set, adds headers computed for each call (a SAS token that is
    renewed), as an httpx `Auth` does."""

    def __init__(
        self,
        recorder: ActivityRecorder,
        *,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 30.0,
        max_connections: int = 16,
        retry_policy: RetryPolicy | None = None,
        provider: str | None = None,
        budget: RateBudget | None = None,
        exchange: Exchange | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise httpx.UnsupportedProtocol(f"not an http(s) URL: {redact_url(base_url)}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path.rstrip("/")
        self._headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"}
        self._headers.update(headers or {})
        self.per_call_headers: Callable[[], Mapping[str, str]] | None = None
        self.calls = CallRecorder(recorder, retry_policy, provider=provider, budget=budget)
        self._connections = (
            None
            if exchange is not None
            else _Connections(
                parts.scheme, self._host, self._port, timeout_s, max_connections, DestinationGuard()
            )
        )
        self._exchange = exchange or self._connections.exchange  # type: ignore[union-attr]

    def get(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        device_id: str | None = None,
    ) -> LeanResponse:
        """`GET base_url + path` (path already quoted); the last attempt's answer, or the
        last attempt's exception (an httpx TransportError, OutboundRefused)."""
        return self._call("GET", path, params, device_id, None, {}, idempotent=True)

    def post_read(
        self,
        path: str,
        content: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> LeanResponse:
        """A read sent as `POST base_url + path` (a query: the body says what to read), so as
        repeatable as a GET: retried like one."""
        extra = {"Content-Length": str(len(content)), **(headers or {})}
        return self._call("POST", path, params, None, content, extra, idempotent=True)

    def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        device_id: str | None,
        body: bytes | None,
        extra_headers: Mapping[str, str],
        *,
        idempotent: bool,
    ) -> LeanResponse:
        target = self._base_path + path
        if params:
            target = f"{target}?{urlencode(params)}"
        url = self._origin + target
        headers = dict(self._headers)
        headers.update(extra_headers)
        if self.per_call_headers is not None:
            headers.update(self.per_call_headers())

        def once() -> LeanResponse:
            try:
                status, reason, answer_headers, answer = self._exchange(
                    method, target, headers, body
                )
            except httpx.TransportError as exc:
                exc.request = httpx.Request(method, url, headers=dict(headers), content=body)
                raise
            return LeanResponse(status, reason, answer_headers, answer, method, url, headers)

        response = self.calls.run(
            Call(
                method,
                self._host,
                self._port,
                headers,
                new_request_id(),
                redact_url(url),
                idempotent,
                device_id,
                once,
            )
        )
        assert isinstance(response, LeanResponse)
        return response

    def close(self) -> None:
        if self._connections is not None:
            self._connections.close()


class _Connections:
    """Keep-alive `http.client` connections to one origin, at most `limit` in use at once."""

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        timeout_s: float,
        limit: int,
        guard: DestinationGuard,
    ) -> None:
        self._https = scheme == "https"
        self._host, self._port, self._timeout_s = host, port, timeout_s
        self._guard = guard
        self._slots = threading.BoundedSemaphore(limit)
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []
        self._lock = threading.Lock()
        self._ssl_context: ssl.SSLContext | None = None

    def exchange(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None = None
    ) -> tuple[int, str, Any, bytes]:
        conn = self._acquire()
        reusable = False
        try:
            if conn.sock is None:
                _connect(conn)
            try:
                conn.putrequest(method, target, skip_accept_encoding=True)
                for name, value in headers.items():
                    conn.putheader(name, value)
                conn.endheaders(body)
            except TimeoutError as exc:
                raise httpx.WriteTimeout(_said(exc, "timed out sending the request")) from exc
            except OSError as exc:
                raise httpx.WriteError(_said(exc, "the connection failed while sending")) from exc
            try:
                answer = conn.getresponse()
                body = answer.read()
            except TimeoutError as exc:
                raise httpx.ReadTimeout(_said(exc, "timed out waiting for the answer")) from exc
            except http.client.HTTPException as exc:  # closed early, a broken status line…
                raise httpx.RemoteProtocolError(
                    _said(exc, "Server disconnected without sending a complete response.")
                ) from exc
            except OSError as exc:  # reset
                raise httpx.ReadError(_said(exc, "the connection failed while reading")) from exc
            reusable = not answer.will_close
            return answer.status, answer.reason, answer.headers, _decoded(answer.headers, body)
        finally:
            self._release(conn, reusable)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    def _acquire(self) -> http.client.HTTPConnection:
        if not self._slots.acquire(timeout=self._timeout_s):
            raise httpx.PoolTimeout("timed out waiting for a free connection")
        now = time.monotonic()
        with self._lock:
            while self._idle:
                conn, since = self._idle.pop()
                if now - since < KEEPALIVE_EXPIRY_S and _still_open(conn):
                    return conn
                conn.close()
        return self._new()

    def _release(self, conn: http.client.HTTPConnection, reusable: bool) -> None:
        if reusable and conn.sock is not None:
            with self._lock:
                self._idle.append((conn, time.monotonic()))
        else:
            conn.close()
        self._slots.release()

    def _new(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._https:
            if self._ssl_context is None:
                self._ssl_context = httpx.create_ssl_context()  # httpx's trust (certifi)
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout_s, context=self._ssl_context
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
        conn._create_connection = self._open_socket  # type: ignore[attr-defined]
        return conn

    def _open_socket(
        self, address: tuple[str, int], timeout: float, source_address: Any = None
    ) -> socket.socket:
        """`socket.create_connection`, to addresses the guard has just checked (it raises
        OutboundRefused for a forbidden one): what is connected is what was checked."""
        host, port = address
        last: OSError | None = None
        for family, sockaddr in self._guard.resolve(host, port):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                last = exc
        raise last or OSError(f"{host} resolved to no address")


def _connect(conn: http.client.HTTPConnection) -> None:
    try:
        conn.connect()
    except TimeoutError as exc:
        raise httpx.ConnectTimeout(_said(exc, "timed out connecting")) from exc
    except OSError as exc:  # refused, unreachable, a name that does not resolve, TLS
        raise httpx.ConnectError(_said(exc, "cannot connect")) from exc


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """An idle connection with something to read has been closed by the server (or sent what
    no request asked for): either way not reusable."""
    sock = conn.sock
    if sock is None:
        return False
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)


def _decoded(headers: Any, body: bytes) -> bytes:
    coding = (headers.get("Content-Encoding") or "").strip().lower()
    if coding == "gzip":
        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    if coding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:  # raw deflate, as some servers send it
            return zlib.decompress(body, -zlib.MAX_WBITS)
    return body


def _said(exc: BaseException, fallback: str) -> str:
    return str(exc) or f"{fallback} ({type(exc).__name__})"


def lean_serves(base_url: str) -> bool:
    """Whether the lean client can serve `base_url`: http(s), and no proxy configured in the
    environment for its host (the httpx client honours those; this one does not)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return True
    return bool(urllib.request.proxy_bypass_environment(parts.hostname, proxies))
