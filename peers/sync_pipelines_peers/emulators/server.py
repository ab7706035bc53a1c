"""Run an emulator's ASGI app on a real socket: in a background thread for tests and
benchmarks (`EmulatorServer`), or in the foreground for the CLI (`serve_forever`).
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

# Long enough for an in-flight page to finish, short enough that a request hung by a
# `timeout` fault does not hold up a test session's teardown.
_GRACEFUL_SHUTDOWN_S = 2
_STARTUP_TIMEOUT_S = 15.0


def _uvicorn_config(
    app: Any, host: str, port: int, log_level: str, configure_logging: bool
) -> uvicorn.Config:
    extra: dict[str, Any] = {}
    if not configure_logging:
        # Leave the process's logging alone: uvicorn's default dictConfig would replace the
        # handlers the project (and pytest) set up.
        extra["log_config"] = None
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="off",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
        **extra,
    )


class EmulatorServer:
    """Serves one ASGI app on 127.0.0.1 from a background thread.

    `port=0` picks a free port (read it back from `.port` / `.url` after `start()`).
    `start()` returns once the server accepts connections. Safe to run many, one after
    another or side by side, in one process: uvicorn installs no signal handlers off the
    main thread.
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
    ) -> None:
        self.app = app
        self.host = host
        self._requested_port = port
        self._log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._port: int | None = None
        self._failure: BaseException | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("EmulatorServer is not started; call start() first")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> EmulatorServer:
        if self.running:
            raise RuntimeError(f"EmulatorServer already running at {self.url}")
        # Bind here rather than in uvicorn so that port 0 resolves before start() returns and a
        # taken port fails in the caller's thread with a plain OSError.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._requested_port))
        except OSError:
            sock.close()
            raise
        sock.listen(2048)
        sock.set_inheritable(True)
        self._socket = sock
        self._port = sock.getsockname()[1]
        self._failure = None
        self._server = uvicorn.Server(
            _uvicorn_config(
                self.app, self.host, self._port, self._log_level, configure_logging=False
            )
        )
        self._thread = threading.Thread(
            target=self._run, name=f"emulator-server-{self._port}", daemon=True
        )
        self._thread.start()
        self._wait_until_started()
        return self

    def _run(self) -> None:
        assert self._server is not None and self._socket is not None
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # noqa: BLE001 - surfaced to the caller of start()
            self._failure = exc

    def _wait_until_started(self) -> None:
        assert self._server is not None and self._thread is not None
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive():
                self._close_socket()
                raise RuntimeError(
                    f"emulator server on {self.host}:{self._port} exited during startup"
                ) from self._failure
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"emulator server on {self.host}:{self._port} did not start within "
                    f"{_STARTUP_TIMEOUT_S}s"
                )
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop serving and wait for the thread to end (in-flight requests get a short grace)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=_GRACEFUL_SHUTDOWN_S + 10)
        self._close_socket()
        self._thread = None
        self._server = None

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_forever(
    app: Any, host: str = "127.0.0.1", port: int = 8080, log_level: str = "info"
) -> None:
    """Serve `app` in the foreground until interrupted (Ctrl-C / SIGTERM), for the CLI."""
    uvicorn.Server(_uvicorn_config(app, host, port, log_level, configure_logging=True)).run()
