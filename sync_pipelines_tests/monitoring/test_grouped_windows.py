"""`call_windows` (one grouped query) gives exactly what one `call_window` per window gives, on
both engines: rows on the windows' bounds, failed and retried attempts, missing latencies,
operations and other tenants' calls that must not count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from sync_pipelines.monitoring.integration_stats import CallWindow, call_window, call_windows
from sync_pipelines.reports.integration_report import _trend_windows
from sync_pipelines.reports.period_stats import (
    call_series,
    call_totals,
    period_calls,
    sync_outcomes,
    sync_outcomes_by_integration,
    top_errors,
    top_errors_by_integration,
)
from sync_pipelines.store.activity import insert_activity_rows
from sync_pipelines.store.integrations import Integration, ensure_organization
from sync_pipelines_tests.activity_rows import provider_call_row
from sync_pipelines_tests.owners import own_integrations

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ORG, IID = "org-grouped", "int-grouped"
WINDOW_S, COUNT = 300, 7


def _row(
    at: datetime,
    status: str,
    ms: float | None,
    *,
    org: str = ORG,
    iid: str = IID,
    activity_type: str = "http_request",
) -> dict:
    return provider_call_row(org, iid, at, status=status, ms=ms, activity_type=activity_type)


def _seed(store) -> None:
    width = timedelta(seconds=WINDOW_S)
    first = NOW - width * COUNT
    rows = []
    for k in range(COUNT + 1):  # every bound, the first window's start and `end` itself included
        bound = first + width * k
        statuses = ("success", "failed", "retrying", "success")
        for n, status in enumerate(statuses[: 1 + k % 4]):
            rows.append(_row(bound, status, 10.0 * (k + n) if n != 2 else None))
        rows.append(_row(bound - timedelta(microseconds=1), "failed", 900.0 + k))
    rows += [
        _row(NOW - timedelta(seconds=30), "success", 70.0, activity_type="mqtt_request"),
        # an operation row, another integration's and another organization's calls: never counted
        _row(NOW - timedelta(seconds=30), "failed", 5000.0, activity_type="import"),
        _row(NOW - timedelta(seconds=30), "failed", 5000.0, iid="int-other"),
        _row(NOW - timedelta(seconds=30), "failed", 5000.0, org="org-other"),
    ]
    # the 3rd window stays empty: an empty window is all zeros, not missing
    empty_start, empty_end = first + width * 2, first + width * 3
    rows = [r for r in rows if not (empty_start <= r["created_at"] < empty_end)]
    with store.transaction() as conn:
        ensure_organization(conn, ORG)
        ensure_organization(conn, "org-other")
        insert_activity_rows(conn, rows)


@pytest.mark.parametrize("with_latency", [False, True])
def test_grouped_windows_equal_one_query_per_window(store, with_latency) -> None:
    _seed(store)
    width = timedelta(seconds=WINDOW_S)
    with store.connect() as conn:
        grouped = call_windows(
            conn, ORG, IID, end=NOW, window_s=WINDOW_S, count=COUNT, with_latency=with_latency
        )
        one_by_one = [
            call_window(
                conn,
                ORG,
                IID,
                NOW - width * (COUNT - k),
                NOW - width * (COUNT - k - 1),
                with_latency=with_latency,
            )
            for k in range(COUNT)
        ]
    assert grouped == one_by_one
    assert [w.calls for w in grouped] == [2, 3, 0, 5, 2, 3, 5]
    assert grouped[-1].failed == 3 and grouped[-1].failure_rate == pytest.approx(3 / 5)
    assert (grouped[-1].p95_latency_ms is not None) is with_latency


def test_a_single_window_and_a_bad_count(store) -> None:
    _seed(store)
    with store.connect() as conn:
        (only,) = call_windows(conn, ORG, IID, end=NOW, window_s=WINDOW_S, count=1)
        assert only == call_window(
            conn, ORG, IID, NOW - timedelta(seconds=WINDOW_S), NOW, with_latency=False
        )
        with pytest.raises(ValueError, match="count must be at least 1, got 0"):
            call_windows(conn, ORG, IID, end=NOW, window_s=WINDOW_S, count=0)


def test_period_calls_equal_call_window_and_call_series_per_integration(store) -> None:
    """The report's one scan per organization gives each integration what `call_window` (with
    latency) and `call_series` give it alone; an integration without calls gets zeros."""
    _seed(store)
    start, bucket = NOW - timedelta(seconds=WINDOW_S * COUNT), timedelta(seconds=WINDOW_S * 2)
    with store.transaction() as conn:  # a second integration with calls of its own
        insert_activity_rows(
            conn,
            [_row(start + timedelta(seconds=s), "failed", 20.0 + s, iid="int-b") for s in range(5)],
        )
    iids = [IID, "int-b", "int-silent"]
    with store.connect() as conn:
        of_org = period_calls(conn, ORG, iids, start, NOW, bucket=bucket)
        batched = of_org.by_integration
        assert list(batched) == iids
        totals = call_totals(conn, {ORG: iids}, start, NOW)
        assert (of_org.total.calls, of_org.total.failed) == (totals.calls, totals.failed)
        assert of_org.total.p95_latency_ms == totals.p95_latency_ms
        assert of_org.total.avg_latency_ms == pytest.approx(totals.avg_latency_ms)
        for iid in iids:
            whole = call_window(conn, ORG, iid, start, NOW)
            assert batched[iid].calls.calls == whole.calls
            assert batched[iid].calls.failed == whole.failed
            assert batched[iid].calls.p95_latency_ms == whole.p95_latency_ms
            assert batched[iid].calls.avg_latency_ms == pytest.approx(whole.avg_latency_ms)
            assert batched[iid].series == tuple(
                call_series(conn, ORG, iid, start, NOW, bucket=bucket)
            )
        nothing = period_calls(conn, ORG, [], start, NOW, bucket=bucket)
        assert nothing.by_integration == {} and nothing.total.calls == 0
        silent = period_calls(conn, ORG, ["int-silent"], start, NOW, bucket=bucket)
        assert silent.total == CallWindow(start, NOW, 0, 0)
        with pytest.raises(ValueError, match="bucket must be positive"):
            period_calls(conn, ORG, iids, start, NOW, bucket=timedelta(0))
    assert batched[IID].calls.calls == 20 and len(batched[IID].series) == 4
    assert batched["int-b"].calls.failed == 5
    assert batched["int-silent"].calls.calls == 0
    assert batched["int-silent"].calls.avg_latency_ms is None


def test_the_reports_trend_windows_summed_from_its_buckets_equal_call_windows(store) -> None:
    """Buckets tiling the windows exactly are summed; windows they do not tile are read again."""
    _seed(store)
    integ = Integration(organization_id=ORG, integration_id=IID, provider="golioth", name="g")
    start = NOW - timedelta(seconds=WINDOW_S * COUNT)
    with store.connect() as conn:
        expected = call_windows(conn, ORG, IID, end=NOW, window_s=WINDOW_S, count=COUNT)
        for bucket_s in (WINDOW_S // 3, WINDOW_S, 7 * WINDOW_S // 4):  # tiling, tiling, not
            series = tuple(
                call_series(conn, ORG, IID, start, NOW, bucket=timedelta(seconds=bucket_s))
            )
            windows = _trend_windows(
                conn, integ, start, NOW, series, window_s=WINDOW_S, count=COUNT
            )
            assert [(w.start, w.end, w.calls, w.failed) for w in windows] == [
                (w.start, w.end, w.calls, w.failed) for w in expected
            ]


def test_sync_outcomes_and_top_errors_of_all_integrations_equal_one_by_one(store) -> None:
    _seed(store)
    start = NOW - timedelta(seconds=WINDOW_S * COUNT)
    with store.transaction() as conn:
        rows = [_row(start + timedelta(seconds=s), "failed", 20.0, iid="int-b") for s in range(4)]
        rows[0]["error_type"] = "auth"
        insert_activity_rows(conn, rows)
        own_integrations(conn, ORG, IID, "int-b")  # the sync log is keyed by integration
        for n, (iid, status) in enumerate(
            [(IID, "success"), (IID, "failed"), (IID, "partial"), ("int-b", "running")]
        ):
            conn.execute(
                sa.text(
                    "INSERT INTO integration_sync_log (id, organization_id, integration_id, run_id, "
                    "stream, status, started_at, fetched, created, updated, unchanged, failed, "
                    "conflicts, pages) VALUES (:id, :o, :i, 'r', 'devices', :s, :t, 0, 0, 0, 0, 0, 0, 1)"
                ),
                {"id": f"s{n}", "o": ORG, "i": iid, "s": status, "t": start + timedelta(seconds=n)},
            )
    iids = [IID, "int-b", "int-silent"]
    with store.connect() as conn:
        outcomes = sync_outcomes_by_integration(conn, ORG, iids, start, NOW)
        errors = top_errors_by_integration(conn, ORG, iids, start, NOW, limit=1)
        for iid in iids:
            assert outcomes[iid] == sync_outcomes(conn, ORG, iid, start, NOW)
            assert errors[iid] == top_errors(conn, ORG, iid, start, NOW, limit=1)
        assert sync_outcomes_by_integration(conn, ORG, [], start, NOW) == {}
    i, b = outcomes[IID], outcomes["int-b"]
    assert (i.succeeded, i.partial, i.failed, b.running) == (1, 1, 1, 1)  # partial is its own
    assert [e.count for e in errors["int-b"]] == [3]
    assert errors["int-silent"] == []
