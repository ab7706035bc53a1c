"""One health model, shown identically everywhere: twelve integrations, each seeded (real rows in
SQLite and Postgres) into one situation an operator meets, and every view that shows a state —
`/health`, `sync-pipelines health`, the console's API, `sync-pipelines report`, the
`sync_pipelines_integration_health` metric and the `integration_health` asset check — must
give each the expected state and the same reasons.

Reasons that hold an age ("… 2000 s ago") are compared with the seconds masked: each view
judges at its own instant, a second apart."""

from __future__ import annotations

import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.checks.health_check import INTEGRATION_HEALTH
from sync_pipelines.checks.integration_checks import evaluate_integration
from sync_pipelines.cli import main
from sync_pipelines.clock import utc_now
from sync_pipelines.console.server import create_console_server
from sync_pipelines.errors import RATE_LIMITED
from sync_pipelines.monitoring.service_health import HealthOptions
from sync_pipelines.store.activity import insert_activity_rows
from sync_pipelines.store.dead_letters import DeadLetterPolicy, FailedRecord, record_dead_letters
from sync_pipelines.store.integrations import (
    Integration,
    ensure_organization,
    list_integrations,
    save_integration,
)
from sync_pipelines.store.webhook_events import WebhookEvent, insert_event
from sync_pipelines.webhooks.app import HEALTH_TOKEN_ENV, create_receiver_app
from sync_pipelines_tests.activity_rows import provider_call_row

ORG = "org-truth"
CONSOLE_TOKEN = "console-" + "t" * 32
HEALTH_TOKEN = secrets.token_urlsafe(24)


@dataclass
class Scenario:
    state: str
    #: the signals that speak, in the model's order
    signals: list[str]
    #: a phrase each of those signals' reasons must hold
    phrases: list[str]
    syncs: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, str | None]] = field(default_factory=list)
    dead_letters: int = 0
    inbox: int = 0
    enabled: bool = True


def _sync(stream: str, status: str, ago_s: float, **figures: Any) -> dict[str, Any]:
    return {"stream": stream, "status": status, "ago_s": ago_s, **figures}


_GOOD = _sync("devices", "success", 60, fetched=50)
_CALLS_OK = [("success", None)] * 30

SCENARIOS: dict[str, Scenario] = {
    "clean": Scenario("healthy", [], [], syncs=[_GOOD], calls=_CALLS_OK),
    "partial": Scenario(
        "warning",
        ["last_syncs_complete"],
        ["the last devices sync was partial: 3 of 50 records failed (dead-lettered)"],
        syncs=[_sync("devices", "partial", 60, fetched=50, failed=3)],
        calls=_CALLS_OK,
    ),
    "abandoned": Scenario(
        "warning",
        ["last_sync_failed"],
        ["the last sync failed (abandoned: process died: no heartbeat"],
        syncs=[
            _sync("devices", "success", 600, fetched=50),
            _sync(
                "devices",
                "abandoned",
                60,
                error_type="abandoned",
                error_message="process died: no heartbeat since 12:00 (closed by the stale-sync sensor)",
            ),
        ],
        calls=_CALLS_OK,
    ),
    "failed-replay": Scenario(
        "warning",
        ["last_syncs_complete", "dead_letters_below_threshold"],
        [
            "the last dead-letter replay resolved 0 of 5 letters (5 failed again)",
            "5 open dead letters (warn at 1",
        ],
        syncs=[_GOOD, _sync("dead_letter_replay", "partial", 30, fetched=5, failed=5)],
        calls=_CALLS_OK,
        dead_letters=5,
    ),
    "stale": Scenario(
        "degraded",
        ["synced_within_freshness_sla"],
        ["s ago (SLA 900 s): stale"],  # the age is judged at each view's own instant
        syncs=[_sync("devices", "success", 2000, fetched=50)],
    ),
    "throttled": Scenario(
        "degraded",
        ["call_failure_rate_below_threshold"],
        ["25.0% of 40 provider calls failed in the last 300 s, 10 of them throttled: above 10.0%"],
        syncs=[_GOOD],
        calls=[("success", None)] * 30 + [("retrying", RATE_LIMITED)] * 10,
    ),
    "one-dead-letter": Scenario(
        "warning",
        ["dead_letters_below_threshold"],
        ["1 open dead letters (warn at 1, error at 100)"],
        syncs=[_GOOD],
        calls=_CALLS_OK,
        dead_letters=1,
    ),
    "hundred-dead-letters": Scenario(
        "degraded",
        ["dead_letters_below_threshold"],
        ["100 open dead letters (warn at 1, error at 100)"],
        syncs=[_GOOD],
        calls=_CALLS_OK,
        dead_letters=100,
    ),
    "inbox-backlog": Scenario(
        "warning",
        ["webhook_inbox"],
        ["600 webhook events waiting (warn above 500, unhealthy above 1000)"],
        syncs=[_GOOD],
        calls=_CALLS_OK,
        inbox=600,
    ),
    "auth-failure": Scenario(
        "unhealthy",
        ["last_sync_failed"],
        ["the last sync failed on its auth (auth: HTTP 401"],
        syncs=[
            _sync("devices", "success", 600, fetched=50),
            _sync("devices", "failed", 60, error_type="auth", error_message="HTTP 401: bad key"),
        ],
    ),
    "never-synced": Scenario("unknown", ["never_synced"], ["never synced"]),
    "disabled": Scenario(
        "unknown",
        ["disabled"],
        ["disabled: not synced or judged"],
        syncs=[_GOOD],
        dead_letters=2,
        enabled=False,
    ),
}


