"""The trace view's data: the causal chain `sync-pipelines trace` prints (tracing/chain.py), the
organization an id belongs to when an unscoped operator did not say, and the Dagster run links."""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import quote

DAGSTER_UI_URL_ENV = "SYNC_DAGSTER_UI_URL"


def dagster_run_url(run_id: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The run's page in the Dagster UI ($SYNC_DAGSTER_UI_URL, e.g. http://localhost:3000)."""
    base = (os.environ if environ is None else environ).get(DAGSTER_UI_URL_ENV, "").rstrip("/")
    if not base or not run_id:
        return None
    return f"{base}/runs/{quote(run_id, safe='')}"
