"""The operator console's activity page on a 1M-row activity log (Postgres): target ≤ 300 ms.

Seeds a private database with observability_queries.seed (INSERT ... SELECT generate_series: 100
integrations of 4 organizations over 90 days, sync runs of operations and provider calls with
~3 % failures and a few bad integrations, 2 % webhook deliveries, devices, dead letters), spreads
the integrations over the four providers, then serves the console's own server
(`sync-pipelines console`) on a loopback port and times, over real HTTP, the JSON API and the HTML page for every
filter and search kind — first page and a deep keyset page (a cursor 45 days back) — as an
unscoped operator and as one scoped to an organization (row-level security). Prints median and
p95 ms per case; `--explain CASE` prints Postgres's plan of a case's query.

    .venv/bin/python bench/console_pages.py                      # 1M rows, 20 repeats
    .venv/bin/python bench/console_pages.py --rows 1000000 --keep
    .venv/bin/python bench/console_pages.py --url postgresql://.../sync_bench_console_x
    .venv/bin/python bench/console_pages.py --url ... --without-015   # what sql/015 buys
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import timedelta

import httpx
import sqlalchemy as sa
from bench_support import fresh_store_url
from observability_queries import DEVICE, ORG, seed, targets_of
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.clock import utc_now
from sync_pipelines.console.filters import Cursor
from sync_pipelines.console.server import create_console_server
from sync_pipelines.store.database import Store
from sync_pipelines.store.migrations import migrate

ADMIN = "bench-admin-token-0123456789abcdef"
TENANT = "bench-tenant-token-0123456789abcdef"
ENV = {"SYNC_CONSOLE_TOKEN": ADMIN, "SYNC_CONSOLE_TENANT_TOKENS": f"{ORG}={TENANT}"}
TARGET_MS = 300.0
INDEXES_015 = (
    "activity_created_idx",
    "activity_org_created_idx",
    "activity_type_created_idx",
    "activity_unsuccessful_idx",
)


def spread_providers(store: Store) -> None:
    """The seed's integrations are all Golioth: give each provider a quarter of them."""
    with store.transaction() as conn:
        conn.execute(
            sa.text(
                "UPDATE integrations SET provider = (ARRAY['golioth', 'aws_iot', 'azure_iot', 'mqtt'])"
                "[1 + (substr(integration_id, 11)::int / 4) % 4]"
            )
        )


def cases(store: Store) -> list[tuple[str, str, dict[str, str]]]:
    """(name, operator token, query parameters)."""
    ids = targets_of(store)
    with store.connect() as conn:
        integration = conn.execute(
            sa.text(
                "SELECT integration_id FROM integrations WHERE organization_id = :o ORDER BY 1 LIMIT 1"
            ),
            {"o": ORG},
        ).scalar_one()
    day = utc_now() - timedelta(days=45)
    window = {"since": day.isoformat(), "until": (day + timedelta(hours=6)).isoformat()}
    return [
        ("all", ADMIN, {}),
        ("organization", ADMIN, {"organization": ORG}),
        ("integration", ADMIN, {"integration": integration}),
        ("provider", ADMIN, {"provider": "azure_iot"}),
        ("status failed", ADMIN, {"status": "failed"}),
        ("status retrying + org", ADMIN, {"status": "retrying", "organization": ORG}),
        ("status started (rare)", ADMIN, {"status": "started"}),
        ("direction incoming", ADMIN, {"direction": "incoming"}),
        ("type import", ADMIN, {"activity_type": "import"}),
        ("type webhook_processing", ADMIN, {"activity_type": "webhook_processing"}),
        ("type retention (none)", ADMIN, {"activity_type": "retention"}),
        ("range 24h", ADMIN, {"range": "24h"}),
        ("since/until 6 h", ADMIN, window),
        (
            "all filters",
            ADMIN,
            {
                "organization": ORG,
                "provider": "golioth",
                "status": "success",
                "direction": "outgoing",
                "activity_type": "http_request",
                "range": "90d",
            },
        ),
        ("search request", ADMIN, {"q": ids["request"]}),
        ("search run", ADMIN, {"q": ids["run"]}),
        ("search device", ADMIN, {"q": DEVICE}),
        ("search webhook event", ADMIN, {"q": ids["webhook_event"]}),
        ("scoped: all", TENANT, {}),
        ("scoped: status failed", TENANT, {"status": "failed"}),
        ("scoped: search device", TENANT, {"q": DEVICE}),
    ]


def time_ms(
    client: httpx.Client, path: str, token: str, params: dict[str, str], repeat: int
) -> list[float]:
    headers = {"authorization": f"Bearer {token}"}
    client.get(path, params=params, headers=headers).raise_for_status()  # warm
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.get(path, params=params, headers=headers).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def run_cases(store: Store, repeat: int) -> list[float]:
    deep = Cursor(utc_now() - timedelta(days=45), "act-~").encode()
    worst: list[float] = []
    print(
        f"{'case':<26} {'page':<6} {'API median':>11} {'API p95':>9} {'HTML median':>12} {'HTML p95':>9}"
    )
    with (
        EmulatorServer(create_console_server(store, environ=ENV)) as server,
        httpx.Client(base_url=f"{server.url}/console", timeout=60) as client,
    ):
        for name, token, params in cases(store):
            for page, extra in (("first", {}), ("deep", {"after": deep})):
                if "q" in params and page == "deep":
                    continue  # a search's rows fit on a page or two
                p = {**params, **extra}
                api = time_ms(client, "/api/activity", token, p, repeat)
                html = time_ms(client, "/activity", token, p, repeat)
                worst += [p95(api), p95(html)]
                flag = "" if max(p95(api), p95(html)) <= TARGET_MS else "  > target"
                print(
                    f"{name:<26} {page:<6} {statistics.median(api):>8.1f} ms {p95(api):>6.1f} ms "
                    f"{statistics.median(html):>9.1f} ms {p95(html):>6.1f} ms{flag}"
                )
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="Keep the seeded database for --url.")
    parser.add_argument("--url", help="Time against a database an earlier --keep run seeded.")
    parser.add_argument("--without-015", action="store_true", help="Drop sql/015's indexes first.")
    args = parser.parse_args()
    url, drop = (
        (args.url, lambda: None)
        if args.url
        else fresh_store_url("postgres", prefix="sync_bench_console")
    )
    store = Store(url)
    try:
        migrate(store)
        if not args.url:
            started = time.perf_counter()
            seed(store, args.rows)
            spread_providers(store)
            print(f"seeded in {time.perf_counter() - started:.1f} s")
        if args.without_015:
            with store.transaction() as conn:
                for index in INDEXES_015:
                    conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index}")
            print(
                "sql/015 indexes dropped (recreate them with: DELETE FROM schema_migrations ... or a fresh seed)"
            )
        worst = run_cases(store, args.repeat)
        print(f"worst p95: {max(worst):.1f} ms (target {TARGET_MS:.0f} ms); repeats {args.repeat}")
        if args.keep and not args.url:
            print(f"kept: --url {url}")
    finally:
        store.dispose()
        if not args.keep and not args.url:
            drop()


if __name__ == "__main__":
    main()