def _seed(store, now: datetime) -> None:
    with store.transaction() as conn:
        ensure_organization(conn, ORG)
        for name, scenario in SCENARIOS.items():
            integ = Integration(
                integration_id=name,
                organization_id=ORG,
                provider="golioth",
                name=name,
                enabled=scenario.enabled,
                poll_interval_s=300,  # freshness SLA 900 s
            )
            save_integration(conn, integ)
            for sync in scenario.syncs:
                _insert_sync(conn, name, now, **sync)
            insert_activity_rows(
                conn,
                [
                    provider_call_row(
                        ORG,
                        name,
                        now - timedelta(seconds=30 + k),
                        status=status,
                        error_type=error_type,
                        status_code=429 if error_type == RATE_LIMITED else None,
                    )
                    for k, (status, error_type) in enumerate(scenario.calls)
                ],
            )
            if scenario.dead_letters:
                _insert_dead_letters(conn, integ, scenario.dead_letters, now)
            for k in range(scenario.inbox):
                insert_event(
                    conn,
                    WebhookEvent(
                        id=str(uuid.uuid4()),
                        organization_id=ORG,
                        integration_id=name,
                        provider="golioth",
                        event_id=f"evt-{k}",
                        event_type="device.updated",
                        external_id=f"dev-{k}",
                        payload={"id": f"dev-{k}"},
                        headers={},
                        delivery_id=f"delivery-{k}",
                        received_at=now - timedelta(seconds=5),
                    ),
                )


def _insert_sync(
    conn,
    integration_id: str,
    now: datetime,
    *,
    stream: str,
    status: str,
    ago_s: float,
    fetched: int = 0,
    failed: int = 0,
    error_type: str | None = None,
    error_message: str | None = None,
) -> None:
    started = now - timedelta(seconds=ago_s + 5)
    conn.execute(
        sa.text(
            "INSERT INTO integration_sync_log (id, organization_id, integration_id, run_id, stream, "
            "status, started_at, completed_at, fetched, created, updated, unchanged, failed, "
            "conflicts, pages, gaps, error_type, error_message) VALUES (:id, :o, :i, 'run-seed', "
            ":s, :st, :t, :done, :f, 0, 0, 0, :failed, 0, 1, 0, :et, :em)"
        ),
        {
            "id": str(uuid.uuid4()),
            "o": ORG,
            "i": integration_id,
            "s": stream,
            "st": status,
            "t": started,
            "done": now - timedelta(seconds=ago_s),
            "f": fetched,
            "failed": failed,
            "et": error_type,
            "em": error_message,
        },
    )


def _insert_dead_letters(conn, integ: Integration, count: int, now: datetime) -> None:
    record_dead_letters(
        conn,
        organization_id=ORG,
        integration_id=integ.integration_id,
        provider=integ.provider,
        records=[
            FailedRecord("devices", f"dev-{k}", "validation", "no name", {"id": f"dev-{k}"})
            for k in range(count)
        ],
        policy=DeadLetterPolicy(),
        run_id="run-seed",
        now=now,
    )


def _masked(reasons: list[str]) -> list[str]:
    return [re.sub(r"\d+ s ago", "N s ago", r) for r in reasons]


