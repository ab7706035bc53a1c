"""The receiver process closes a connection whose request head does not arrive in time
(slowloris), while well-behaved senders on other connections are served."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sync_pipelines.webhooks.header_deadline import HEADER_TIMEOUT_ENV, header_timeout_s

CLI = str(Path(sys.executable).with_name("sync-pipelines"))
DEADLINE_S = 1.0


@pytest.fixture
def receiver_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, HEADER_TIMEOUT_ENV: str(DEADLINE_S), "SYNC_LOG_LEVEL": "WARNING"}
    env.pop("DAGSTER_HOME", None)
    proc = subprocess.Popen(
        [CLI, "receiver", "--port", str(port), "--database-url", f"sqlite:///{tmp_path}/s.db"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        try:
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.1)
    yield port
    proc.terminate()
    proc.wait(10)


def _closed_after(sock: socket.socket, trickle: bytes, every_s: float) -> float:
    """Send `trickle` a byte at a time; seconds until the server closes the connection."""
    started = time.monotonic()
    sock.settimeout(every_s)
    for byte in trickle:
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(1024) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started
    pytest.fail("the connection stayed open for the whole trickle")


def test_a_trickled_request_head_is_cut_off_and_others_are_served(receiver_port):
    head = b"POST /webhooks/golioth/gw HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 100
    with socket.create_connection(("127.0.0.1", receiver_port)) as slow:
        took = _closed_after(slow, head, every_s=0.2)
    assert DEADLINE_S * 0.8 <= took <= DEADLINE_S + 2.0, took
    # a connection that never sends a byte is closed as well
    with socket.create_connection(("127.0.0.1", receiver_port)) as silent:
        silent.settimeout(DEADLINE_S + 3)
        started = time.monotonic()
        assert silent.recv(1024) == b""
        assert time.monotonic() - started <= DEADLINE_S + 2.0
    # meanwhile a sender that speaks normally is answered (an unknown integration: 404)
    answer = httpx.post(f"http://127.0.0.1:{receiver_port}/webhooks/golioth/nobody", content=b"{}")
    assert answer.status_code == 404


def test_the_deadline_setting_is_checked():
    assert header_timeout_s({}) == 10.0
    assert header_timeout_s({HEADER_TIMEOUT_ENV: "2.5"}) == 2.5
    with pytest.raises(ValueError, match=HEADER_TIMEOUT_ENV):
        header_timeout_s({HEADER_TIMEOUT_ENV: "soon"})
    with pytest.raises(ValueError, match=HEADER_TIMEOUT_ENV):
        header_timeout_s({HEADER_TIMEOUT_ENV: "0"})


async def _ok(scope, receive, send):  # the smallest ASGI app: 200, empty body
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_both_of_uvicorns_parsers_enforce_the_deadline_across_keep_alive_requests(parser):
    import threading

    import uvicorn

    from sync_pipelines.webhooks.header_deadline import H11HeadDeadline, HttpToolsHeadDeadline

    base = HttpToolsHeadDeadline if parser == "httptools" else H11HeadDeadline
    protocol = type("TestProtocol", (base,), {"header_timeout_s": DEADLINE_S})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(_ok, host="127.0.0.1", port=port, http=protocol, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            # a whole request is answered; then the next request's head trickles and is cut
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.recv(1024).startswith(b"HTTP/1.1 200")
            took = _closed_after(conn, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 60, 0.2)
        assert DEADLINE_S * 0.8 <= took <= DEADLINE_S + 2.0, took
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.parametrize(
    "command, env, expected",
    [
        (["receiver"], {"SYNC_RECEIVER_MAX_IN_FLIGHT": "abc"}, "SYNC_RECEIVER_MAX_IN_FLIGHT"),
        (["receiver"], {HEADER_TIMEOUT_ENV: "0"}, HEADER_TIMEOUT_ENV),
        (["receiver"], {"SYNC_RECEIVER_WORKERS": "0"}, "SYNC_RECEIVER_WORKERS"),
        (["console"], {"SYNC_CONSOLE_TOKEN": "short"}, "SYNC_CONSOLE_TOKEN is shorter"),
    ],
)
def test_a_bad_listener_setting_is_one_line_naming_it(tmp_path, command, env, expected):
    from click.testing import CliRunner

    from sync_pipelines.cli import main

    env = {"SYNC_DATABASE_URL": f"sqlite:///{tmp_path}/s.db", **env}
    result = CliRunner().invoke(main, [*command, "--port", "1"], env=env)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and expected in result.output, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # handled, no traceback
    assert "short" not in result.output.replace("shorter", "")  # the value is never echoed
