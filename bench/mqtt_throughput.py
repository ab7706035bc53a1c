"""MQTT provider throughput against a real Mosquitto (the MQTT peer): inventory + state syncs of
N retained devices, and telemetry drained and committed from a persistent session.

    .venv/bin/python bench/mqtt_throughput.py --devices 10000 --messages 10000 --backend sqlite

Figures are medians of `--repeat` runs, each on a fresh store. `--inflight` is the broker's
max_inflight_messages (Mosquitto's default is 20): the telemetry batch can never be larger,
because messages are acknowledged only after their batch is committed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable

from bench_support import fresh_store_url
from sync_pipelines_peers.launchers.mqtt import MqttPeer

from sync_pipelines.observability.logging import configure_logging
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import Integration
from sync_pipelines.store.migrations import migrate
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.sync.session import RunContext, integration_session
from sync_pipelines.sync.telemetry import sync_telemetry


def fresh_store(backend: str) -> tuple[Store, Callable[[], None]]:
    """A migrated, empty store and how to get rid of it."""
    url, drop_database = fresh_store_url(backend)
    store = Store(url)
    migrate(store)

    def drop() -> None:
        store.dispose()
        drop_database()

    return store, drop


def register(store: Store, peer: MqttPeer, **settings: object) -> str:
    refs, env = peer.secret_env("BENCH")
    os.environ.update(env)
    integration_id = f"mqtt-bench-{uuid.uuid4().hex[:6]}"
    register_integration(
        store,
        Integration(
            integration_id=integration_id,
            organization_id="bench",
            provider="mqtt",
            name="bench",
            settings={**peer.integration_settings(), **settings},
            secret_refs=refs,
        ),
    )
    return integration_id


def session(store: Store, integration_id: str):
    return integration_session(store, integration_id, RunContext(run_id=f"bench-{uuid.uuid4()}"))


def bench_inventory(peer: MqttPeer, backend: str) -> dict[str, float]:
    store, drop = fresh_store(backend)
    try:
        integration_id = register(store, peer)
        with session(store, integration_id) as s:
            started = time.perf_counter()
            devices = sync_devices(s)
            listed = time.perf_counter()
            states = sync_device_states(s)
            done = time.perf_counter()
        assert devices.counts.created == states.counts.created, (devices.counts, states.counts)
        n = devices.counts.created
        return {
            "devices": n,
            "sync_devices_s": listed - started,
            "sync_device_states_s": done - listed,
            "devices_per_s": n / (listed - started),
            "states_per_s": n / (done - listed),
            "both_per_s": n / (done - started),
        }
    finally:
        drop()


def bench_telemetry(
    peer: MqttPeer, backend: str, messages: int, max_messages: int
) -> dict[str, float]:
    store, drop = fresh_store(backend)
    try:
        integration_id = register(store, peer, broker_max_inflight=peer.max_inflight_messages)
        with session(store, integration_id) as s:
            sync_telemetry(s, window_s=5)  # creates the persistent session
        devices = [f"bench-dev-{i:03d}" for i in range(100)]
        with peer.simulator() as sim:
            started = time.perf_counter()
            sim.publish_telemetry(devices, messages // len(devices))
            published = time.perf_counter() - started
        with session(store, integration_id) as s:
            result = sync_telemetry(s, max_messages=max_messages, window_s=120)
        assert result.counts.created == messages and result.counts.gaps == 0, result.counts
        # the drain ends after idle_timeout_s of silence: that wait is not throughput
        busy = result.duration_s - float(peer.integration_settings()["idle_timeout_s"])
        return {
            "messages": messages,
            "publish_per_s": messages / published,
            "batches": result.counts.pages,
            "sync_s": result.duration_s,
            "drained_committed_per_s": messages / busy,
        }
    finally:
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument(
        "--max-messages", type=int, default=1000, help="telemetry batch size asked for"
    )
    parser.add_argument("--inflight", type=int, default=1000, help="broker max_inflight_messages")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("SYNC_LOG_LEVEL", "WARNING")
    configure_logging("json", "WARNING", force=True)

    peer = MqttPeer(
        max_queued_messages=max(100_000, args.messages * 2), max_inflight_messages=args.inflight
    )
    peer.start()
    try:
        started = time.perf_counter()
        peer.seed(args.devices)
        print(
            f"seeded {args.devices} devices (3 retained documents each) in {time.perf_counter() - started:.2f} s"
        )
        inventory = [bench_inventory(peer, args.backend) for _ in range(args.repeat)]
        telemetry = [
            bench_telemetry(peer, args.backend, args.messages, args.max_messages)
            for _ in range(args.repeat)
        ]
    finally:
        peer.stop()

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print(f"backend={args.backend} repeat={args.repeat} (medians)")
    print(
        f"inventory  {args.devices} devices: sync_devices {med(inventory, 'sync_devices_s'):.2f} s "
        f"({med(inventory, 'devices_per_s'):,.0f} devices/s), sync_device_states "
        f"{med(inventory, 'sync_device_states_s'):.2f} s ({med(inventory, 'states_per_s'):,.0f} devices/s), "
        f"both {med(inventory, 'both_per_s'):,.0f} devices/s"
    )
    print(
        f"telemetry  {args.messages} messages (100 devices, broker inflight {args.inflight}, batches of "
        f"≤{args.max_messages}): published {med(telemetry, 'publish_per_s'):,.0f} msg/s; sync "
        f"{med(telemetry, 'sync_s'):.2f} s in {med(telemetry, 'batches'):.0f} batches = "
        f"{med(telemetry, 'drained_committed_per_s'):,.0f} msg/s drained+committed (idle wait excluded)"
    )


if __name__ == "__main__":
    main()