def _views(store) -> dict[str, dict[str, tuple[str, list[str]]]]:
    """integration -> (state, reasons), as each view shows it."""
    views: dict[str, dict[str, tuple[str, list[str]]]] = {}
    environ = {HEALTH_TOKEN_ENV: HEALTH_TOKEN, "SYNC_CONSOLE_TOKEN": CONSOLE_TOKEN}
    app = create_receiver_app(store, health=HealthOptions(), environ=environ)
    with (
        EmulatorServer(app) as server,
        EmulatorServer(create_console_server(store, environ=environ)) as console_server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        health = client.get("/health", headers={"authorization": f"Bearer {HEALTH_TOKEN}"})
        views["/health"] = {
            e["integration_id"]: (e["state"], e["reasons"])
            for e in health.json()["integrations"]
            if e["organization_id"] == ORG
        }
        console = client.get(
            f"{console_server.url}/console/api/overview",
            params={"organization": ORG},
            headers={"authorization": f"Bearer {CONSOLE_TOKEN}"},
        )
        assert console.status_code == 200, console.text
        views["console"] = {
            i["integration_id"]: (i["state"], i["reasons"]) for i in console.json()["integrations"]
        }
        scrape = client.get("/metrics")
    # the metric carries the state (1 on it, 0 on the other four); its reasons are the model's
    gauge: dict[str, list[str]] = {}
    for family in text_string_to_metric_families(scrape.text):
        for sample in family.samples:
            if sample.name == "sync_pipelines_integration_health" and sample.value == 1:
                gauge.setdefault(sample.labels["integration_id"], []).append(sample.labels["state"])
    views["metric"] = {iid: (states[0], []) for iid, states in gauge.items() if iid in SCENARIOS}
    assert all(len(states) == 1 for states in gauge.values()), gauge

    runner = CliRunner()
    url = ["--database-url", store.url]
    cli_health = runner.invoke(main, ["health", *url, "--organization", ORG, "--json"])
    assert cli_health.exit_code == 1, cli_health.output  # one integration is unhealthy
    views["cli health"] = {
        e["integration_id"]: (e["state"], e["reasons"])
        for e in json.loads(cli_health.stdout)["integrations"]
    }
    cli_report = runner.invoke(
        main, ["report", "--organization", ORG, "--json"], env={"SYNC_DATABASE_URL": store.url}
    )
    assert cli_report.exit_code == 0, cli_report.output
    views["cli report"] = {
        r["integration_id"]: (r["state"], r["reasons"])
        for r in json.loads(cli_report.stdout)["integrations"]
    }
    check: dict[str, tuple[str, list[str]]] = {}
    with store.connect() as conn:
        for integ in list_integrations(conn, ORG):
            if not integ.enabled:
                continue  # a disabled integration is not checked
            (outcome,) = [
                o
                for o in evaluate_integration(conn, integ, now=utc_now())
                if o.name == INTEGRATION_HEALTH
            ]
            state, *reasons = outcome.description.split("\n- ")
            check[integ.integration_id] = (state, reasons)
    views["asset check"] = check
    return views


def test_every_view_gives_each_integration_the_same_state_and_reasons(store):
    now = utc_now()
    _seed(store, now)
    views = _views(store)

    # the model itself, with its signals: the reference every view is held to
    reference = views["cli health"]
    with store.connect() as conn:
        from sync_pipelines.monitoring.health import integration_health

        model = {
            i.integration_id: integration_health(conn, i, now=utc_now())
            for i in list_integrations(conn, ORG)
        }
    for name, scenario in SCENARIOS.items():
        health = model[name]
        assert health.state == scenario.state, (name, health.reasons)
        assert [s.name for s in health.signals] == scenario.signals, (name, health.reasons)
        for signal, phrase in zip(health.signals, scenario.phrases, strict=True):
            assert phrase in signal.reason, (name, signal.reason)
        assert reference[name] == (health.state, health.reasons) or (
            reference[name][0] == health.state
            and _masked(reference[name][1]) == _masked(health.reasons)
        ), name

    disagreements = []
    for view, shown in views.items():
        for name, scenario in SCENARIOS.items():
            if view == "asset check" and not scenario.enabled:
                continue
            if name not in shown:
                disagreements.append(f"{view}: {name} missing")
                continue
            state, reasons = shown[name]
            if state != scenario.state:
                disagreements.append(f"{view}: {name} is {state}, expected {scenario.state}")
            if view != "metric" and _masked(reasons) != _masked(reference[name][1]):
                disagreements.append(
                    f"{view}: {name} says {reasons}, the model {reference[name][1]}"
                )
    assert disagreements == []


def test_a_disabled_integration_is_not_judged_but_what_it_left_is_shown(store):
    """Disabled: one `unknown` signal, no verdict — but its dead letters and last success are
    read, not blanked (the console's integration page and overview show them)."""
    from sync_pipelines.monitoring.health import integration_health

    now = utc_now()
    _seed(store, now)
    with store.connect() as conn:
        disabled = next(i for i in list_integrations(conn, ORG) if i.integration_id == "disabled")
        health = integration_health(conn, disabled, now=now)
    assert (health.state, [s.name for s in health.signals]) == ("unknown", ["disabled"])
    assert health.dead_letters == 2
    assert health.last_success_at is not None and health.last_attempt_at is not None
