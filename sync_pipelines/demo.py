"""The demo sync: a seeded Golioth emulator, a demo organization and integration, one real
Dagster run on the embedded default (SQLite store + SQLite instance), and what it did."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import dagster as dg

from sync_pipelines.emulators.golioth import GoliothEmulator, GoliothEmulatorConfig
from sync_pipelines.emulators.server import EmulatorServer
from sync_pipelines.store.database import Store
from sync_pipelines.store.devices import count_device_states, count_devices
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.migrations import migrate
from sync_pipelines.store.reports import RunActivitySummary, run_activity_summary
from sync_pipelines.sync.integration_config import register_integration

DEMO_ORG = "demo-org"
DEMO_INTEGRATION = "golioth-demo"
DEMO_KEY_ENV = "GOLIOTH_DEMO_API_KEY"
DEMO_PORT = 8787
# The emulator's key, not a real credential; override with $GOLIOTH_DEMO_API_KEY.
DEFAULT_DEMO_KEY = "demo-emulator-key-0c5e"


@dataclass(frozen=True, slots=True)
class DemoOutcome:
    run_id: str
    success: bool
    emulator_devices: int
    stored_devices: int
    stored_states: int
    activity: RunActivitySummary
    emulator_url: str
    store_url: str


def _free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return 0


def register_demo_integration(store: Store, base_url: str, project_id: str) -> Integration:
    integration = Integration(
        integration_id=DEMO_INTEGRATION,
        organization_id=DEMO_ORG,
        provider="golioth",
        name="Golioth (local emulator)",
        settings={"base_url": base_url, "project_id": project_id},
        secret_refs={"api_key": DEMO_KEY_ENV},
        poll_interval_s=300,
    )
    register_integration(store, integration)
    return integration


def run_demo(device_count: int = 500, seed: int = 7) -> DemoOutcome:
    from sync_pipelines.defs.golioth import golioth_device_states, golioth_devices
    from sync_pipelines.defs.partitions import golioth_integrations
    from sync_pipelines.defs.resources import SyncStoreResource

    api_key = os.environ.setdefault(DEMO_KEY_ENV, DEFAULT_DEMO_KEY)
    emulator = GoliothEmulator(GoliothEmulatorConfig(api_key=api_key, device_count=device_count, seed=seed))
    store = Store()
    migrate(store)
    with EmulatorServer(emulator.app, port=_free_port(DEMO_PORT)) as server:
        register_demo_integration(store, server.url, emulator.config.project_id)
        instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(golioth_integrations.name, [DEMO_INTEGRATION])
        result = dg.materialize(
            [golioth_devices, golioth_device_states],
            partition_key=DEMO_INTEGRATION,
            instance=instance,
            resources={"store": SyncStoreResource(database_url=store.url)},
            raise_on_error=False,
        )
        with store.connect() as conn:
            stored = count_devices(conn, DEMO_ORG, DEMO_INTEGRATION)
            states = count_device_states(conn, DEMO_ORG, DEMO_INTEGRATION)
            summary = run_activity_summary(conn, DEMO_ORG, result.run_id)
        return DemoOutcome(
            run_id=result.run_id, success=result.success, emulator_devices=emulator.device_count,
            stored_devices=stored, stored_states=states, activity=summary,
            emulator_url=server.url, store_url=repr(store),
        )
