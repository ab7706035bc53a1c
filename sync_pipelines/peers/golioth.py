"""Golioth's local peer: our Golioth emulator (emulators/golioth.py) on a real socket."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from sync_pipelines.emulators.faults import FaultSpec
from sync_pipelines.emulators.golioth import GoliothEmulator, GoliothEmulatorConfig
from sync_pipelines.emulators.golioth_inventory import Inventory
from sync_pipelines.emulators.server import EmulatorServer
from sync_pipelines.peers.contract import (
    AUTH_FAILURE,
    DROP_CONNECTION,
    MALFORMED,
    POISON_RECORD,
    RATE_LIMIT,
    SERVER_ERROR,
    TIMEOUT,
    JsonDict,
    ProviderPeer,
)

_V1 = r"^/v1/"


class GoliothPeer(ProviderPeer):
    provider = "golioth"

    def __init__(self, device_count: int = 0, **config: object) -> None:
        config.setdefault("api_key", f"gk-{secrets.token_hex(16)}")
        self.emulator = GoliothEmulator(GoliothEmulatorConfig(device_count=device_count, **config))
        self.server: EmulatorServer | None = None

    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError("the Golioth peer is not started")
        return self.server.url

    def start(self) -> None:
        if self.server is None:
            self.server = EmulatorServer(self.emulator.app).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

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

    def reported_state(self, external_id: str) -> JsonDict | None:
        return self.emulator.read_state(external_id, "reported")

    def desired_state(self, external_id: str) -> JsonDict | None:
        return self.emulator.read_state(external_id, "desired")

    def write_desired_remotely(self, external_id: str, patch: JsonDict) -> None:
        self.emulator.write_state(external_id, "desired", patch)

    def inject_fault(self, fault: str, *, times: int = 1) -> None:
        spec = {
            AUTH_FAILURE: FaultSpec("auth_failure", path=_V1, times=times),
            RATE_LIMIT: FaultSpec("rate_limit", path=_V1, times=times,
                                  retry_after_s=int(self.rate_limit_retry_after_s)),
            SERVER_ERROR: FaultSpec("server_error", path=_V1, times=times, status=503),
            MALFORMED: FaultSpec("malformed_json", path=_V1, times=times),
            TIMEOUT: FaultSpec("timeout", path=_V1, times=times,
                               latency_ms=int(self.timeout_hang_s * 1000)),
            DROP_CONNECTION: FaultSpec("drop_connection", path=_V1, times=times),
            POISON_RECORD: FaultSpec("poison_record", path=_V1, device_index=self.poison_index),
        }[fault]
        self.emulator.add_faults(spec)

    def clear_faults(self) -> None:
        self.emulator.clear_faults()
