"""Real MQTT brokers on loopback for tests, the demo and the MQTT peer (PROVIDERS.md §4.7).

`MosquittoBroker` runs the system `mosquitto` binary as a child process with a generated,
explicit config: a 127.0.0.1 listener on a free port, `allow_anonymous false` with a password
file, persistence in a temp directory (so `restart()` keeps retained messages and persistent
sessions, as a production broker does), and the queue knobs the tests turn
(`max_queued_messages`, `max_inflight_messages`, `sys_interval`). Password hashes are written in Mosquitto 2.0's
own `$7$` format (PBKDF2-SHA512, 101 iterations, 12-byte salt — byte-for-byte what
`mosquitto_passwd` produces), so no password ever appears in a process's arguments.
Debian's broker drops privileges to user `mosquitto` when started as root and could then not
write our temp dir; as root we say `user root` instead (a loopback test broker).

`AmqttBroker` is the pure-Python fallback for machines without Mosquitto (amqtt 0.12, MQTT
3.1.1 only): no persistence, no queue knobs, and the password file is read at start only, so
`restart()` and `set_users()` re-publish a snapshot of the retained messages but lose
persistent sessions. Two amqtt 0.12.1 bugs matter: every connecting client is sent the retained
messages of every filter anyone ever subscribed (the provider drops them as strays); and once
that replay happens, a resumed persistent session intermittently loses queued QoS 1 messages
whose acknowledgement waits for a commit (3 of 10 delivered in some runs, never redelivered).
Telemetry guarantees are proven on Mosquitto; amqtt is for the demo on machines without it.
`start_broker()` picks Mosquitto when it is installed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from sync_pipelines.errors import ProviderError
from sync_pipelines.providers.mqtt_client import BrokerEndpoint, MqttConnection

HOST = "127.0.0.1"
_START_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 10.0
_MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in _MOSQUITTO_PATHS if os.access(p, os.X_OK)), None
    )


def mosquitto_password_hash(password: str, *, iterations: int = 101) -> str:
    """`$7$<iterations>$<salt>$<hash>`: PBKDF2-HMAC-SHA512, base64 — Mosquitto 2.0's format."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


