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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import dagster as dg

from sync_pipelines.observability.logging import get_logger
from sync_pipelines.outbound import ALLOW_ENV, LOOPBACK_ALLOWANCE
from sync_pipelines.store.check_results import check_results
from sync_pipelines.store.database import Store
from sync_pipelines.store.desired import request_desired_change
from sync_pipelines.store.devices import count_device_states, count_devices
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.migrations import migrate
from sync_pipelines.store.reports import RunActivitySummary, run_activity_summary
from sync_pipelines.store.telemetry import count_telemetry
from sync_pipelines.sync.integration_config import (
    ConfigError,
    register_integration,
    update_integration,
)
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
    on_done: Callable[[ProviderOutcome], None] | None = None,
) -> list[ProviderOutcome]:
    """`on_done` is told of each provider's outcome as soon as it has one (the progress line)."""
    # the demo's peers listen on loopback, which the service calls only where allowed
    os.environ.setdefault(ALLOW_ENV, LOOPBACK_ALLOWANCE)
    store = store or Store()
    migrate(store)
    instance = instance or demo_instance()
    outcomes = []
    for provider in providers or PEERS:
        outcomes.append(_demo_provider(store, instance, provider, device_count))
        if on_done is not None:
            on_done(outcomes[-1])
    return outcomes


def disable_integrations(
    store: Store, organization_id: str, integration_ids: Iterable[str]
) -> list[str]:
    """Disable the demo's integrations the way an operator would (`integrations disable`: a
    `config_change` activity row each), and return those disabled. Their secrets lived only in
    the demo's environment and their peers stopped with it: enabled, the schedules and sensors
    of `make ui` would sync, check and replay them and could only fail. Running the demo again
    registers them enabled."""
    disabled = []
    for integration_id in integration_ids:
        try:
            update_integration(
                store,
                organization_id,
                integration_id,
                enabled=False,
                actor="demo",
                reason="the demo ended: its peers stopped and its secrets are gone",
            )
        except ConfigError:  # never registered: its provider failed before that
            continue
        disabled.append(integration_id)
    return disabled


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
    from sync_pipelines.defs.provider_assets import PROVIDER_DEFS

    defs = PROVIDER_DEFS[peer.provider]
    iid = integration.integration_id
    instance.add_dynamic_partitions(f"{peer.provider}_integrations", [iid])

    def launch(job_name: str, selection: list[dg.AssetsDefinition] | None = None):
        result = run_named_job(store, instance, job_name, iid, selection)
        outcome.run_ids.append(result.run_id)
        return result

    runs = [launch(defs.sync_job.name)]
    if defs.telemetry is not None:
        # The first run opened the persistent session; what devices send now waits in the broker.
        peer.emit_telemetry(3, ids[:20])
        runs.append(launch(defs.sync_job.name, [defs.telemetry]))

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
        export = launch(defs.export_job.name)
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


#: the run's own console logger (Dagster's default, on stderr) prints nothing: the demo's lines
#: go to its log file, and every run's lines are in its event log (the UI)
_QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def run_named_job(
    store: Store,
    instance: dg.DagsterInstance,
    job_name: str,
    partition_key: str,
    selection: list[dg.AssetsDefinition] | None = None,
) -> dg.ExecuteInProcessResult:
    """One run of the code location's job `job_name` for the partition (an integration), as
    `make ui` would launch it: named and tagged as that job, with the asset checks the job
    carries; `selection` runs a subset of its assets. The job's store is the one the code
    location resolves ($SYNC_DATABASE_URL, else SQLite under $SYNC_HOME): `store` must be it."""
    from sync_pipelines.definitions import defs
    from sync_pipelines.store.database import resolve_database_url

    if resolve_database_url(None) != store.url:
        raise ValueError(
            f"the demo's store {store!r} is not the code location's "
            f"({resolve_database_url(None)}): set SYNC_DATABASE_URL or SYNC_HOME to it"
        )
    return defs.resolve_job_def(job_name).execute_in_process(
        run_config=_QUIET_CONSOLE,
        instance=instance,
        partition_key=partition_key,
        raise_on_error=False,
        asset_selection=[a.key for a in selection] if selection else None,
    )
