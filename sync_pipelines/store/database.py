"""The one connection layer: a SQLAlchemy engine for SQLite (embedded default) or PostgreSQL.

SQL stays SQL: queries are `text()` with `:name` parameters on both engines; Postgres-only
fast paths (COPY) use the raw psycopg connection underneath.
"""

from __future__ import annotations

import copy
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from sync_pipelines.clock import utc_now  # noqa: F401 - re-exported for store modules

DATABASE_URL_ENV = "SYNC_DATABASE_URL"
SYNC_HOME_ENV = "SYNC_HOME"


class StoreConfigError(ValueError):
    """The store's URL or location is unusable."""


class StoreNotFound(StoreConfigError):
    """A command that only reads was pointed at a store that does not exist (it never creates one)."""


def format_timestamp(value: datetime) -> str:
    """Fixed-width ISO-8601 UTC, so SQLite's text timestamps sort and compare correctly."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: the store only takes timezone-aware times")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(value: Any) -> datetime | None:
    """A timestamp column as read back: datetime on Postgres, text on SQLite."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def load_json(value: Any) -> Any:
    """A JSONB column as read back: decoded on Postgres, text on SQLite."""
    if value is None or isinstance(value, dict | list):
        return value
    return json.loads(value)


# One encoder, built once: `json.dumps` with options builds a new JSONEncoder on every call,
# which is most of its cost for the small documents written per device.
_encode_json = json.JSONEncoder(separators=(",", ":"), default=str).encode


def sql_list(values: Iterable[str]) -> str:
    """`'a', 'b'`: our own constants (statuses, row types) written into a query as literals, so
    the planner can match partial indexes on them. Never for input."""
    return ", ".join(f"'{v}'" for v in values)


def ping(conn: Connection) -> None:
    """The cheapest round trip: raises if the store does not answer."""
    conn.execute(sa.text("SELECT 1")).scalar()


def use_organization(conn: Connection, organization_id: str) -> None:
    """From here to the end of the open transaction, work in one organization (Postgres row
    security, sql/026): how a loop over organizations moves from one to the next on one
    connection. `Store.scoped` does it at each transaction's start. No-op on SQLite."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT set_config('sync.organization_id', :o, true)"), {"o": organization_id}
        )


def dump_json(value: Any) -> str | None:
    return None if value is None else _encode_json(value)


sqlite3.register_adapter(datetime, format_timestamp)


#: Where local state lives when neither $SYNC_HOME nor $DAGSTER_HOME is set: the same directory
#: the Makefile gives Dagster (`$(CURDIR)/.dagster_home`), so `make demo` and a plain shell in
#: the checkout read one store.
DEFAULT_HOME = ".dagster_home"


def default_home() -> Path:
    home = os.environ.get(SYNC_HOME_ENV) or os.environ.get("DAGSTER_HOME") or DEFAULT_HOME
    return Path(home).expanduser().resolve()


def default_sqlite_path() -> Path:
    return default_home() / "sync_store.db"


def resolve_database_url(url: str | None = None) -> str:
    """The store URL: explicit, else $SYNC_DATABASE_URL, else SQLite under $SYNC_HOME (else
    $DAGSTER_HOME, else ./.dagster_home)."""
    url = url or os.environ.get(DATABASE_URL_ENV)
    if not url:
        return f"sqlite:///{default_sqlite_path()}"
    if url.startswith(("postgres://", "postgresql://", "postgresql+psycopg2://")):
        # One driver for the store: psycopg 3 (COPY). dagster-postgres URLs say +psycopg2.
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith(("sqlite:", "postgresql+psycopg://")):
        return url
    raise StoreConfigError(
        f"{DATABASE_URL_ENV} must be a sqlite:/// or postgresql:// URL, got scheme "
        f"{url.split(':', 1)[0]!r}"
    )


class Store:
    """A handle on the store's engine; cheap to share, one per process and URL."""

    def __init__(
        self,
        url: str | None = None,
        *,
        pool_size: int = 5,
        must_exist: bool = False,
        statement_timeout_s: float | None = None,
        pool_timeout_s: float = 30.0,
        max_overflow: int | None = None,
    ) -> None:
        """`must_exist`: refuse a SQLite file that is not there (commands that only read),
        instead of creating it (everything that writes creates its directory and file).
        `statement_timeout_s` (Postgres): default `$SYNC_STATEMENT_TIMEOUT_S`, else 900 s;
        `pool_timeout_s`: how long a caller waits for a pooled connection; `max_overflow`:
        connections opened beyond the pool when it is busy (default: as many as the pool)."""
        self.url = resolve_database_url(url)
        sqlite_file = _sqlite_file(self.url)
        if sqlite_file is not None:
            if must_exist and not sqlite_file.exists():
                raise StoreNotFound(
                    f"no store at {self.url}: run `sync-pipelines migrate` to create it, or "
                    f"point {DATABASE_URL_ENV} (or {SYNC_HOME_ENV}) at an existing one"
                )
            sqlite_file.parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = _create_engine(
            self.url,
            pool_size,
            statement_timeout_s=statement_timeout_s or _statement_timeout_from_env(),
            pool_timeout_s=pool_timeout_s,
            max_overflow=pool_size if max_overflow is None else max_overflow,
        )
        self.dialect: str = self.engine.dialect.name  # "sqlite" | "postgresql"

    #: the organization every transaction of this handle works in (see `scoped`)
    organization_id: str | None = None

    def scoped(self, organization_id: str) -> Store:
        """This store for one organization's work: on Postgres every transaction it begins
        first sets `sync.organization_id` for that transaction only (`set_config(…, true)`), so
        under the service role (sql/026) row-level security holds it to that organization —
        a query that forgot its organization filter reads and writes nothing of another tenant.
        Shares this handle's pool; cheap."""
        if not organization_id:
            raise ValueError("a scoped store needs an organization id")
        if organization_id == self.organization_id:
            return self
        view = copy.copy(self)
        view.organization_id = organization_id
        view.engine = self.engine.execution_options(**{ORGANIZATION_OPTION: organization_id})
        return view

    def acting_as(self, role: str, *, pool_size: int = 2) -> Store:
        """A handle on this store whose every transaction runs as database role `role` (Postgres:
        `SET LOCAL ROLE`, for that transaction only, like the organization): how the console's
        login, a member of several roles, writes as the service's `sync_app` under row security
        (console/access.py). A pool of its own (`pool_size`), so a session that worked as the
        role never serves the login's own work (a temporary staging table one made is not the
        other's); dispose of it when done. The role is one of ours, never input. On SQLite:
        this store (no roles)."""
        if not role.isidentifier():
            raise ValueError(f"{role!r} is not a role name")
        if not self.is_postgres:
            return self
        view = Store(self.url, pool_size=pool_size)
        view.engine = view.engine.execution_options(**{ROLE_OPTION: role})
        return view.scoped(self.organization_id) if self.organization_id else view

    @property
    def location(self) -> str:
        """The URL without its password: what every message about this store names."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction: committed on success, rolled back on any error."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({self.location})"


def _sqlite_file(url: str) -> Path | None:
    """The file behind a sqlite:/// URL; None for Postgres and in-memory databases."""
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[1] if ":///" in url else ""
    path = path.split("?", 1)[0]
    if not path or path == ":memory:" or path.startswith("file::memory:"):
        return None
    return Path(path)


