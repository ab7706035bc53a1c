"""A private, throwaway PostgreSQL server for tests that stop, start or restart the database
(the shared one on :5432 serves every other test): initdb into a temp directory, a free
loopback port, trust auth, fsync off. As root, the server runs as the `postgres` user (initdb
refuses root). The approach of `sync/test_postgres_restart.py`, for reuse."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator

import pytest


class PrivatePostgres:
    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            pytest.fail("PostgreSQL server binaries are required (/usr/lib/postgresql/*/bin)")
        self.bin = bins[-1]
        self.dir = tempfile.mkdtemp(prefix="sync-pg-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.data = os.path.join(self.dir, "data")
        if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_with_password(self, password: str) -> str:
        """The same server with a password in the URL (trust auth ignores it): for tests that
        prove the password never shows."""
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        cmd = [os.path.join(self.bin, tool), *args]
        if os.geteuid() == 0:
            # /usr/sbin is not on every PATH (a minimal `env -i` shell's, a cron job's)
            runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
            cmd = [runuser or "runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    def _ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            self.data,
            "-o",
            options,
            "-l",
            os.path.join(self.dir, "log"),
            "-w",
            action,
            *extra,
        )

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def freeze(self) -> None:
        """SIGSTOP the server and its backends: a database that hangs instead of refusing."""
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)

    def _pids(self) -> list[int]:
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            postmaster = int(f.readline())
        children = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:  # gone meanwhile
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:  # field 4: the parent
                children.append(int(entry))
        return [postmaster, *children]

    def destroy(self) -> None:
        with contextlib.suppress(OSError):  # not running, or not frozen
            self.thaw()
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self._ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def running_private_postgres() -> Iterator[PrivatePostgres]:
    """A started private server, destroyed on exit (for a module- or test-scoped fixture)."""
    pg = PrivatePostgres()
    pg.start()
    try:
        yield pg
    finally:
        pg.destroy()
