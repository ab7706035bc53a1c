"""moto's server (the AWS IoT stand-in, PROVIDERS.md §2.5) on 127.0.0.1:<free port>, in a
background thread of this process.

Like moto's own `ThreadedMotoServer`, but it binds in the caller's thread (port 0 resolves
before `start()` returns, a taken port fails there) and keeps Werkzeug's per-request access
log quiet. Running in-process means the server's state is moto's module-level backends
(`moto.iot.models.iot_backends[account][region]`), which a peer can seed directly — far
faster than moto's ~86 creates/s over HTTP. Those backends are shared by every moto server
in the process: give each peer its own region.
"""

from __future__ import annotations

import threading
from typing import Any

#: the account moto answers for any credentials it has not seen an STS/IAM record of
MOTO_ACCOUNT_ID = "123456789012"


class MotoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("MotoServer is not started; call start() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoServer:
        if self._server is not None:
            return self
        # Imported here: moto (Flask, every backend's index) takes a while to import.
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        class QuietRequestHandler(MotoRequestHandler):
            def log_request(self, code: Any = "-", size: Any = "-") -> None:
                """One line per request on stderr is noise in tests and benchmarks."""

        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(
            self.host, self._requested_port, app, threaded=True, request_handler=QuietRequestHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"moto-server-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def warm_up(self, region: str, *requests: tuple[str, str]) -> None:
        """Send each (SigV4 signing name, path) once, so moto builds the service's app and
        routes now (~0.3 s on a service's first call) and the first real call — and a sync's
        latency figures — do not pay for it. moto does not check signatures."""
        import httpx

        for signing_name, path in requests:
            scope = f"AKIAWARMUP/20260101/{region}/{signing_name}/aws4_request"
            auth = f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=0"
            httpx.get(f"{self.url}{path}", headers={"Authorization": auth}, timeout=30)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
