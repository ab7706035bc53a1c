"""One dlt load of the Golioth device list into Postgres: the comparison side of
bench/dlt_comparison.py, run there as a child process so its peak RSS is its own.

dlt's `rest_api` source pages `GET /v1/projects/{project}/devices` with `x-api-key` auth and
writes the `list` items into `<dataset>.devices` with `write_disposition="merge"` and
`primary_key="id"`. Golioth's `total` counts devices, not pages, while dlt's
PageNumberPaginator reads `total_path` as a page count; so the paginator stops at the first
empty page instead (one request past the last page, which the Golioth emulator answers with an
empty `list`). Prints one JSON line of figures.

    BENCH_GOLIOTH_KEY=... python bench/dlt_golioth_load.py --base-url http://127.0.0.1:PORT \\
        --credentials postgresql://postgres@127.0.0.1:5432/db --dataset dlt_bench --pipelines-dir /tmp/x
"""

from __future__ import annotations

import argparse
import json
import os
import time

# No telemetry from a benchmark (and nothing beyond loopback is reachable here anyway).
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import dlt  # noqa: E402
from dlt.sources.helpers.rest_client.paginators import PageNumberPaginator  # noqa: E402
from dlt.sources.rest_api import rest_api_source  # noqa: E402

PER_PAGE = 100  # Golioth's maximum


def golioth_devices_source(
    base_url: str, project: str, api_key: str, max_table_nesting: int | None
):
    return rest_api_source(
        {
            "client": {
                "base_url": f"{base_url}/v1/projects/{project}/",
                "auth": {
                    "type": "api_key",
                    "name": "x-api-key",
                    "api_key": api_key,
                    "location": "header",
                },
                "paginator": PageNumberPaginator(
                    base_page=0, page_param="page", total_path=None, stop_after_empty_page=True
                ),
            },
            "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
            "resources": [
                {
                    "name": "devices",
                    "endpoint": {
                        "path": "devices",
                        "params": {"perPage": PER_PAGE},
                        "data_selector": "list",
                    },
                }
            ],
        },
        name="golioth",
        max_table_nesting=max_table_nesting,
    )


def _with_password(url: str) -> str:
    """dlt insists on a password; the local server trusts loopback, so a placeholder will do
    when the URL has none (a URL with a password is passed through unchanged)."""
    scheme, rest = url.split("://", 1)
    userinfo, _, host = rest.rpartition("@")
    if not userinfo or ":" in userinfo:
        return url
    return f"{scheme}://{userinfo}:unused-with-trust-auth@{host}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--project", default="demo-project")
    parser.add_argument("--api-key-env", default="BENCH_GOLIOTH_KEY")
    parser.add_argument(
        "--credentials", required=True, help="postgresql:// URL of the target database"
    )
    parser.add_argument("--dataset", required=True, help="Postgres schema dlt writes into")
    parser.add_argument(
        "--pipelines-dir", required=True, help="dlt's working directory (fresh per run)"
    )
    parser.add_argument(
        "--max-table-nesting",
        type=int,
        default=0,
        help="0 = one table, nested fields as JSON (like our devices table); "
        "-1 = dlt's default (child tables for lists)",
    )
    args = parser.parse_args()

    api_key = os.environ.get(args.api_key_env)
    if not api_key:
        raise SystemExit(f"${args.api_key_env} is not set (the emulator's API key)")
    pipeline = dlt.pipeline(
        pipeline_name="golioth_bench",
        pipelines_dir=args.pipelines_dir,
        destination=dlt.destinations.postgres(credentials=_with_password(args.credentials)),
        dataset_name=args.dataset,
    )
    nesting = None if args.max_table_nesting < 0 else args.max_table_nesting
    started = time.perf_counter()
    info = pipeline.run(golioth_devices_source(args.base_url, args.project, api_key, nesting))
    wall = time.perf_counter() - started
    info.raise_on_failed_jobs()
    steps = {
        step.step: round((step.finished_at - step.started_at).total_seconds(), 3)
        for step in pipeline.last_trace.steps
        if step.finished_at and step.started_at
    }
    print(
        json.dumps(
            {
                "tool": "dlt",
                "dlt_version": dlt.__version__,
                "run_s": round(wall, 3),
                "steps_s": steps,
                "loader_file_format": pipeline.destination.capabilities().preferred_loader_file_format,
            }
        )
    )


if __name__ == "__main__":
    main()