class _BrokerProcess:
    """What both launchers share: a child process on a fixed free port, started and stopped."""

    kind = ""

    def __init__(
        self, users: Mapping[str, str], *, port: int = 0, workdir: str | None = None
    ) -> None:
        if not users:
            raise ValueError("a broker needs at least one user (anonymous access is off)")
        self.users = dict(users)
        self.host = HOST
        self.port = port or _free_port()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"{self.kind}-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def endpoint(self, username: str | None = None, *, timeout_s: float = 5.0) -> BrokerEndpoint:
        """An endpoint for one of the broker's users (the first by default)."""
        username = username or next(iter(self.users))
        return BrokerEndpoint(
            self.host,
            self.port,
            username,
            self.users[username],
            timeout_s=timeout_s,
            provider=self.kind,
        )

    def start(self) -> _BrokerProcess:
        if self.running:
            return self
        self._write_files()
        self.proc = subprocess.Popen(
            self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.workdir
        )
        self._wait_until_listening()
        return self

    def stop(self) -> None:
        """Stop gracefully (Mosquitto writes its persistence file on SIGTERM)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def set_users(self, users: Mapping[str, str]) -> None:
        """Replace the password file; a running broker applies it to new connections."""
        raise NotImplementedError

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> _BrokerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def _write_files(self) -> None:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.kind} exited with {self.proc.returncode} on port {self.port}: "
                    f"{self._log_tail()}"
                )
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"{self.kind} did not listen on {self.host}:{self.port} within {_START_TIMEOUT_S:g} s"
        )

    def _log_tail(self) -> str:
        return ""


class MosquittoBroker(_BrokerProcess):
    kind = "mosquitto"

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        port: int = 0,
        workdir: str | None = None,
        max_queued_messages: int = 100_000,
        max_inflight_messages: int = 1000,
        persistence: bool = True,
        sys_interval: int | None = None,
    ) -> None:
        super().__init__(users, port=port, workdir=workdir)
        self.binary = mosquitto_binary()
        if self.binary is None:
            raise RuntimeError(
                "mosquitto is not installed (apt-get install mosquitto); use AmqttBroker"
            )
        self.max_queued_messages = max_queued_messages
        self.max_inflight_messages = max_inflight_messages
        self.persistence = persistence
        #: seconds between $SYS publishes (Mosquitto's default: 10)
        self.sys_interval = sys_interval

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def set_users(self, users: Mapping[str, str]) -> None:
        self.users = dict(users)
        self._write_password_file()
        if self.running:
            assert self.proc is not None
            reloads = self._log_text().count("Reloading config.")
            self.proc.send_signal(signal.SIGHUP)
            # The reload runs in the broker's one thread right after it logs this line, so
            # every connection accepted after it sees the new password file.
            deadline = time.monotonic() + _START_TIMEOUT_S
            while self._log_text().count("Reloading config.") <= reloads:
                if time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not reload its config after SIGHUP")
                time.sleep(0.01)

    def dropped_message_notices(self) -> int:
        """How often the broker logged that it dropped queued messages for a client."""
        return self._log_text().count("Outgoing messages are being dropped")

    def _command(self) -> list[str]:
        assert self.binary is not None
        return [self.binary, "-c", str(self.workdir / "mosquitto.conf")]

    def _write_files(self) -> None:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        self._write_password_file()
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous false",
            f"password_file {self.workdir / 'passwd'}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {data}/",
            f"max_queued_messages {self.max_queued_messages}",
            f"max_inflight_messages {self.max_inflight_messages}",
            *([f"sys_interval {self.sys_interval}"] if self.sys_interval else []),
            # as production brokers are usually tuned: acks are not held back by Nagle's algorithm
            "set_tcp_nodelay true",
            f"log_dest file {self.log_path}",
            *(f"log_type {t}" for t in ("error", "warning", "notice", "information")),
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # see module docstring
        (self.workdir / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    def _write_password_file(self) -> None:
        path = self.workdir / "passwd"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            "".join(f"{u}:{mosquitto_password_hash(p)}\n" for u, p in self.users.items())
        )
        tmp.chmod(0o600)
        tmp.replace(path)

    def _log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _log_tail(self) -> str:
        return self._log_text()[-1500:]


class AmqttBroker(_BrokerProcess):
    kind = "amqtt"

    def __init__(
        self, users: Mapping[str, str], *, port: int = 0, workdir: str | None = None
    ) -> None:
        super().__init__(users, port=port, workdir=workdir)
        self._retained: dict[str, bytes] = {}

    def stop(self) -> None:
        # amqtt keeps nothing across a restart: carry the retained messages over by hand
        if self.running:
            try:
                self._retained = self._snapshot_retained()
            except ProviderError:
                self._retained = {}
        super().stop()

    def start(self) -> AmqttBroker:
        was_running = self.running
        super().start()
        if not was_running and self._retained:
            self._republish(self._retained)
            self._retained = {}
        return self

    def set_users(self, users: Mapping[str, str]) -> None:
        if not self.running:
            self.users = dict(users)
            return
        self.stop()  # the password file is only read at start; snapshot with the old users
        self.users = dict(users)
        self.start()

    def _command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "amqtt.scripts.broker_script",
            "-c",
            str(self.workdir / "broker.yaml"),
        ]

    def _write_files(self) -> None:
        from pwdlib import PasswordHash  # amqtt's own dependency
        from pwdlib.hashers.argon2 import Argon2Hasher

        hasher = PasswordHash((Argon2Hasher(),))
        (self.workdir / "passwd").write_text(
            "".join(f"{u}:{hasher.hash(p)}\n" for u, p in self.users.items())
        )
        (self.workdir / "broker.yaml").write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: {self.host}:{self.port}\n"
            "plugins:\n  amqtt.plugins.authentication.FileAuthPlugin:\n"
            f"    password_file: {self.workdir / 'passwd'}\n"
        )

    def _snapshot_retained(self) -> dict[str, bytes]:
        with MqttConnection(self.endpoint(), f"amqtt-snapshot-{secrets.token_hex(3)}") as conn:
            return {m.topic: m.payload for m in conn.read_retained(["#"], qos=0) if m.payload}

    def _republish(self, retained: Mapping[str, bytes]) -> None:
        if not retained:
            return
        with MqttConnection(
            self.endpoint(), f"amqtt-restore-{secrets.token_hex(3)}", max_inflight_out=500
        ) as conn:
            conn.wait_published(
                [conn.publish(t, p, qos=1, retain=True) for t, p in retained.items()]
            )


Broker = MosquittoBroker | AmqttBroker


def start_broker(
    users: Mapping[str, str], *, prefer: str | None = None, **options: object
) -> Broker:
    """A started broker: Mosquitto when installed (or `prefer="mosquitto"`), else amqtt.

    `options` are MosquittoBroker's queue knobs; amqtt has none and ignores them."""
    if prefer == "amqtt" or (prefer is None and mosquitto_binary() is None):
        broker: Broker = AmqttBroker(users, port=int(options.get("port", 0) or 0))  # type: ignore[arg-type]
    else:
        broker = MosquittoBroker(users, **options)  # type: ignore[arg-type]
    broker.start()
    return broker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]
