"""Azure IoT Hub's local peer: our IoT Hub emulator (emulators/azure_iot.py) on a real socket.

The integration's connection string names a made-up hub (`<name>.azure-devices.net`): that
HostName is what the provider signs, while the `base_url` setting sends the requests to the
emulator on loopback.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable

from sync_pipelines_peers.emulators.azure_iot import AzureIotEmulator, AzureIotEmulatorConfig
from sync_pipelines_peers.launchers.contract import (
    JsonDict,
)
from sync_pipelines_peers.launchers.emulator_peer import EmulatorPeer

POLICY = "iothubowner"
# The service routes (not /_emulator): faults hit the provider's calls only.
_SERVICE_PATHS = r"^/(devices|twins)/"


def _new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


class AzureIotPeer(EmulatorPeer):
    fault_path = _SERVICE_PATHS
    provider = "azure_iot"

    def __init__(self, device_count: int = 0, **config: object) -> None:
        config.setdefault("host_name", f"peer-{secrets.token_hex(4)}.azure-devices.net")
        config.setdefault("policies", {POLICY: _new_key(), "registryRead": _new_key()})
        self.emulator = AzureIotEmulator(
            AzureIotEmulatorConfig(device_count=device_count, **config)
        )

    def integration_settings(self) -> JsonDict:
        return {"base_url": self.url}

    def connection_string(self) -> str:
        return self.emulator.config.connection_string(POLICY)

    def secret_env(self, prefix: str) -> tuple[dict[str, str], dict[str, str]]:
        name = f"{prefix}_AZURE_IOT_CONNECTION_STRING"
        return {"connection_string": name}, {name: self.connection_string()}

    def wrong_secret_env(self, prefix: str) -> dict[str, str]:
        # The right hub and policy, a key the hub never issued: the signature will not match.
        wrong = (
            f"HostName={self.emulator.config.host_name};SharedAccessKeyName={POLICY};"
            f"SharedAccessKey={_new_key()}"
        )
        return {f"{prefix}_AZURE_IOT_CONNECTION_STRING": wrong}

    def seed(self, count: int) -> list[str]:
        self.emulator.reseed(count)
        return list(self.emulator.device_ids())

    def inventory(self) -> set[str]:
        return set(self.emulator.device_ids())

    def change_devices(self, external_ids: Iterable[str]) -> None:
        for external_id in external_ids:
            tags = self.emulator.get_twin(external_id).get("tags") or {}
            generation = int(tags.get("peerRevision", 0)) + 1
            self.emulator.update_device(external_id, {"tags": {"peerRevision": generation}})

    def delete_devices(self, external_ids: Iterable[str]) -> None:
        for external_id in external_ids:
            self.emulator.delete_device(external_id)

    def restore_devices(self, external_ids: Iterable[str]) -> None:
        for external_id in external_ids:
            self.emulator.restore_device(external_id)

    def reported_state(self, external_id: str) -> JsonDict | None:
        return _without_bookkeeping(self.emulator.get_twin(external_id)["properties"]["reported"])

    def desired_state(self, external_id: str) -> JsonDict | None:
        return _without_bookkeeping(self.emulator.get_twin(external_id)["properties"]["desired"])

    def write_desired_remotely(self, external_id: str, patch: JsonDict) -> None:
        self.emulator.patch_desired(external_id, patch)


def _without_bookkeeping(document: JsonDict) -> JsonDict:
    return {k: v for k, v in document.items() if not k.startswith("$")}
