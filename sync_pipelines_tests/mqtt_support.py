"""What the MQTT tests share: a broker user, an integration pointed at a broker, a simulator.

Tests isolate themselves on one broker by topic prefix and client id (both unique per test),
so a module can share one running Mosquitto.
"""

from __future__ import annotations

import secrets
import time
import uuid

import pytest
from sync_pipelines_peers.emulators.mqtt_broker import MosquittoBroker
from sync_pipelines_peers.emulators.mqtt_devices import DeviceSimulator

from sync_pipelines.providers.contract import IntegrationConfig
from sync_pipelines.providers.mqtt_client import MqttConnection
from sync_pipelines.providers.mqtt_loss import DROPPED_TOPIC, parse_counters
from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import Integration
from sync_pipelines.sync.integration_config import register_integration

USERNAME = "mqtt-test-user-7f3a"
PASSWORD = secrets.token_urlsafe(16)
USERNAME_ENV = "TEST_MQTT_USERNAME"
PASSWORD_ENV = "TEST_MQTT_PASSWORD"


def new_broker(**options: object) -> MosquittoBroker:
    return MosquittoBroker({USERNAME: PASSWORD}, **options).start()  # type: ignore[arg-type, return-value]


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}/devices"


def settings_for(broker: MosquittoBroker, prefix: str, **settings: object) -> dict[str, object]:
    return {
        "host": broker.host,
        "port": broker.port,
        "topic_prefix": prefix,
        "broker_max_inflight": broker.max_inflight_messages,
        "idle_timeout_s": 0.3,
        **settings,
    }


def provider_config(
    broker: MosquittoBroker, prefix: str, *, password: str = PASSWORD, **settings: object
) -> IntegrationConfig:
    return IntegrationConfig(
        integration_id=f"mqtt-{uuid.uuid4().hex[:8]}",
        organization_id="org-m",
        provider="mqtt",
        settings=settings_for(broker, prefix, **settings),
        secrets={"username": USERNAME, "password": password},
    )


def register_mqtt(
    store: Store,
    broker: MosquittoBroker,
    monkeypatch: pytest.MonkeyPatch,
    prefix: str,
    **settings: object,
) -> Integration:
    monkeypatch.setenv(USERNAME_ENV, USERNAME)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    integration = Integration(
        integration_id=f"mqtt-{uuid.uuid4().hex[:8]}",
        organization_id="org-m",
        provider="mqtt",
        name="MQTT test",
        settings=settings_for(broker, prefix, **settings),
        secret_refs={"username": USERNAME_ENV, "password": PASSWORD_ENV},
    )
    register_integration(store, integration)
    return integration


def simulator(broker: MosquittoBroker, prefix: str) -> DeviceSimulator:
    return DeviceSimulator(
        broker.endpoint(USERNAME), prefix=prefix, client_id=f"sim-{uuid.uuid4().hex[:8]}"
    )


def broker_dropped(broker: MosquittoBroker) -> int | None:
    """The broker's `$SYS` dropped-message counter as last published (every `sys_interval`)."""
    with MqttConnection(broker.endpoint(USERNAME), f"sys-{uuid.uuid4().hex[:8]}") as conn:
        found = conn.read_retained([DROPPED_TOPIC], qos=0)
    counters = parse_counters({m.topic: m.payload for m in found})
    return None if counters is None else counters.dropped


def wait_until_broker_reports_dropped(
    broker: MosquittoBroker, count: int, timeout_s: float = 20.0
) -> None:
    """The consumer stays away until the broker has published its drops (one `sys_interval`):
    a drain sooner would see them only in its next reading."""
    deadline = time.monotonic() + timeout_s
    while (seen := broker_dropped(broker)) != count:
        assert time.monotonic() < deadline, f"broker reports {seen} dropped, expected {count}"
        time.sleep(0.2)
