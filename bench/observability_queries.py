"""Trace and report query times on a large activity log (Postgres).

Seeds a fresh database in SQL (generate_series, no Python round trips): `--rows` activity rows
(default 1,000,000) over 90 days for 100 integrations of 4 organizations — one sync run every
~2 h per integration, each an `import` and a `state_import` operation and 7 provider calls (an
inventory page and six state reads; ~3 % of calls fail — 503, 429 or 401 — and a few integrations
much more), 2 % webhook deliveries (`webhook_received` rows, inbox events on 10,000 devices,
processed in batches of 100) — plus the sync log (2 rows per run), devices and states with
their provenance, and a few dead letters. The activity rows land in their monthly partitions
(sql/011), created first as the retention schedule does in production. Then times, median of
`--repeat` runs each: `trace` of a device id, a request id, a run id and a webhook event id (the
chain builder, what `sync-pipelines trace` runs); the integration checks of one integration (the
error rate, the error-rate trend, the freshness check, and all of CHECKS, as the check sensor
evaluates them); `monitoring.health.integration_health` of one integration and
`check_service_health` of one organization (25 integrations); the integration-health report of
that organization over 24 h and 7 days (the data; the chart separately; the 7-day one reads the
hourly roll-up of provider calls, whose first run over 90 days and hourly run are timed too),
and the whole `sync-pipelines trace` / `report` commands as subprocesses (what the on-call waits
for). With `--without-012` the trace and report are timed again with sql/012's indexes dropped,
to show what they buy.

10M rows take ~6.5 min to seed on 2 shared cores: `--keep` keeps the seeded database and prints
its URL, `--url` times against it again (migrating it to the current sql/ first), e.g. before
and after a change:

    .venv/bin/python bench/observability_queries.py --rows 1000000 --repeat 5 --without-012
    .venv/bin/python bench/observability_queries.py --rows 10000000 --repeat 5 --keep
    .venv/bin/python bench/observability_queries.py --url postgresql://.../sync_bench_obs_x --repeat 5
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from bench_support import fresh_store_url

from sync_pipelines.checks.context import CheckContext
from sync_pipelines.checks.integration_checks import CHECKS
from sync_pipelines.checks.provider_calls import CALL_FAILURE_RATE, CALL_FAILURE_TREND
from sync_pipelines.checks.sync_outcomes import FRESHNESS
from sync_pipelines.clock import utc_now
from sync_pipelines.monitoring.health import integration_health
from sync_pipelines.monitoring.service_health import HealthOptions, check_service_health
from sync_pipelines.reports.chart import write_chart
from sync_pipelines.reports.integration_report import build_integration_report
from sync_pipelines.store.call_hours import roll_up_organizations
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import get_integration
from sync_pipelines.store.migrations import migrate, sql_dir
from sync_pipelines.tracing.chain import build_chain

INTEGRATIONS, ORGS, DEVICES_PER_INTEGRATION, ROWS_PER_RUN = 100, 4, 100, 9
WEBHOOK_SHARE, WEBHOOK_BATCH = 0.02, 100
DAYS = 90
ORG = "bench-org-3"  # integrations 3, 7, 11, ... 99
INTEGRATION_NO = 7
DEVICE = "dev-007-042"


def _integration(i: str) -> str:
    return f"'bench-int-' || lpad(({i})::text, 3, '0')"


def seed(store: Store, rows: int) -> dict[str, str]:
    """Fill the store; returns the ids to trace."""
    webhooks = int(rows * WEBHOOK_SHARE)
    runs = (rows - webhooks - webhooks // WEBHOOK_BATCH) // ROWS_PER_RUN
    runs -= runs % INTEGRATIONS
    per_integration = runs // INTEGRATIONS
    end = utc_now()
    start = end - timedelta(days=DAYS)
    spacing_s = DAYS * 86400 / per_integration
    params = {"start": start, "spacing": spacing_s, "runs": runs, "webhooks": webhooks}
    # run r: integration r % 100, its (r / 100)-th sync, at start + (r / 100) * spacing (+ a
    # per-integration offset); row k of a run: 0 import, 1 state_import, 2 the page, 3-8 states
    run_time = "(:start + make_interval(secs => (r / 100) * :spacing + ((r % 100) * 37) % 3600))"
    bad_integration = "(r % 100) % 17 = 0"  # ~6 integrations with a 25 % call failure rate
    statements = [
        # the monthly partitions of the seeded 90 days, as the retention schedule keeps them in
        # production: rows land in their month's partition and queries prune to it
        "SELECT sync_ensure_activity_partitions((:start AT TIME ZONE 'UTC')::date, 4)",
        "INSERT INTO organizations (organization_id, name, created_at) "
        f"SELECT 'bench-org-' || o, 'Bench ' || o, :start FROM generate_series(0, {ORGS - 1}) o",
        # every integration id is claimed by its organization first (sql/026: on Postgres each
        # table keyed by an integration references integration_owners)
        "INSERT INTO integration_owners (integration_id, organization_id) "
        f"SELECT {_integration('i')}, 'bench-org-' || (i % {ORGS}) "
        f"FROM generate_series(0, {INTEGRATIONS - 1}) i",
        "INSERT INTO integrations (integration_id, organization_id, provider, name, settings, "
        "secret_refs, enabled, poll_interval_s, created_at, updated_at) "
        f"SELECT {_integration('i')}, 'bench-org-' || (i % {ORGS}), 'golioth', 'Bench ' || i, "
        '\'{"base_url": "https://api.golioth.io", "project_id": "p"}\', '
        f'\'{{"api_key": "BENCH_KEY"}}\', true, 7200, :start, :start '
        f"FROM generate_series(0, {INTEGRATIONS - 1}) i",
        # the activity log: operations and provider calls of every run
        "INSERT INTO integration_activity_log (id, organization_id, integration_id, run_id, step_key, "
        "request_id, parent_id, direction, activity_type, method, endpoint, status_code, status, "
        "attempt, response_time_ms, error_type, error_message, error_stack, request_headers, "
        "metadata, created_at, completed_at) "
        "SELECT 'act-' || n, 'bench-org-' || ((r % 100) % 4), "
        f"{_integration('r % 100')}, 'bench-run-' || r, 'golioth_devices', "
        "CASE WHEN k < 2 THEN NULL ELSE 'req-' || md5(n::text) END, NULL, "
        "CASE WHEN k < 2 THEN 'internal' ELSE 'outgoing' END, "
        "CASE k WHEN 0 THEN 'import' WHEN 1 THEN 'state_import' ELSE 'http_request' END, "
        "CASE WHEN k < 2 THEN NULL ELSE 'GET' END, "
        "CASE WHEN k = 2 THEN 'https://api.golioth.io/v1/projects/p/devices?page=0' "
        "WHEN k > 2 THEN 'https://api.golioth.io/v1/projects/p/devices/' || lpad((r % 100)::text, 3, '0') "
        "|| '-' || lpad(((r / 100 * 6 + k) % 100)::text, 3, '0') || '/data' END, "
        "CASE WHEN k < 2 THEN NULL WHEN bad THEN (ARRAY[503, 503, 429, 401])[1 + h % 4] ELSE 200 END, "
        "CASE WHEN k < 2 THEN 'success' WHEN bad AND h % 4 < 3 AND h % 8 < 4 THEN 'retrying' "
        "WHEN bad THEN 'failed' ELSE 'success' END, "
        "1, CASE WHEN k < 2 THEN 400 + h % 900 ELSE 5 + (h % 200) + (CASE WHEN h % 50 = 0 THEN 1500 ELSE 0 END) END, "
        "CASE WHEN bad THEN (ARRAY['transient', 'transient', 'rate_limited', 'auth'])[1 + h % 4] END, "
        "CASE WHEN bad THEN (ARRAY['HTTP 503: upstream unavailable', 'HTTP 503: upstream unavailable', "
        "'HTTP 429: rate limited', 'HTTP 401: invalid API key'])[1 + h % 4] END, "
        "NULL, NULL, NULL, t, t + interval '20 milliseconds' "
        "FROM (SELECT n, r, k, h, t, "
        f"k >= 2 AND ((({bad_integration}) AND h % 4 = 0) OR h % 100 < 3) AS bad "
        f"FROM (SELECT n, n / {ROWS_PER_RUN} AS r, n % {ROWS_PER_RUN} AS k, "
        "(hashtext(n::text)::bigint & 2147483647) AS h FROM generate_series(0, :runs * 9 - 1) n) a, "
        f"LATERAL (SELECT {run_time} + k * interval '50 milliseconds' AS t) b) s",
        # the sync log: devices and device_states per run
        "INSERT INTO integration_sync_log (id, organization_id, integration_id, run_id, stream, status, "
        "started_at, completed_at, duration_ms, fetched, created, updated, unchanged, failed, "
        "conflicts, pages, error_type, error_message) "
        "SELECT 'sync-' || r || '-' || s, 'bench-org-' || ((r % 100) % 4), "
        f"{_integration('r % 100')}, 'bench-run-' || r, "
        "(ARRAY['devices', 'device_states'])[s + 1], "
        "CASE WHEN (hashtext(r::text)::bigint & 2147483647) % 50 = 0 THEN 'failed' ELSE 'success' END, "
        f"{run_time}, {run_time} + interval '400 milliseconds', 400, 100, 0, 3, 97, 0, 0, 1, "
        "CASE WHEN (hashtext(r::text)::bigint & 2147483647) % 50 = 0 THEN 'transient' END, "
        "CASE WHEN (hashtext(r::text)::bigint & 2147483647) % 50 = 0 THEN 'HTTP 503: upstream unavailable' END "
        "FROM generate_series(0, :runs - 1) r, generate_series(0, 1) s",
        # devices and states, last written by their integration's last run (page / state calls)
        "INSERT INTO devices (organization_id, integration_id, external_id, name, hardware_ids, tags, "
        "status, enabled, attributes, content_hash, last_run_id, last_request_id, created_at, updated_at) "
        f"SELECT 'bench-org-' || (i % 4), {_integration('i')}, "
        "'dev-' || lpad(i::text, 3, '0') || '-' || lpad(d::text, 3, '0'), 'device ' || d, '[]', '[]', "
        "'online', true, '{}', md5(i || '-' || d), 'bench-run-' || last_r, "
        "'req-' || md5((last_r * 9 + 2)::text), :start, :start "
        f"FROM generate_series(0, {INTEGRATIONS - 1}) i, generate_series(0, {DEVICES_PER_INTEGRATION - 1}) d, "
        "LATERAL (SELECT (:runs / 100 - 1) * 100 + i AS last_r) l",
        "INSERT INTO device_states (organization_id, integration_id, external_id, reported, desired, "
        "version, observed_at, content_hash, last_run_id, last_request_id, updated_at) "
        "SELECT organization_id, integration_id, external_id, '{\"temp\": 21}', NULL, 'v1', :start, "
        "content_hash, last_run_id, 'req-' || md5(((substr(last_run_id, 11)::bigint) * 9 + 3 "
        "+ (substr(external_id, 9)::int) % 6)::text), :start FROM devices",
        # webhook deliveries: inbox events of 10,000 devices, processed in batches of 100
        "INSERT INTO webhook_events (id, organization_id, integration_id, provider, event_id, event_type, "
        "external_id, payload, headers, delivery_id, status, received_at, claimed_at, processed_at, "
        "attempts, run_id) "
        "SELECT 'whe-' || n, 'bench-org-' || ((n % 100) % 4), "
        f"{_integration('n % 100')}, 'golioth', 'evt-' || n, 'io.golioth.data.v1/.s/env', "
        "'dev-' || lpad((n % 100)::text, 3, '0') || '-' || lpad(((n / 100) % 100)::text, 3, '0'), "
        "'{\"temp\": 21}', '{\"webhook-signature\": \"[REDACTED]\"}', 'evt-' || n, 'processed', t, "
        f"t + interval '2 seconds', t + interval '3 seconds', 1, 'bench-whrun-' || (n / {WEBHOOK_BATCH}) "
        "FROM generate_series(0, :webhooks - 1) n, "
        "LATERAL (SELECT :start + make_interval(secs => n * (86400.0 * 90 / :webhooks)) AS t) b",
        "INSERT INTO integration_activity_log (id, organization_id, integration_id, run_id, request_id, "
        "direction, activity_type, method, endpoint, status_code, status, attempt, response_time_ms, "
        "created_at, completed_at) "
        "SELECT 'act-wh-' || id, organization_id, integration_id, NULL, delivery_id, 'incoming', "
        "'webhook_received', 'POST', '/webhooks/golioth/' || integration_id, 202, 'success', 1, 3, "
        "received_at, received_at FROM webhook_events",
        # one processing run per batch: its operation row and its sync-log row
        "INSERT INTO integration_activity_log (id, organization_id, integration_id, run_id, request_id, "
        "direction, activity_type, status, attempt, response_time_ms, created_at, completed_at) "
        "SELECT 'act-whrun-' || run_id, min(organization_id), min(integration_id), run_id, NULL, "
        "'internal', 'webhook_processing', 'success', 1, 50, min(claimed_at), max(processed_at) "
        "FROM webhook_events GROUP BY run_id",
        "INSERT INTO integration_sync_log (id, organization_id, integration_id, run_id, stream, status, "
        "started_at, completed_at, duration_ms, fetched, created, updated, unchanged, failed, conflicts, pages) "
        "SELECT 'sync-' || run_id, min(organization_id), min(integration_id), run_id, 'webhook_events', "
        "'success', min(claimed_at), max(processed_at), 50, count(*), 0, count(*), 0, 0, 0, 1 "
        "FROM webhook_events GROUP BY run_id",
        # a few dead letters on the traced device's page
        "INSERT INTO dead_letters (id, organization_id, integration_id, provider, stream, dedupe_key, "
        "external_id, payload, error_type, error_message, attempts, max_attempts, status, "
        "first_failed_at, last_failed_at, run_id, request_id, updated_at) "
        "SELECT 'dl-' || external_id, organization_id, integration_id, 'golioth', 'devices', external_id, "
        "external_id, '{}', 'validation', 'hardwareIds must be a list', 0, 5, 'pending', :start, :start, "
        "last_run_id, last_request_id, :start FROM devices WHERE external_id LIKE '%-00_'",
    ]
    with store.transaction() as conn:
        for statement in statements:
            conn.execute(sa.text(statement), params)
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    return targets_of(store)


def targets_of(store: Store) -> dict[str, str]:
    """The ids to trace in a seeded store."""
    with store.connect() as conn:
        counts = {
            t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
            for t in (
                "integration_activity_log",
                "integration_sync_log",
                "devices",
                "webhook_events",
            )
        }
        state_request = conn.execute(
            sa.text("SELECT last_request_id FROM device_states WHERE external_id = :e"),
            {"e": DEVICE},
        ).scalar_one()
        last_run = conn.execute(
            sa.text("SELECT last_run_id FROM devices WHERE external_id = :e"), {"e": DEVICE}
        ).scalar_one()
        event = conn.execute(
            sa.text(
                "SELECT event_id FROM webhook_events WHERE organization_id = :o "
                "ORDER BY received_at DESC LIMIT 1"
            ),
            {"o": ORG},
        ).scalar_one()
    print("seeded: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
    return {"device": DEVICE, "request": state_request, "run": last_run, "webhook_event": event}


def median_s(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def timings(
    store: Store, targets: dict[str, str], repeat: int, chart_dir: Path
) -> dict[str, float]:
    def trace(ident: str) -> Callable[[], object]:
        def run() -> object:
            with store.connect() as conn:
                chain = build_chain(conn, ORG, ident)
            assert chain.runs or chain.webhooks, f"empty chain for {ident}"
            return chain

        return run

    def report(period: timedelta) -> Callable[[], object]:
        def run() -> object:
            with store.connect() as conn:
                built = build_integration_report(
                    conn, organization_id=ORG, now=utc_now(), period=period
                )
            assert len(built.integrations) == INTEGRATIONS // ORGS
            return built

        return run

    with store.connect() as conn:
        integration = get_integration(conn, ORG, f"bench-int-{INTEGRATION_NO:03d}")
    assert integration is not None

    def check(*names: str) -> Callable[[], object]:
        """What the check sensor evaluates for one integration: `names` of CHECKS (all when none)."""
        chosen = [c for c in CHECKS if not names or c.name in names]

        def run() -> object:
            with store.connect() as conn:
                ctx = CheckContext.of(conn, integration, now=utc_now())
                return [c.evaluate(ctx) for c in chosen]

        return run

    def health() -> object:
        with store.connect() as conn:
            return integration_health(conn, integration, now=utc_now())

    def service_health() -> object:
        checked = check_service_health(store, HealthOptions(), organization_id=ORG)
        assert len(checked.integrations) == INTEGRATIONS // ORGS, checked.as_json()
        return checked

    results = {
        f"trace {kind} ({ident[:24]})": median_s(trace(ident), repeat)
        for kind, ident in targets.items()
    }
    results["check error rate (1 integration)"] = median_s(check(CALL_FAILURE_RATE), repeat)
    results["check error-rate trend (1 integration)"] = median_s(check(CALL_FAILURE_TREND), repeat)
    results["check freshness (1 integration)"] = median_s(check(FRESHNESS), repeat)
    results["checks, all of CHECKS (1 integration)"] = median_s(check(), repeat)
    results["health of 1 integration"] = median_s(health, repeat)
    results["service health (25 integrations)"] = median_s(service_health, repeat)
    # what the hourly schedule does before a weekly report reads the hours: the first roll-up of
    # all 90 days (emptied first, so a reused database measures it too), then an hourly one
    organizations = [f"bench-org-{n}" for n in range(ORGS)]
    with store.transaction() as conn:
        conn.execute(sa.text("DELETE FROM provider_call_hours"))
    started = time.perf_counter()
    roll_up_organizations(store, organizations, now=utc_now())
    results["roll-up, first: 90 days (4 organizations)"] = time.perf_counter() - started
    results["roll-up, hourly (4 organizations)"] = median_s(
        lambda: roll_up_organizations(store, organizations, now=utc_now()), repeat
    )
    results["report 24 h (25 integrations)"] = median_s(report(timedelta(hours=24)), repeat)
    results["report 7 d (25 integrations)"] = median_s(report(timedelta(days=7)), repeat)
    weekly = report(timedelta(days=7))()
    results["chart 7 d (PNG)"] = median_s(
        lambda: write_chart(weekly, chart_dir / "chart.png"), repeat
    )
    return results


def cli_wall_times(url: str, targets: dict[str, str], repeat: int) -> dict[str, float]:
    """What the on-call waits for: the whole `sync-pipelines trace` / `report` command, process
    start-up and imports included."""
    cli = str(Path(sys.executable).parent / "sync-pipelines")
    env = {**os.environ, "SYNC_DATABASE_URL": url}
    commands = {
        "$ sync-pipelines trace <device>": ["trace", targets["device"], "--organization", ORG],
        "$ sync-pipelines trace <run>": ["trace", targets["run"], "--organization", ORG],
        "$ sync-pipelines report (24 h)": ["report", "--organization", ORG],
        "$ sync-pipelines report --days 7": ["report", "--organization", ORG, "--days", "7"],
    }

    def run(argv: list[str]) -> Callable[[], object]:
        return lambda: subprocess.run(
            [cli, *argv], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    return {name: median_s(run(argv), repeat) for name, argv in commands.items()}


def indexes_of_012() -> list[str]:
    text = (sql_dir() / "012_trace_indexes.sql").read_text()
    return re.findall(r"CREATE INDEX (\w+)", text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--without-012", action="store_true", help="Also time with sql/012's indexes dropped."
    )
    parser.add_argument(
        "--keep", action="store_true", help="Keep the seeded database (prints its URL) for --url."
    )
    parser.add_argument(
        "--url",
        help="Time against a database seeded by an earlier --keep run (migrated to the current "
        "sql/, not seeded again); it is kept.",
    )
    args = parser.parse_args()
    if args.url:
        url, drop = args.url, lambda: None
    else:
        url, drop = fresh_store_url("postgres", prefix="sync_bench_obs")
    store = Store(url)
    try:
        started = time.perf_counter()
        migrate(store)
        if args.url:
            targets = targets_of(store)
            print(f"migrated: {time.perf_counter() - started:.1f} s; reusing {url}")
        else:
            targets = seed(store, args.rows)
            print(f"seed: {time.perf_counter() - started:.1f} s; targets in {ORG}: {targets}")
        if args.keep and not args.url:
            print(f"kept: --url {url}")
            drop = lambda: None  # noqa: E731
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        chart_dir = Path(tempfile.mkdtemp(prefix="obs-bench-"))
        with_indexes = timings(store, targets, args.repeat, chart_dir)
        commands = cli_wall_times(url, targets, args.repeat)
        without: dict[str, float] = {}
        if args.without_012:
            with store.transaction() as conn:
                for name in indexes_of_012():
                    conn.exec_driver_sql(f"DROP INDEX {name}")
            with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")
            without = timings(store, targets, args.repeat, chart_dir)
        width = max(len(k) for k in with_indexes)
        header = f"{'query':<{width}}  {'median ms':>10}" + (
            f"  {'without 012':>12}  {'ratio':>6}" if without else ""
        )
        print(f"\nload average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        rows = "the --url database's" if args.url else f"{args.rows:,} requested"
        print(f"\nPostgres, activity rows: {rows}, median of {args.repeat}\n")
        print(header)
        print("-" * len(header))
        for name, seconds in with_indexes.items():
            line = f"{name:<{width}}  {seconds * 1000:>10.1f}"
            if without:
                line += f"  {without[name] * 1000:>12.1f}  {without[name] / seconds:>5.1f}x"
            print(line)
        print(f"\nwhole commands (wall time incl. process start-up), median of {args.repeat}\n")
        for name, seconds in commands.items():
            print(f"{name:<{width}}  {seconds * 1000:>10.1f}")
    finally:
        store.dispose()
        drop()


if __name__ == "__main__":
    main()