def _switch_to_wal(cur: Any) -> None:
    """WAL is a property of the file (set once, kept): switching a new file to it takes an
    exclusive lock that SQLite does not wait for, so processes opening a new store at once
    (concurrent migrators) can be refused "database is locked" — try again for a while."""
    deadline = time.monotonic() + 30
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


#: every Postgres connection of a Store: a store that accepts connections but never answers
#: fails a connect after this long instead of blocking the caller (libpq's default: forever)
CONNECT_TIMEOUT_S = 10
STATEMENT_TIMEOUT_ENV = "SYNC_STATEMENT_TIMEOUT_S"
#: the longest statement a Store lets Postgres run (a 1M-device merge takes well under a minute)
DEFAULT_STATEMENT_TIMEOUT_S = 900.0


def _statement_timeout_from_env() -> float:
    raw = os.environ.get(STATEMENT_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_STATEMENT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise StoreConfigError(
            f"{STATEMENT_TIMEOUT_ENV} must be a number of seconds > 0, got {raw[:40]!r}"
        )
    return value


def _create_engine(
    url: str,
    pool_size: int,
    *,
    statement_timeout_s: float,
    pool_timeout_s: float,
    max_overflow: int,
) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the activity recorder write while a reader holds the file;
            # busy_timeout makes concurrent writers wait instead of failing.
            cur = dbapi_conn.cursor()
            _switch_to_wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    engine = sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_timeout=pool_timeout_s,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_S,
            "options": f"-c statement_timeout={max(1, int(statement_timeout_s * 1000))}",
        },
    )
    sa.event.listen(engine, "begin", _set_organization)
    return engine


#: execution option naming the organization of a scoped store's transactions (Store.scoped)
ORGANIZATION_OPTION = "sync_organization_id"
#: execution option naming the role a store's transactions run as (Store.acting_as)
ROLE_OPTION = "sync_role"


def _set_organization(conn: Connection) -> None:
    """At the start of each transaction of a scoped store: the organization (and the role, for
    a store acting as one), for this transaction only. On the DBAPI connection, which begins
    the transaction implicitly (psycopg); SQLAlchemy's own begin is a no-op after it."""
    options = conn.get_execution_options()
    organization_id, role = options.get(ORGANIZATION_OPTION), options.get(ROLE_OPTION)
    if organization_id is None and role is None:
        return
    with conn.connection.dbapi_connection.cursor() as cur:
        if role is not None:
            cur.execute(f"SET LOCAL ROLE {role}")  # checked by Store.acting_as
        if organization_id is not None:
            cur.execute("SELECT set_config('sync.organization_id', %s, true)", (organization_id,))
