"""The broker launchers: Mosquitto with a generated password file and live credential reloads,
and the amqtt fallback, which must carry a whole MQTT peer (listing, states, telemetry)."""

from __future__ import annotations

import pytest
from sync_pipelines_peers.emulators.mqtt_broker import AmqttBroker, MosquittoBroker, start_broker
from sync_pipelines_peers.launchers.mqtt import MqttPeer

from sync_pipelines.errors import AuthError
from sync_pipelines.observability.activity import ActivityRecorder, ActivityScope, MemorySink
from sync_pipelines.providers.contract import IntegrationConfig
from sync_pipelines.providers.mqtt_client import BrokerEndpoint, MqttConnection
from sync_pipelines.sync.integration_config import open_provider

from ..mqtt_support import PASSWORD, USERNAME, new_broker


def _connects(broker, password: str) -> bool:
    try:
        with MqttConnection(
            BrokerEndpoint(broker.host, broker.port, USERNAME, password, timeout_s=3), "probe"
        ):
            return True
    except AuthError:
        return False


def test_start_broker_prefers_mosquitto_when_it_is_installed():
    broker = start_broker({USERNAME: PASSWORD})
    try:
        assert isinstance(broker, MosquittoBroker) and broker.running
    finally:
        broker.cleanup()


def test_the_password_file_admits_the_right_password_and_reloads_without_a_restart():
    broker = new_broker()
    try:
        assert _connects(broker, PASSWORD) and not _connects(broker, "guess")
        pid = broker.proc.pid
        broker.set_users({USERNAME: "rotated-password"})
        assert not _connects(broker, PASSWORD) and _connects(broker, "rotated-password")
        assert broker.proc.pid == pid  # SIGHUP, not a restart
    finally:
        broker.cleanup()


def test_the_amqtt_fallback_carries_a_whole_peer():
    recorder = ActivityRecorder(
        MemorySink(), ActivityScope(organization_id="org-a", integration_id="amqtt-i")
    )
    peer = MqttPeer(prefer="amqtt")
    peer.start()
    try:
        assert isinstance(peer.broker, AmqttBroker)
        ids = peer.seed(20)
        config = IntegrationConfig(
            "amqtt-i",
            "org-a",
            "mqtt",
            {**peer.integration_settings(), "idle_timeout_s": 0.3},
            {"username": peer.username, "password": peer.password},
        )
        with open_provider(config, recorder, timeout_s=5) as provider:
            # telemetry before the reads: amqtt can lose a resumed session's queued messages after
            # its stray retained replays (see emulators/mqtt_broker.py); Mosquitto tests prove the rest
            assert (
                list(provider.drain_telemetry(max_messages=50, window_s=2)) == []
            )  # creates the session
            with peer.simulator() as sim:
                sim.publish_telemetry(ids[:2], 5)
            received = []
            for batch in provider.drain_telemetry(max_messages=50, window_s=5):
                received += [(m.external_id, m.sequence) for m in batch.messages]
                batch.acknowledge()
            listed = [d.external_id for p in provider.list_devices() for d in p.devices]
            states, failures = provider.get_states(ids[:5])
        peer.running_broker.restart()  # amqtt: retained messages are carried over by hand
        assert peer.inventory() == set(ids)
    finally:
        peer.stop()
    assert listed == ids
    assert failures == [] and all(s.reported and s.desired for s in states)
    assert sorted(received) == [(i, s) for i in ids[:2] for s in range(5)]


def test_amqtt_rejects_wrong_credentials():
    broker = AmqttBroker({USERNAME: PASSWORD}).start()
    try:
        assert _connects(broker, PASSWORD) and not _connects(broker, "guess")
    finally:
        broker.cleanup()


@pytest.mark.parametrize("kind", [MosquittoBroker, AmqttBroker])
def test_a_broker_needs_a_user(kind):
    with pytest.raises(ValueError, match="at least one user"):
        kind({})
