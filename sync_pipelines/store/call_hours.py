"""Provider calls per integration and hour (sql/016): rolled up from the activity log, read by
reports over long periods.

`roll_up_call_hours` rewrites an organization's hours from its newest rolled-up hour, less
`RECOMPUTE`, up to the last hour that closed `SETTLE` ago: call rows are buffered until their
operation ends, so a few can be inserted after their hour closed, and recomputing the recent hours
picks them up. An hour is replaced whole (delete, then upsert), so a re-run or two roll-ups racing
never double count. `call_hours` reads the activity log's calls in the same shape, for the edges
of a period the rolled-up hours do not cover.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.figures import LATENCY_GROWTH, histogram_percentile, latency_bucket
from sync_pipelines.observability.activity import PROVIDER_CALLS
from sync_pipelines.store.database import Store, parse_timestamp

HOUR = timedelta(hours=1)
#: an hour is rolled up once it closed this long ago ...
SETTLE = timedelta(minutes=10)
#: ... and recomputed at every roll-up while it is among the newest few
RECOMPUTE = timedelta(hours=3)

#: monitoring's error statuses (integration_stats.ERROR_STATUSES: failed and retried attempts)
_ERROR_STATUSES = ("failed", "retrying")
_CALL_TYPES = ", ".join(f"'{t}'" for t in sorted(PROVIDER_CALLS))
_CALLS = f"activity_type IN ({_CALL_TYPES})"
_FAILED = "CASE WHEN status IN ({}) THEN 1 ELSE 0 END".format(
    ", ".join(f"'{s}'" for s in _ERROR_STATUSES)
)
# figures.latency_bucket in SQL: the bucket index of response_time_ms (NULL: no latency)
_BUCKET_SQL = (
    "CASE WHEN response_time_ms IS NULL THEN NULL WHEN response_time_ms <= 1 THEN 0 "
    f"ELSE ceil(ln(response_time_ms) / ln({LATENCY_GROWTH}))::int END"
)


@dataclass(slots=True)
class CallFigures:
    """Provider calls summed over some time: exact counts and latency sum, latency histogram."""

    calls: int = 0
    failed: int = 0
    latency_count: int = 0
    latency_sum_ms: float = 0.0
    latency_histogram: Counter[int] = field(default_factory=Counter)

    def add(self, other: CallFigures) -> None:
        self.calls += other.calls
        self.failed += other.failed
        self.latency_count += other.latency_count
        self.latency_sum_ms += other.latency_sum_ms
        self.latency_histogram.update(other.latency_histogram)

    @property
    def avg_latency_ms(self) -> float | None:
        return self.latency_sum_ms / self.latency_count if self.latency_count else None

    def latency_percentile(self, q: float) -> float | None:
        return histogram_percentile(self.latency_histogram, q)


@dataclass(frozen=True, slots=True)
class CallHour:
    integration_id: str
    hour: datetime
    figures: CallFigures


def floor_hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(at: datetime) -> datetime:
    floor = floor_hour(at)
    return floor if floor == at else floor + HOUR


def rolled_up_until(end: datetime) -> datetime:
    """The end of the hours a roll-up as of `end` covers (and a report may read rolled up)."""
    return floor_hour(end - SETTLE)


def call_hours(
    conn: Connection,
    organization_id: str,
    start: datetime,
    end: datetime,
    *,
    integration_ids: Sequence[str] | None = None,
) -> list[CallHour]:
    """The activity log's provider calls in [start, end), summed per integration and UTC hour
    (hours cut by start or end hold only their part)."""
    params: dict[str, object] = {"o": organization_id, "start": start, "end": end}
    where = f"organization_id = :o AND created_at >= :start AND created_at < :end AND {_CALLS}"
    binds = []
    if integration_ids is not None:
        if not integration_ids:
            return []
        where += " AND integration_id IN :ids"
        params["ids"] = list(integration_ids)
        binds.append(sa.bindparam("ids", expanding=True))
    found: dict[tuple[str, datetime], CallFigures] = defaultdict(CallFigures)
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            sa.text(
                "SELECT integration_id, date_trunc('hour', created_at, 'UTC') AS hour, "
                f"{_BUCKET_SQL} AS bucket, count(*), sum({_FAILED}), count(response_time_ms), "
                f"coalesce(sum(response_time_ms), 0) FROM integration_activity_log WHERE {where} "
                "GROUP BY 1, 2, 3"
            ).bindparams(*binds),
            params,
        ).all()
        for iid, hour, bucket, calls, failed, timed, total_ms in rows:
            figures = found[(iid, hour.astimezone(UTC))]
            figures.calls += int(calls)
            figures.failed += int(failed)
            figures.latency_count += int(timed)
            figures.latency_sum_ms += float(total_ms)
            if bucket is not None:
                figures.latency_histogram[int(bucket)] += int(timed)
    else:
        rows = conn.execute(
            sa.text(
                "SELECT integration_id, created_at, status, response_time_ms "
                f"FROM integration_activity_log WHERE {where}"
            ).bindparams(*binds),
            params,
        ).all()
        for iid, created_at, status, ms in rows:
            figures = found[(iid, floor_hour(parse_timestamp(created_at)))]
            figures.calls += 1
            figures.failed += status in _ERROR_STATUSES
            if ms is not None:
                figures.latency_count += 1
                figures.latency_sum_ms += float(ms)
                figures.latency_histogram[latency_bucket(float(ms))] += 1
    return [CallHour(iid, hour, figures) for (iid, hour), figures in sorted(found.items())]


def newest_rolled_up_hour(conn: Connection, organization_id: str) -> datetime | None:
    newest = parse_timestamp(
        conn.execute(
            sa.text("SELECT max(hour) FROM provider_call_hours WHERE organization_id = :o"),
            {"o": organization_id},
        ).scalar()
    )
    return newest.astimezone(UTC) if newest is not None else None


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
    hours = call_hours(conn, organization_id, start, until)
    conn.execute(
        sa.text(
            "DELETE FROM provider_call_hours WHERE organization_id = :o "
            "AND hour >= :start AND hour < :until"
        ),
        {"o": organization_id, "start": start, "until": until},
    )
    if hours:
        stamp = datetime.now(UTC)
        conn.execute(
            sa.text(
                "INSERT INTO provider_call_hours (organization_id, integration_id, hour, calls, "
                "failed, latency_count, latency_sum_ms, latency_histogram, rolled_up_at) VALUES "
                "(:o, :i, :hour, :calls, :failed, :timed, :total_ms, :histogram, :stamp) "
                "ON CONFLICT (organization_id, integration_id, hour) DO UPDATE SET "
                "calls = excluded.calls, failed = excluded.failed, "
                "latency_count = excluded.latency_count, latency_sum_ms = excluded.latency_sum_ms, "
                "latency_histogram = excluded.latency_histogram, rolled_up_at = excluded.rolled_up_at"
            ),
            [
                {
                    "o": organization_id,
                    "i": h.integration_id,
                    "hour": h.hour,
                    "calls": h.figures.calls,
                    "failed": h.figures.failed,
                    "timed": h.figures.latency_count,
                    "total_ms": h.figures.latency_sum_ms,
                    "histogram": json.dumps(
                        {str(k): v for k, v in sorted(h.figures.latency_histogram.items())}
                    ),
                    "stamp": stamp,
                }
                for h in hours
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
        with store.transaction() as conn:
            written[organization_id] = roll_up_call_hours(conn, organization_id, now=now)
    return written


def rolled_up_hours(
    conn: Connection,
    organization_id: str,
    integration_ids: Sequence[str],
    start: datetime,
    end: datetime,
) -> list[CallHour]:
    """The rolled-up hours of the given integrations with start <= hour < end."""
    if not integration_ids:
        return []
    rows = conn.execute(
        sa.text(
            "SELECT integration_id, hour, calls, failed, latency_count, latency_sum_ms, "
            "latency_histogram FROM provider_call_hours WHERE organization_id = :o "
            "AND integration_id IN :ids AND hour >= :start AND hour < :end"
        ).bindparams(sa.bindparam("ids", expanding=True)),
        {"o": organization_id, "ids": list(integration_ids), "start": start, "end": end},
    ).all()
    return [
        CallHour(
            iid,
            parse_timestamp(hour).astimezone(UTC),
            CallFigures(
                calls=int(calls),
                failed=int(failed),
                latency_count=int(timed),
                latency_sum_ms=float(total_ms),
                latency_histogram=Counter(
                    {int(k): int(v) for k, v in json.loads(histogram).items()}
                ),
            ),
        )
        for iid, hour, calls, failed, timed, total_ms, histogram in rows
    ]
