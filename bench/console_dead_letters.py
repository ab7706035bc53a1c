"""The console's dead letters on Postgres: an integration's section and a letter's page when the
dead-letter table is large and mostly resolved (resolved letters pile up for 90 days; open ones
are few). Target: ≤ 300 ms per page, like the console's other pages.

Seeds a private database with INSERT ... SELECT generate_series: `--integrations` integrations of
4 organizations, `--letters` letters in all — `--open` of them not resolved, spread over the
integrations, the rest resolved — and the watched integration's own share. Then serves the
console's own server on a loopback port and times over real HTTP, as an operator of every
organization and as one scoped to the integration's organization (row-level security): the
default section (every letter not resolved), the resolved ones (first and a deep keyset page),
all statuses, the integration page with the section, and one letter's page. Prints median and
p95 ms per case.

    .venv/bin/python bench/console_dead_letters.py                         # 1M letters, 20 repeats
    .venv/bin/python bench/console_dead_letters.py --integrations 1        # all in one integration
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx
import sqlalchemy as sa
from bench_support import fresh_store_url
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.console.server import create_console_server
from sync_pipelines.store.database import Store
from sync_pipelines.store.migrations import migrate

ADMIN = "bench-admin-token-0123456789abcdef"
TENANT = "bench-tenant-token-0123456789abcdef"
ORG = "org-0"
WATCHED = "integration-0"
ENV = {"SYNC_CONSOLE_TOKEN": ADMIN, "SYNC_CONSOLE_TENANT_TOKENS": f"{ORG}={TENANT}"}
TARGET_MS = 300.0


def seed(store: Store, *, integrations: int, letters: int, open_letters: int) -> None:
    with store.transaction() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO organizations (organization_id, name, created_at) "
                "SELECT 'org-' || o, 'org-' || o, now() FROM generate_series(0, 3) o"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO integration_owners (organization_id, integration_id) "
                "SELECT 'org-' || (i % 4), 'integration-' || i FROM generate_series(0, :n - 1) i"
            ),
            {"n": integrations},
        )
        conn.execute(
            sa.text(
                "INSERT INTO integrations (organization_id, integration_id, provider, name, "
                "settings, secret_refs, poll_interval_s, enabled, created_at, updated_at) "
                "SELECT 'org-' || (i % 4), 'integration-' || i, 'golioth', 'g' || i, "
                '\'{"base_url": "http://127.0.0.1:9", "project_id": "p"}\', '
                '\'{"api_key": "BENCH_KEY"}\', 300, true, now(), now() '
                "FROM generate_series(0, :n - 1) i"
            ),
            {"n": integrations},
        )
        # ids: UUIDv7-shaped and time-ordered (the letter's age in ms leads), one per letter;
        # the first `open` letters (spread over the integrations) are not resolved
        conn.execute(
            sa.text(
                "INSERT INTO dead_letters (id, organization_id, integration_id, provider, stream, "
                "dedupe_key, external_id, payload, error_type, error_message, attempts, "
                "max_attempts, status, first_failed_at, last_failed_at, next_attempt_at, "
                "resolved_at, run_id, request_id, updated_at) "
                "SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7000-8000-' "
                "|| lpad(to_hex(g), 12, '0'), 'org-' || ((g % :n) % 4), 'integration-' || (g % :n), "
                "'golioth', 'devices', 'dev-' || g, 'dev-' || g, "
                "jsonb_build_object('id', 'dev-' || g, 'hardwareIds', 'oops'), 'validation', "
                "'hardwareIds must be a list', 1, 5, "
                "CASE WHEN g < :open THEN (ARRAY['pending', 'retrying', 'quarantined'])[1 + g % 3] "
                "ELSE 'resolved' END, t, t, CASE WHEN g < :open THEN t + interval '1 hour' END, "
                "CASE WHEN g >= :open THEN t + interval '1 hour' END, 'run-' || (g / 1000), "
                "'req-' || g, t "
                "FROM (SELECT g, t, lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0') "
                "AS h FROM (SELECT g, now() - (g::float / :total) * interval '90 days' AS t "
                "FROM generate_series(0, :total - 1) g) a) s"
            ),
            {"n": integrations, "open": open_letters, "total": letters},
        )
    with store.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            sa.text("VACUUM ANALYZE dead_letters")
        )


def time_case(client: httpx.Client, path: str, token: str, repeat: int) -> list[float]:
    took = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(path, headers={"authorization": f"Bearer {token}"})
        took.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--integrations", type=int, default=100)
    parser.add_argument("--letters", type=int, default=1_000_000)
    parser.add_argument("--open", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    url, drop = fresh_store_url("postgres", "sync_bench_dead_letters")
    store = Store(url)
    try:
        migrate(store)
        start = time.perf_counter()
        seed(store, integrations=args.integrations, letters=args.letters, open_letters=args.open)
        print(
            f"seeded {args.letters:,} letters ({args.open:,} open) over {args.integrations} "
            f"integrations in {time.perf_counter() - start:.1f} s"
        )
        with store.connect() as conn:
            watched = conn.execute(
                sa.text(
                    "SELECT count(*), count(*) FILTER (WHERE status <> 'resolved'), "
                    "min(id) FILTER (WHERE status = 'resolved'), "
                    "percentile_disc(0.5) WITHIN GROUP (ORDER BY id) FILTER "
                    "(WHERE status = 'resolved') FROM dead_letters WHERE integration_id = :i"
                ),
                {"i": WATCHED},
            ).one()
        total, opened, _, middle = watched
        one = (
            f"/integrations/{WATCHED}/dead-letters/"
            + watched[2]  # the oldest resolved letter of the watched integration
        )
        api = f"/api/integrations/{WATCHED}/dead-letters"
        cases = [
            ("section: not resolved (default)", api),
            ("section: resolved, first page", f"{api}?dl_status=resolved"),
            ("section: resolved, deep page", f"{api}?dl_status=resolved&dl_after={middle}"),
            ("section: all statuses", f"{api}?dl_status=all"),
            ("integration page (HTML)", f"/integrations/{WATCHED}"),
            ("letter page (HTML)", one),
            ("letter (JSON)", f"/api{one}"),
        ]
        print(f"{WATCHED}: {total:,} letters, {opened:,} not resolved")
        print(f"{'case':40} {'operator':8} {'median ms':>10} {'p95 ms':>8}")
        with (
            EmulatorServer(create_console_server(store, environ=ENV)) as server,
            httpx.Client(base_url=f"{server.url}/console", timeout=60) as client,
        ):
            worst = 0.0
            for name, path in cases:
                for who, token in (("all", ADMIN), ("scoped", TENANT)):
                    took = sorted(time_case(client, path, token, args.repeat))
                    p95 = took[max(0, int(len(took) * 0.95) - 1)]
                    worst = max(worst, p95)
                    print(f"{name:40} {who:8} {statistics.median(took):10.1f} {p95:8.1f}")
        print(f"worst p95 {worst:.1f} ms (target {TARGET_MS:.0f} ms)")
    finally:
        store.dispose()
        drop()


if __name__ == "__main__":
    main()
