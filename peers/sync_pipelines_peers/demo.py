"""The demo sync: every registered provider against its local peer, through real Dagster runs
on the embedded default (SQLite store + SQLite instance), and what each run did.

Per provider: start the peer, seed it, register a demo integration, materialize the sync
assets (devices → states, plus telemetry where the provider streams it), then export two
desired-state changes of which one is contested on the provider's side, so the run shows a
push and a recorded conflict.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import dagster as dg

from sync_pipelines.observability.logging import get_logger
from sync_pipelines.store.check_results import check_results
from sync_pipelines.store.database import Store
from sync_pipelines.store.desired import request_desired_change
from sync_pipelines.store.devices import count_device_states, count_devices
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.migrations import migrate
from sync_pipelines.store.reports import RunActivitySummary, run_activity_summary
from sync_pipelines.store.telemetry import count_telemetry
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines_peers.launchers.contract import ProviderPeer
from sync_pipelines_peers.launchers.registry import PEERS, new_peer

DEMO_ORG = "demo-org"


@dataclass(slots=True)
class ProviderOutcome:
    provider: str
    integration_id: str
    peer_devices: int = 0
    stored_devices: int = 0
    #: soft-deleted devices in the store (missing from a complete scan, or deleted by an event)
    deleted_devices: int = 0
    stored_states: int = 0
    telemetry_messages: int | None = None
    exported: int = 0
    conflicts: int = 0
    run_ids: list[str] = field(default_factory=list)
    success: bool = False
    error: str | None = None
    duration_s: float = 0.0
    activity: RunActivitySummary | None = None
    #: asset checks of the sync run: (passed, evaluated)
    checks: tuple[int, int] = (0, 0)

    @property
    def checks_summary(self) -> str:
        return f"{self.checks[0]}/{self.checks[1]}"

    @property
    def ok(self) -> bool:
        return self.success and self.stored_devices == self.peer_devices


def demo_integration_id(provider: str) -> str:
    return f"{provider.replace('_', '-')}-demo"


def demo_instance() -> dg.DagsterInstance:
    """The instance at $DAGSTER_HOME (so the UI shows the demo's runs), else an ephemeral one."""
    return (
        dg.DagsterInstance.get()
        if os.environ.get("DAGSTER_HOME")
        else dg.DagsterInstance.ephemeral()
    )


def run_demo(
    device_count: int = 200,
    providers: Iterable[str] | None = None,
    *,
    store: Store | None = None,
    instance: dg.DagsterInstance | None = None,
) -> list[ProviderOutcome]:
    store = store or Store()
    migrate(store)
    instance = instance or demo_instance()
    return [
        _demo_provider(store, instance, provider, device_count) for provider in (providers or PEERS)
    ]


def _demo_provider(
    store: Store, instance: dg.DagsterInstance, provider: str, device_count: int
) -> ProviderOutcome:
    outcome = ProviderOutcome(provider, demo_integration_id(provider))
    started = time.perf_counter()
    peer: ProviderPeer | None = None
    try:
        peer = new_peer(provider)
        peer.start()
        ids = sorted(peer.seed(device_count))
        outcome.peer_devices = len(ids)
        integration = _register(store, peer, outcome.integration_id)
        _run_all(store, instance, peer, integration, ids, outcome)
    except Exception as exc:  # the demo goes on to the next provider and reports this one failed
        get_logger("demo").exception("demo_provider_failed", provider=provider)
        outcome.success = False
        outcome.error = f"{type(exc).__name__}: {exc}"
    finally:
        if peer is not None:
            peer.stop()
    outcome.duration_s = time.perf_counter() - started
    return outcome


def _register(store: Store, peer: ProviderPeer, integration_id: str) -> Integration:
    secret_refs, env = peer.secret_env(f"DEMO_{peer.provider.upper()}")
    os.environ.update(env)  # secrets live in the environment; the store keeps only their names
    integration = Integration(
        integration_id=integration_id,
        organization_id=DEMO_ORG,
        provider=peer.provider,
        name=f"{peer.provider} (local peer)",
        settings=peer.integration_settings(),
        secret_refs=secret_refs,
        poll_interval_s=300,
    )
    register_integration(store, integration)
    return integration


def _run_all(
    store: Store,
    instance: dg.DagsterInstance,
    peer: ProviderPeer,
    integration: Integration,
    ids: list[str],
    outcome: ProviderOutcome,
) -> None:
    from sync_pipelines.defs.integration_checks import CHECKS_BY_PROVIDER
    from sync_pipelines.defs.provider_assets import PROVIDER_DEFS
    from sync_pipelines.defs.resources import SyncStoreResource

    defs = PROVIDER_DEFS[peer.provider]
    checks = CHECKS_BY_PROVIDER[peer.provider]
    iid = integration.integration_id
    instance.add_dynamic_partitions(f"{peer.provider}_integrations", [iid])
    resources = {"store": SyncStoreResource(database_url=store.url)}

    def materialize(assets: list[dg.AssetsDefinition]) -> dg.ExecuteInProcessResult:
        # the integration's asset checks run with it, as in the sync job
        result = dg.materialize(
            [*assets, checks],
            partition_key=iid,
            instance=instance,
            resources=resources,
            raise_on_error=False,
            selection=[a.key for a in assets],
        )
        outcome.run_ids.append(result.run_id)
        return result

    runs = [materialize(defs.sync_assets)]
    if defs.telemetry is not None:
        # The first run opened the persistent session; what devices send now waits in the broker.
        peer.emit_telemetry(3, ids[:20])
        runs.append(materialize([defs.telemetry]))

    if len(ids) >= 2:
        quiet, contested = ids[0], ids[1]
        with store.transaction() as conn:
            request_desired_change(
                conn, DEMO_ORG, iid, quiet, {"demo_interval_s": 120}, requested_by="demo"
            )
            request_desired_change(
                conn, DEMO_ORG, iid, contested, {"demo_interval_s": 120}, requested_by="demo"
            )
        peer.write_desired_remotely(contested, {"demo_interval_s": 600})  # someone else, meanwhile
        export = materialize([defs.desired_exports])
        runs.append(export)
        if export.success:
            figures = export.asset_materializations_for_node(defs.desired_exports.op.name)[
                0
            ].metadata
            outcome.exported = int(figures["updated"].value)
            outcome.conflicts = int(figures["conflicts"].value)

    outcome.success = all(r.success for r in runs)
    with store.connect() as conn:
        outcome.stored_devices = count_devices(conn, DEMO_ORG, iid)
        outcome.deleted_devices = count_devices(conn, DEMO_ORG, iid, deleted=True)
        outcome.stored_states = count_device_states(conn, DEMO_ORG, iid)
        if defs.telemetry is not None:
            outcome.telemetry_messages = count_telemetry(conn, DEMO_ORG, iid)
        outcome.activity = run_activity_summary(conn, DEMO_ORG, runs[0].run_id)
        results = check_results(conn, DEMO_ORG, integration_id=iid, run_id=runs[0].run_id)
        outcome.checks = (sum(1 for r in results if r.passed), len(results))
