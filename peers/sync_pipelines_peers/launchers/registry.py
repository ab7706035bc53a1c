"""Which peer stands in for which provider (the conformance suite and the demo read this).

Peers are imported on first use: importing the registry never pulls in moto or paho.
"""

from __future__ import annotations

from importlib import import_module

from sync_pipelines_peers.launchers.contract import ProviderPeer

#: provider name -> "module:Class" of its local peer
PEERS: dict[str, str] = {
    "golioth": "sync_pipelines_peers.launchers.golioth:GoliothPeer",
    "aws_iot": "sync_pipelines_peers.launchers.aws_iot:AwsIotPeer",
    "azure_iot": "sync_pipelines_peers.launchers.azure_iot:AzureIotPeer",
    "mqtt": "sync_pipelines_peers.launchers.mqtt:MqttPeer",
}


def new_peer(provider: str) -> ProviderPeer:
    """A fresh, not yet started peer for `provider`."""
    module_name, _, class_name = PEERS[provider].partition(":")
    return getattr(import_module(module_name), class_name)()
