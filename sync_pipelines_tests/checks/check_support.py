"""Real rows for the check tests — integrations, provider calls, sync-log rows and devices, at
chosen times around a fixed NOW — and `judge` to evaluate one check on them."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from sync_pipelines.checks.context import CheckContext
from sync_pipelines.checks.outcome import CheckOutcome
from sync_pipelines.providers.contract import DeviceRecord
from sync_pipelines.store.activity import insert_activity_rows
from sync_pipelines.store.database import Store, dump_json
from sync_pipelines.store.devices import upsert_devices
from sync_pipelines.store.integrations import (
    Integration,
    ensure_organization,
    get_integration,
    save_integration,
)
from sync_pipelines.sync.records import device_row
from sync_pipelines_tests.activity_rows import provider_call_row


def call_row(integ: Integration, at: datetime, *, failed: bool = False, ms: float = 50.0) -> dict:
    """One provider call as the HTTP recorder writes it (a failed attempt: 503, transient)."""
    return provider_call_row(
        integ.organization_id,
        integ.integration_id,
        at,
        status="failed" if failed else "success",
        ms=ms,
    )


def add_calls(
    store: Store,
    integ: Integration,
    end: datetime,
    *,
    calls: int,
    failed: int = 0,
    ms: float = 50.0,
    span_s: float = 240.0,
) -> None:
    """`calls` provider calls spread over the `span_s` seconds before `end`, `failed` of them failed."""
    rows = [
        call_row(
            integ, end - timedelta(seconds=span_s * (k + 1) / (calls + 1)), failed=k < failed, ms=ms
        )
        for k in range(calls)
    ]
    with store.transaction() as conn:
        insert_activity_rows(conn, rows)


def add_binomial_windows(
    store: Store,
    integ: Integration,
    end: datetime,
    rates: Sequence[float],
    *,
    calls: int,
    rng: random.Random,
    window_s: int = 300,
) -> None:
    """One window of `calls` calls per rate, oldest first, the last ending at `end`; each call
    fails with its window's probability (binomial noise from `rng`)."""
    rows = []
    for k, rate in enumerate(rates):
        window_end = end - timedelta(seconds=window_s * (len(rates) - 1 - k))
        for c in range(calls):
            at = window_end - timedelta(seconds=window_s * (c + 0.5) / calls)
            rows.append(call_row(integ, at, failed=rng.random() < rate))
    with store.transaction() as conn:
        insert_activity_rows(conn, rows)


def add_sync(
    store: Store,
    integ: Integration,
    started_at: datetime,
    status: str,
    *,
    fetched: int = 10,
    stream: str = "devices",
    cursor_before: dict | None = None,
    duration_s: float = 5.0,
) -> None:
    with store.transaction() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO integration_sync_log (id, organization_id, integration_id, run_id, stream, "
                "status, started_at, completed_at, cursor_before, fetched, created, updated, unchanged, "
                "failed, conflicts, pages, error_type, error_message) VALUES (:id, :o, :i, 'run-seed', :s, "
                ":st, :t, :done, :cursor, :f, 0, 0, 0, 0, 0, 1, :et, :em)"
            ),
            {
                "id": str(uuid.uuid4()),
                "o": integ.organization_id,
                "i": integ.integration_id,
                "s": stream,
                "st": status,
                "t": started_at,
                "done": None if status == "running" else started_at + timedelta(seconds=duration_s),
                "cursor": dump_json(cursor_before),
                "f": fetched,
                "et": "auth" if status == "failed" else None,
                "em": "401 from provider" if status == "failed" else None,
            },
        )


def add_devices(
    store: Store, integ: Integration, devices: Sequence[DeviceRecord], now: datetime
) -> None:
    rows = [
        device_row(
            d,
            organization_id=integ.organization_id,
            integration_id=integ.integration_id,
            run_id="run-seed",
            request_id=None,
            now=now,
        )
        for d in devices
    ]
    with store.transaction() as conn:
        upsert_devices(conn, rows)


NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ORG = "org-checks"


def save(
    store,
    integration_id: str = "golioth-checks",
    *,
    monitoring: dict | None = None,
    poll_interval_s: int = 300,
    created_ago: timedelta = timedelta(days=7),
    organization_id: str = ORG,
) -> Integration:
    """Save an integration created `created_ago` before NOW, as read back from the store."""
    settings: dict = {"base_url": "http://127.0.0.1:9", "project_id": "p"}
    if monitoring is not None:
        settings["monitoring"] = monitoring
    integration = Integration(
        integration_id=integration_id,
        organization_id=organization_id,
        provider="golioth",
        name=integration_id,
        settings=settings,
        secret_refs={"api_key": "UNUSED_KEY_ENV"},
        poll_interval_s=poll_interval_s,
    )
    with store.transaction() as conn:
        ensure_organization(conn, organization_id)
        save_integration(conn, integration)
        conn.execute(
            sa.text(
                "UPDATE integrations SET created_at = :t WHERE organization_id = :o AND integration_id = :i"
            ),
            {"t": NOW - created_ago, "o": organization_id, "i": integration_id},
        )
    with store.connect() as conn:
        return get_integration(conn, organization_id, integration_id)


def judge(
    store: Store,
    integ: Integration,
    check: Callable[[CheckContext], CheckOutcome],
    *,
    now: datetime = NOW,
) -> CheckOutcome:
    with store.connect() as conn:
        return check(CheckContext.of(conn, integ, now=now))
