"""What every benchmark needs: a free loopback port and a fresh, empty store per run (a new
Postgres database, dropped afterwards, or a new SQLite file). Scripts in bench/ import it as
a sibling module (the script's directory is on sys.path)."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Callable

import psycopg

# every peer a benchmark starts listens on loopback, which the service calls only where allowed
# (sync_pipelines/outbound.py); the children started from here inherit it
os.environ.setdefault("SYNC_OUTBOUND_ALLOW", "127.0.0.0/8,::1")

ADMIN_URL = os.environ.get(
    "SYNC_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_store_url(backend: str, prefix: str = "sync_bench") -> tuple[str, Callable[[], None]]:
    """(store URL, drop) for an empty store on `backend` ("sqlite" or "postgres")."""
    if backend == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp(prefix=f'{prefix}-')}/store.db", lambda: None
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}", drop
