"""The demo's fault drill: one Golioth integration whose provider misbehaves, and everything the
product does about it, for real — the sync survives on retries and dead-letters what it cannot
read, its asset checks fail, an alert reaches a local sink, health shows it degraded and
`trace` explains one device's story.

The faults: 35 % of state reads answer 503 (retries absorb most, a few devices run out of
attempts and become dead letters) and one device's record is poisoned (a dead letter at once).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from sync_pipelines.alerts.channels import Channel
from sync_pipelines.alerts.check_results import alert_on_check_result
from sync_pipelines.alerts.evaluation import evaluate_alerts
from sync_pipelines.alerts.settings import AlertSettings
from sync_pipelines.clock import utc_now
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.store.alerts import Incident, list_incidents
from sync_pipelines.store.check_results import CheckResult, check_results
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import Integration
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines_peers.alert_sink import AlertSink, ReceivedPost
from sync_pipelines_peers.emulators.faults import FaultSpec
from sync_pipelines_peers.launchers.golioth import GoliothPeer

DRILL_INTEGRATION = "golioth-flaky"
DRILL_DEVICES = 40
#: quick retries: the drill should take seconds, not the production backoff
_DRILL_SETTINGS = {
    "retry_max_attempts": 3,
    "retry_base_backoff_s": 0.01,
    "retry_max_backoff_s": 0.05,
    # the drill's faults hit per-device state reads: read them one by one, not from the list
    "state_source": "device",
}


@dataclass(slots=True)
class DrillOutcome:
    organization_id: str
    integration_id: str = DRILL_INTEGRATION
    run_id: str | None = None
    run_success: bool = False
    failed_checks: list[CheckResult] = field(default_factory=list)
    alerts: list[ReceivedPost] = field(default_factory=list)
    #: the integration's open incidents after the drill (a re-run within the cooldown sends
    #: nothing new: the incident it raised last time is still open and counts the repeat)
    open_incidents: list[Incident] = field(default_factory=list)
    #: a device the faults hit: what `trace` is shown for
    traced_device: str | None = None
    error: str | None = None


def run_fault_drill(
    store: Store, instance: dg.DagsterInstance, organization_id: str
) -> DrillOutcome:
    from sync_pipelines.defs.provider_assets import PROVIDER_DEFS
    from sync_pipelines_peers.demo import run_named_job

    outcome = DrillOutcome(organization_id)
    sink = AlertSink().start()
    peer = GoliothPeer()
    try:
        peer.start()
        ids = sorted(peer.seed(DRILL_DEVICES))
        integration = _register(store, peer, organization_id)
        peer.emulator.add_faults(
            FaultSpec("server_error", path=r"^/v1/.*/data", status=503, probability=0.35),
            FaultSpec("poison_record", path=r"^/v1/", device_index=3),
        )
        iid = integration.integration_id
        instance.add_dynamic_partitions("golioth_integrations", [iid])
        result = run_named_job(store, instance, PROVIDER_DEFS["golioth"].sync_job.name, iid)
        outcome.run_id, outcome.run_success = result.run_id, result.success

        settings = AlertSettings(
            channels=(
                Channel("webhook", "webhook", sink.webhook_url),
                Channel("slack", "slack", sink.slack_url),
            ),
        )
        now = utc_now()
        with store.connect() as conn:
            results = check_results(conn, organization_id, integration_id=iid, run_id=result.run_id)
        outcome.failed_checks = [r for r in results if not r.passed]
        # what the alert sensors do on their next ticks: judge the rules, and alert on failed checks
        evaluate_alerts(store, settings, now=now)
        for failed in outcome.failed_checks:
            alert_on_check_result(store, failed, settings, now=now)
        outcome.alerts = list(sink.received)
        with store.connect() as conn:
            outcome.open_incidents = [
                i
                for i in list_incidents(conn, organization_id, open_only=True)
                if i.integration_id == iid
            ]
        outcome.traced_device = _hit_device(store, organization_id, iid, ids)
    except Exception as exc:  # the demo reports the drill failed and goes on
        get_logger("demo").exception("fault_drill_failed")
        outcome.error = f"{type(exc).__name__}: {exc}"
    finally:
        peer.stop()
        sink.stop()
    return outcome


def _register(store: Store, peer: GoliothPeer, organization_id: str) -> Integration:
    secret_refs, env = peer.secret_env("DEMO_DRILL")
    os.environ.update(env)
    integration = Integration(
        integration_id=DRILL_INTEGRATION,
        organization_id=organization_id,
        provider="golioth",
        name="golioth (flaky peer)",
        settings={**peer.integration_settings(), **_DRILL_SETTINGS},
        secret_refs=secret_refs,
        poll_interval_s=300,
    )
    register_integration(store, integration)
    return integration


def _hit_device(
    store: Store, organization_id: str, integration_id: str, ids: list[str]
) -> str | None:
    """A device with a dead letter if there is one (the most to explain), else the first id."""
    import sqlalchemy as sa

    with store.connect() as conn:
        hit = conn.execute(
            sa.text(
                "SELECT external_id FROM dead_letters WHERE organization_id = :o AND integration_id = :i "
                "AND external_id IS NOT NULL "
                # a failed state read shows the provider calls with their attempts
                "ORDER BY CASE WHEN stream = 'device_states' THEN 0 ELSE 1 END, external_id LIMIT 1"
            ),
            {"o": organization_id, "i": integration_id},
        ).scalar()
    return hit or (ids[0] if ids else None)


def alert_lines(posts: list[ReceivedPost]) -> list[str]:
    """What the local sink received, one line per alert with the channels it reached: the
    generic webhook's `title` (Slack's `text` says the same after its emoji)."""
    headlines: dict[str, list[str]] = {}
    for post in posts:
        fields: dict[str, Any] = post.body if isinstance(post.body, dict) else {}
        headline = str(fields.get("title") or fields.get("text") or post.body).splitlines()[0]
        channel = "slack" if "/services/" in post.path else "webhook"
        if channel == "slack":
            headline = headline.split(" ", 1)[-1] if headline.startswith(":") else headline
        headlines.setdefault(headline, []).append(channel)
    return [f"  [{', '.join(sorted(set(c)))}] {h}" for h, c in headlines.items()]


def drill_health(store: Store, organization_id: str, integration_id: str) -> tuple[str, str]:
    """The organization's health report as `sync-pipelines health` prints it, and the drill
    integration's state in it."""
    from sync_pipelines.monitoring.health_report_text import render_health_text
    from sync_pipelines.monitoring.service_health import HealthOptions, check_service_health

    report = check_service_health(
        store, HealthOptions.from_env(), organization_id=organization_id
    ).as_json()
    state = next(
        (i["state"] for i in report["integrations"] if i["integration_id"] == integration_id),
        "missing",
    )
    return render_health_text(report), state


def drill_trace(store: Store, organization_id: str, external_id: str | None) -> str:
    """`sync-pipelines trace` of the device the faults hit, its passed checks left out (the
    failed ones are what it explains)."""
    import dataclasses

    from sync_pipelines.tracing.chain import build_chain
    from sync_pipelines.tracing.render import render_chain

    if external_id is None:
        return ""
    with store.connect() as conn:
        chain = build_chain(conn, organization_id, external_id, integration_id=DRILL_INTEGRATION)
    failed = tuple(r for r in chain.check_results if not r["passed"])
    return render_chain(dataclasses.replace(chain, check_results=failed))
