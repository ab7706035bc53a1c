"""Golioth's local peer: our Golioth emulator (emulators/golioth.py) on a real socket."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from sync_pipelines_peers.emulators.golioth import GoliothEmulator, GoliothEmulatorConfig
from sync_pipelines_peers.emulators.golioth_inventory import Inventory
from sync_pipelines_peers.launchers.contract import (
    JsonDict,
)
from sync_pipelines_peers.launchers.emulator_peer import EmulatorPeer

_V1 = r"^/v1/"


class GoliothPeer(EmulatorPeer):
    fault_path = _V1
    provider = "golioth"

    def __init__(self, device_count: int = 0, **config: object) -> None:
        config.setdefault("api_key", f"gk-{secrets.token_hex(16)}")
        self.emulator = GoliothEmulator(GoliothEmulatorConfig(device_count=device_count, **config))

    def integration_settings(self) -> JsonDict:
        return {"base_url": self.url, "project_id": self.emulator.config.project_id}

    def secret_env(self, prefix: str) -> tuple[dict[str, str], dict[str, str]]:
        name = f"{prefix}_GOLIOTH_API_KEY"
        return {"api_key": name}, {name: self.emulator.config.api_key}

    def wrong_secret_env(self, prefix: str) -> dict[str, str]:
        return {f"{prefix}_GOLIOTH_API_KEY": "gk-" + "0" * 32}

    def seed(self, count: int) -> list[str]:
        self.emulator.reset()
        # A fresh generated inventory of exactly `count` devices (the same seed, so repeatable).
        self.emulator.inventory = Inventory(self.emulator.generator, count)
        return list(self.emulator.device_ids())

    def inventory(self) -> set[str]:
        return set(self.emulator.device_ids())

    def change_devices(self, external_ids: Iterable[str]) -> None:
        for external_id in external_ids:
            device = self.emulator.get_device(external_id)
            self.emulator.patch_device(external_id, {"name": f"{device['name']}-renamed"})

    def delete_devices(self, external_ids: Iterable[str]) -> None:
        for external_id in external_ids:
            self.emulator.delete_device(external_id)

    def restore_devices(self, external_ids: Iterable[str]) -> None:
        for external_id in external_ids:
            self.emulator.restore_device(external_id)

    def reported_state(self, external_id: str) -> JsonDict | None:
        return self.emulator.read_state(external_id, "reported")

    def desired_state(self, external_id: str) -> JsonDict | None:
        return self.emulator.read_state(external_id, "desired")

    def write_desired_remotely(self, external_id: str, patch: JsonDict) -> None:
        self.emulator.write_state(external_id, "desired", patch)
