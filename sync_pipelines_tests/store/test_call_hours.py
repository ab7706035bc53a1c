"""Provider calls rolled up per integration and hour (store/call_hours.py), on SQLite and
Postgres: exact counts, p95 within the histogram's ±5 %, re-runs and late rows, tenant scoping,
retention, and the long report reading them with the same figures as the calls themselves."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipelines.defs.reports import roll_up_provider_call_hours
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.figures import percentile
from sync_pipelines.histograms import histogram_percentile, latency_bucket
from sync_pipelines.reports.integration_report import build_integration_report
from sync_pipelines.reports.period_stats import call_totals, period_calls
from sync_pipelines.store.activity import insert_activity_rows
from sync_pipelines.store.call_hours import (
    SETTLE,
    roll_up_call_hours,
    roll_up_organizations,
    rolled_up_hours,
)
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.retention import RetentionPolicy, purge_expired
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines_tests.activity_rows import provider_call_row
from sync_pipelines_tests.owners import own_row_integrations

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _register(store, organization_id: str, integration_id: str) -> None:
    register_integration(
        store,
        Integration(
            integration_id=integration_id,
            organization_id=organization_id,
            provider="golioth",
            name=integration_id,
            settings={"base_url": "http://127.0.0.1:9", "project_id": "p"},
            secret_refs={"api_key": "UNSET_KEY"},
        ),
    )


def _insert(store, rows) -> None:
    with store.transaction() as conn:
        own_row_integrations(conn, rows)  # the hours they roll up to are keyed by integration
        insert_activity_rows(conn, rows)


def _hours(store, organization_id, integration_ids, start=NOW - 30 * 24 * HOUR, end=NOW):
    with store.connect() as conn:
        found = rolled_up_hours(conn, organization_id, integration_ids, start, end)
    return {
        (found.integration_ids[k], found.hours[k]): SimpleNamespace(
            calls=int(found.calls[k]),
            failed=int(found.failed[k]),
            latency_count=int(found.latency_count[k]),
            latency_sum_ms=float(found.latency_sum_ms[k]),
        )
        for k in range(len(found))
    }


def test_the_histogram_percentile_is_within_five_percent_of_the_exact_one():
    rng = random.Random(7)
    for _ in range(200):
        values = [rng.lognormvariate(4, 1.2) for _ in range(rng.randint(1, 400))]
        histogram: dict[int, int] = {}
        for v in values:
            histogram[latency_bucket(v)] = histogram.get(latency_bucket(v), 0) + 1
        for q in (50, 95, 99):
            exact, approx = percentile(values, q), histogram_percentile(histogram, q)
            assert abs(approx - exact) <= 0.05 * exact, (q, exact, approx)
    assert histogram_percentile({}, 95) is None


def test_a_roll_up_sums_each_integration_hour_exactly_and_only_its_organization(store):
    at = NOW - 5 * HOUR  # 07:30
    rows = [
        provider_call_row("org-a", "int-1", at, ms=10.0),
        provider_call_row("org-a", "int-1", at + timedelta(minutes=10), status="failed", ms=30.0),
        provider_call_row("org-a", "int-1", at + timedelta(minutes=20), status="retrying", ms=None),
        provider_call_row("org-a", "int-1", at + HOUR, ms=20.0),
        provider_call_row("org-a", "int-2", at, ms=5.0, activity_type="mqtt_request"),
        provider_call_row("org-a", "int-2", at, activity_type="import"),  # not a call
        provider_call_row("org-b", "int-b", at, ms=99.0),
    ]
    _insert(store, rows)
    with store.transaction() as conn:
        written = roll_up_call_hours(conn, "org-a", now=NOW)
    assert written == 3
    hours = _hours(store, "org-a", ["int-1", "int-2", "int-b"])
    seven = datetime(2026, 11, 20, 7, tzinfo=UTC)
    first = hours[("int-1", seven)]
    assert (first.calls, first.failed, first.latency_count, first.latency_sum_ms) == (3, 2, 2, 40.0)
    assert hours[("int-1", seven + HOUR)].calls == 1
    assert hours[("int-2", seven)].calls == 1
    assert _hours(store, "org-b", ["int-b"]) == {}  # org-b was not rolled up by org-a's roll-up


def test_rolling_up_again_never_double_counts_and_picks_up_a_late_row(store):
    at = NOW - 2 * HOUR  # 10:30: its hour closed and settled at 11:10
    _insert(store, [provider_call_row("org-a", "int-1", at) for _ in range(4)])
    with store.transaction() as conn:
        roll_up_call_hours(conn, "org-a", now=NOW)
        roll_up_call_hours(conn, "org-a", now=NOW)
    ten = datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert _hours(store, "org-a", ["int-1"])[("int-1", ten)].calls == 4
    # a call of 10:xx whose row was buffered until its operation ended lands after the roll-up
    _insert(store, [provider_call_row("org-a", "int-1", at + timedelta(minutes=5))])
    with store.transaction() as conn:
        roll_up_call_hours(conn, "org-a", now=NOW + HOUR)
    assert _hours(store, "org-a", ["int-1"])[("int-1", ten)].calls == 5


def test_the_current_hour_is_not_rolled_up_until_it_has_settled(store):
    _insert(store, [provider_call_row("org-a", "int-1", NOW - timedelta(minutes=5))])
    with store.transaction() as conn:
        assert roll_up_call_hours(conn, "org-a", now=NOW) == 0
        hour_end = datetime(2026, 11, 20, 13, tzinfo=UTC)
        assert roll_up_call_hours(conn, "org-a", now=hour_end + SETTLE) == 1


def _week_of_calls(store, organization_id, integration_ids, *, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for iid in integration_ids:
        for _ in range(300):
            at = NOW - timedelta(seconds=rng.uniform(0, 7 * 24 * 3600))
            failed = rng.random() < 0.1
            rows.append(
                provider_call_row(
                    organization_id,
                    iid,
                    at,
                    status="failed" if failed else "success",
                    ms=rng.lognormvariate(4, 1),
                )
            )
    _insert(store, rows)
    return rows


@pytest.mark.parametrize("rolled_up", [True, False], ids=["rolled-up", "never-rolled-up"])
def test_a_weekly_report_reads_the_same_figures_from_hours_as_from_the_calls(store, rolled_up):
    ids = ["int-1", "int-2"]
    for iid in ids:
        _register(store, "org-a", iid)
    rows = _week_of_calls(store, "org-a", ids, seed=3)
    if rolled_up:
        # the schedule ran an hour ago; the calls since are read from the log itself
        roll_up_organizations(store, ["org-a"], now=NOW - HOUR)
        assert _hours(store, "org-a", ids)
    start = NOW - 7 * 24 * HOUR
    with store.connect() as conn:
        weekly = period_calls(conn, "org-a", ids, start, NOW, bucket=HOUR)
        exact = call_totals(conn, {"org-a": ids}, start, NOW)
    assert weekly.total.calls == exact.calls == len(rows)
    assert weekly.total.failed == exact.failed
    assert weekly.total.avg_latency_ms == pytest.approx(exact.avg_latency_ms)
    assert abs(weekly.total.p95_latency_ms - exact.p95_latency_ms) <= 0.05 * exact.p95_latency_ms
    for iid in ids:
        mine = [r for r in rows if r["integration_id"] == iid]
        of = weekly.by_integration[iid]
        assert of.calls.calls == len(mine)
        assert sum(p.calls for p in of.series) == len(mine)
        assert len(of.series) == 168
        # each hour's calls sit in the bucket holding most of that hour: at most one bucket off
        for row in rng_sample(mine):
            b = int((row["created_at"] - start) / HOUR)
            near = of.series[max(0, b - 1) : b + 2]
            assert sum(p.calls for p in near) > 0


def rng_sample(rows):
    return rows[:: max(1, len(rows) // 20)]


def test_an_all_organizations_weekly_report_sums_the_organizations_histograms(store):
    _register(store, "org-a", "int-a")
    _register(store, "org-b", "int-b")
    rows = _week_of_calls(store, "org-a", ["int-a"], seed=1)
    rows += _week_of_calls(store, "org-b", ["int-b"], seed=2)
    roll_up_organizations(store, ["org-a", "org-b"], now=NOW)
    with store.connect() as conn:
        report = build_integration_report(
            conn, organization_id=None, now=NOW, period=timedelta(days=7)
        )
        exact = call_totals(
            conn, {"org-a": ["int-a"], "org-b": ["int-b"]}, NOW - 7 * 24 * HOUR, NOW
        )
    assert report.totals.calls == len(rows) == exact.calls
    assert report.totals.failed == exact.failed
    assert abs(report.totals.p95_latency_ms - exact.p95_latency_ms) <= 0.05 * exact.p95_latency_ms


def test_retention_purges_expired_hours_with_the_calls(store):
    old, recent = NOW - 100 * 24 * HOUR, NOW - 3 * HOUR
    _insert(store, [provider_call_row("org-a", "int-1", at) for at in (old, recent)])
    with store.transaction() as conn:
        roll_up_call_hours(conn, "org-a", now=NOW)
    assert len(_hours(store, "org-a", ["int-1"], start=NOW - 200 * 24 * HOUR)) == 2
    report = purge_expired(store, RetentionPolicy(days=90), now=NOW)
    assert report.deleted["provider_call_hours"] == 1
    assert list(_hours(store, "org-a", ["int-1"], start=NOW - 200 * 24 * HOUR)) == [
        ("int-1", datetime(2026, 11, 20, 9, tzinfo=UTC))
    ]


def test_the_hourly_job_rolls_up_every_organization_with_enabled_integrations(store):
    _register(store, "org-a", "int-a")
    _register(store, "org-b", "int-b")
    now = datetime.now(UTC)
    _insert(
        store,
        [
            provider_call_row("org-a", "int-a", now - 3 * HOUR),
            provider_call_row("org-b", "int-b", now - 4 * HOUR),
        ],
    )
    result = roll_up_provider_call_hours.execute_in_process(
        resources={"store": SyncStoreResource(database_url=store.url)},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    with store.connect() as conn:
        counts = dict(
            conn.execute(
                sa.text(
                    "SELECT organization_id, sum(calls) FROM provider_call_hours "
                    "GROUP BY organization_id"
                )
            ).all()
        )
    assert {k: int(v) for k, v in counts.items()} == {"org-a": 1, "org-b": 1}
