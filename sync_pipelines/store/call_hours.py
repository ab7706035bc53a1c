"""Provider calls per integration and hour (sql/016): rolled up from the activity log, read by
reports over long periods.

`roll_up_call_hours` rewrites an organization's hours from its newest rolled-up hour, less
`RECOMPUTE`, up to the last hour that closed `SETTLE` ago: call rows are buffered until their
operation ends, so a few can be inserted after their hour closed, and recomputing the recent hours
picks them up. An hour is replaced whole (delete, then upsert), so a re-run or two roll-ups racing
never double count. `call_hours` reads the activity log's calls in the same shape, for the edges
of a period the rolled-up hours do not cover. Latency histograms are stored sparse, as a JSON
list `[bucket, count, bucket, count, …]` (histograms.py has the bucket rule), and read back
into one dense numpy matrix, so a week of 25 integrations (~4k hours) is summed in milliseconds.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.histograms import LATENCY_BUCKETS, LATENCY_GROWTH, latency_bucket
from sync_pipelines.observability.activity import ERROR_STATUSES
from sync_pipelines.store.database import Store, parse_timestamp
from sync_pipelines.store.provider_calls import CALL_TYPES_SQL
from sync_pipelines.store.provider_calls import FAILED_SQL as _FAILED

HOUR = timedelta(hours=1)
#: an hour is rolled up once it closed this long ago ...
SETTLE = timedelta(minutes=10)
#: ... and recomputed at every roll-up while it is among the newest few
RECOMPUTE = timedelta(hours=3)

_CALLS = f"activity_type IN ({CALL_TYPES_SQL})"
# histograms.latency_bucket in SQL: the bucket of response_time_ms (NULL: no latency)
_BUCKET_SQL = (
    "CASE WHEN response_time_ms IS NULL THEN NULL WHEN response_time_ms <= 1 THEN 0 "
    f"ELSE least({LATENCY_BUCKETS - 1}, ceil(ln(response_time_ms) / ln({LATENCY_GROWTH}))::int) END"
)
# Postgres: the calls of `{where}` per integration and hour, with the sparse histogram as text
_HOURS_SQL = (
    "SELECT integration_id, hour, sum(n) AS calls, sum(failed) AS failed, "
    "sum(timed) AS latency_count, coalesce(sum(total_ms), 0) AS latency_sum_ms, "
    "'[' || coalesce(string_agg(bucket || ',' || timed, ',' ORDER BY bucket) "
    "FILTER (WHERE bucket IS NOT NULL), '') || ']' AS latency_histogram FROM ("
    "SELECT integration_id, date_trunc('hour', created_at, 'UTC') AS hour, "
    f"{_BUCKET_SQL} AS bucket, count(*) AS n, sum({_FAILED}) AS failed, "
    "count(response_time_ms) AS timed, sum(response_time_ms) AS total_ms "
    "FROM integration_activity_log WHERE {where} GROUP BY 1, 2, 3"
    ") AS by_bucket GROUP BY integration_id, hour"
)
_COLUMNS = "integration_id, hour, calls, failed, latency_count, latency_sum_ms, latency_histogram"


@dataclass(frozen=True, slots=True)
class CallHours:
    """Provider calls summed per (integration, hour), one entry per pair, as columns."""

    integration_ids: list[str]
    hours: list[datetime]
    calls: np.ndarray
    failed: np.ndarray
    latency_count: np.ndarray
    latency_sum_ms: np.ndarray
    #: (entries × LATENCY_BUCKETS) call counts per latency bucket
    histograms: np.ndarray

    def __len__(self) -> int:
        return len(self.integration_ids)

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[Any]]) -> CallHours:
        """From rows of `_COLUMNS` (the histogram as its JSON text or as a bucket → count dict)."""
        n = len(rows)
        histograms = np.zeros((n, LATENCY_BUCKETS), dtype=np.int64)
        if n:
            # one parse of all the sparse histograms, one scatter into the dense matrix
            inner = [(r[6] if isinstance(r[6], str) else _sparse_text(r[6]))[1:-1] for r in rows]
            lengths = np.array([t.count(",") // 2 + 1 if t else 0 for t in inner], dtype=np.int64)
            flat = (
                np.array(",".join(t for t in inner if t).split(","), dtype=np.int64)
                if lengths.any()
                else np.zeros(0, dtype=np.int64)
            )
            np.add.at(histograms, (np.repeat(np.arange(n), lengths), flat[0::2]), flat[1::2])
        return cls(
            integration_ids=[r[0] for r in rows],
            hours=[parse_timestamp(r[1]).astimezone(UTC) for r in rows],
            calls=np.array([int(r[2]) for r in rows], dtype=np.int64),
            failed=np.array([int(r[3]) for r in rows], dtype=np.int64),
            latency_count=np.array([int(r[4]) for r in rows], dtype=np.int64),
            latency_sum_ms=np.array([float(r[5]) for r in rows], dtype=np.float64),
            histograms=histograms,
        )

    @classmethod
    def concat(cls, parts: Sequence[CallHours]) -> CallHours:
        return cls(
            integration_ids=[i for p in parts for i in p.integration_ids],
            hours=[h for p in parts for h in p.hours],
            calls=np.concatenate([p.calls for p in parts]),
            failed=np.concatenate([p.failed for p in parts]),
            latency_count=np.concatenate([p.latency_count for p in parts]),
            latency_sum_ms=np.concatenate([p.latency_sum_ms for p in parts]),
            histograms=np.concatenate([p.histograms for p in parts]),
        )

    def sparse_histogram(self, k: int) -> str:
        (buckets,) = np.nonzero(self.histograms[k])
        return json.dumps([int(v) for b in buckets for v in (b, self.histograms[k, b])])


def _sparse_text(histogram: dict[int, int]) -> str:
    return json.dumps([v for b in sorted(histogram) for v in (b, histogram[b])])


def floor_hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(at: datetime) -> datetime:
    floor = floor_hour(at)
    return floor if floor == at else floor + HOUR


def rolled_up_until(end: datetime) -> datetime:
    """The end of the hours a roll-up as of `end` covers (and a report may read rolled up)."""
    return floor_hour(end - SETTLE)


def _call_filter(integration_ids: Sequence[str] | None) -> tuple[str, list[Any]]:
    where = f"organization_id = :o AND created_at >= :start AND created_at < :end AND {_CALLS}"
    if integration_ids is None:
        return where, []
    return where + " AND integration_id IN :ids", [sa.bindparam("ids", expanding=True)]


def call_hours(
    conn: Connection,
    organization_id: str,
    start: datetime,
    end: datetime,
    *,
    integration_ids: Sequence[str] | None = None,
) -> CallHours:
    """The activity log's provider calls in [start, end), summed per integration and UTC hour
    (hours cut by start or end hold only their part)."""
    if integration_ids is not None and not integration_ids:
        return CallHours.from_rows([])
    where, binds = _call_filter(integration_ids)
    params: dict[str, Any] = {"o": organization_id, "start": start, "end": end}
    if integration_ids is not None:
        params["ids"] = list(integration_ids)
    if conn.dialect.name == "postgresql":
        query = sa.text(_HOURS_SQL.format(where=where)).bindparams(*binds)
        return CallHours.from_rows(conn.execute(query, params).all())
    # SQLite (the embedded store: small) sums in Python
    summed: dict[tuple[str, datetime], list[Any]] = defaultdict(lambda: [0, 0, 0, 0.0, {}])
    query = sa.text(
        "SELECT integration_id, created_at, status, response_time_ms "
        f"FROM integration_activity_log WHERE {where}"
    ).bindparams(*binds)
    for iid, created_at, status, ms in conn.execute(query, params):
        entry = summed[(iid, floor_hour(parse_timestamp(created_at)))]
        entry[0] += 1
        entry[1] += status in ERROR_STATUSES
        if ms is not None:
            entry[2] += 1
            entry[3] += float(ms)
            bucket = latency_bucket(float(ms))
            entry[4][bucket] = entry[4].get(bucket, 0) + 1
    return CallHours.from_rows(
        [(iid, hour, *entry) for (iid, hour), entry in sorted(summed.items())]
    )


def newest_rolled_up_hour(conn: Connection, organization_id: str) -> datetime | None:
    newest = parse_timestamp(
        conn.execute(
            sa.text("SELECT max(hour) FROM provider_call_hours WHERE organization_id = :o"),
            {"o": organization_id},
        ).scalar()
    )
    return newest.astimezone(UTC) if newest is not None else None


_UPSERT = (
    "ON CONFLICT (organization_id, integration_id, hour) DO UPDATE SET "
    "calls = excluded.calls, failed = excluded.failed, latency_count = excluded.latency_count, "
    "latency_sum_ms = excluded.latency_sum_ms, latency_histogram = excluded.latency_histogram, "
    "rolled_up_at = excluded.rolled_up_at"
)


def roll_up_call_hours(conn: Connection, organization_id: str, *, now: datetime) -> int:
    """Bring the organization's rolled-up hours up to `rolled_up_until(now)`; returns how many
    hour rows were written. The first roll-up starts at the organization's first call."""
    until = rolled_up_until(now)
    newest = newest_rolled_up_hour(conn, organization_id)
    if newest is not None:
        start = newest - RECOMPUTE
    else:
        first = parse_timestamp(
            conn.execute(
                sa.text(
                    "SELECT min(created_at) FROM integration_activity_log "
                    f"WHERE organization_id = :o AND {_CALLS}"
                ),
                {"o": organization_id},
            ).scalar()
        )
        if first is None:
            return 0
        start = floor_hour(first)
    if start >= until:
        return 0
    params = {"o": organization_id, "start": start, "end": until, "stamp": datetime.now(UTC)}
    conn.execute(
        sa.text(
            "DELETE FROM provider_call_hours WHERE organization_id = :o "
            "AND hour >= :start AND hour < :end"
        ),
        params,
    )
    if conn.dialect.name == "postgresql":
        # in the database: the calls never travel to Python
        where, _ = _call_filter(None)
        return conn.execute(
            sa.text(
                f"INSERT INTO provider_call_hours (organization_id, {_COLUMNS}, rolled_up_at) "
                f"SELECT :o, {_COLUMNS}, :stamp FROM ({_HOURS_SQL.format(where=where)}) AS hours "
                + _UPSERT
            ),
            params,
        ).rowcount
    hours = call_hours(conn, organization_id, start, until)
    if len(hours):
        conn.execute(
            sa.text(
                f"INSERT INTO provider_call_hours (organization_id, {_COLUMNS}, rolled_up_at) "
                "VALUES (:o, :i, :hour, :calls, :failed, :timed, :total_ms, :histogram, :stamp) "
                + _UPSERT
            ),
            [
                {
                    "o": organization_id,
                    "i": hours.integration_ids[k],
                    "hour": hours.hours[k],
                    "calls": int(hours.calls[k]),
                    "failed": int(hours.failed[k]),
                    "timed": int(hours.latency_count[k]),
                    "total_ms": float(hours.latency_sum_ms[k]),
                    "histogram": hours.sparse_histogram(k),
                    "stamp": params["stamp"],
                }
                for k in range(len(hours))
            ],
        )
    return len(hours)


def roll_up_organizations(
    store: Store, organization_ids: Iterable[str], *, now: datetime
) -> dict[str, int]:
    """`roll_up_call_hours` of each organization, each in its own transaction (the hourly
    schedule, and a report before it reads); organization → hour rows written."""
    written = {}
    for organization_id in sorted(set(organization_ids)):
        with store.scoped(organization_id).transaction() as conn:
            written[organization_id] = roll_up_call_hours(conn, organization_id, now=now)
    return written


def rolled_up_hours(
    conn: Connection,
    organization_id: str,
    integration_ids: Sequence[str],
    start: datetime,
    end: datetime,
) -> CallHours:
    """The rolled-up hours of the given integrations with start <= hour < end."""
    if not integration_ids:
        return CallHours.from_rows([])
    rows = conn.execute(
        sa.text(
            f"SELECT {_COLUMNS} FROM provider_call_hours WHERE organization_id = :o "
            "AND integration_id IN :ids AND hour >= :start AND hour < :end"
        ).bindparams(sa.bindparam("ids", expanding=True)),
        {"o": organization_id, "ids": list(integration_ids), "start": start, "end": end},
    ).all()
    return CallHours.from_rows(rows)
