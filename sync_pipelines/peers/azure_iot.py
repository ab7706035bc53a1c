"""Azure IoT Hub's local peer: our IoT Hub emulator (emulators/azure_iot.py) on a real socket.

The integration's connection string names a made-up hub (`<name>.azure-devices.net`): that
HostName is what the provider signs, while the `base_url` setting sends the requests to the
emulator on loopback.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable

from sync_pipelines.emulators.azure_iot import AzureIotEmulator, AzureIotEmulatorConfig
from sync_pipelines.emulators.faults import FaultSpec
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

POLICY = "iothubowner"
# The service routes (not /_emulator): faults hit the provider's calls only.
_SERVICE_PATHS = r"^/(devices|twins)/"


def _new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


class AzureIotPeer(ProviderPeer):
    provider = "azure_iot"

    def __init__(self, device_count: int = 0, **config: object) -> None:
        config.setdefault("host_name", f"peer-{secrets.token_hex(4)}.azure-devices.net")
        config.setdefault("policies", {POLICY: _new_key(), "registryRead": _new_key()})
        self.emulator = AzureIotEmulator(
            AzureIotEmulatorConfig(device_count=device_count, **config)
        )
        self.server: EmulatorServer | None = None

    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError("the Azure IoT Hub peer is not started")
        return self.server.url

    def start(self) -> None:
        if self.server is None:
            self.server = EmulatorServer(self.emulator.app).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

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

    def reported_state(self, external_id: str) -> JsonDict | None:
        return _without_bookkeeping(self.emulator.get_twin(external_id)["properties"]["reported"])

    def desired_state(self, external_id: str) -> JsonDict | None:
        return _without_bookkeeping(self.emulator.get_twin(external_id)["properties"]["desired"])

    def write_desired_remotely(self, external_id: str, patch: JsonDict) -> None:
        self.emulator.patch_desired(external_id, patch)

    def inject_fault(self, fault: str, *, times: int = 1) -> None:
        spec = {
            AUTH_FAILURE: FaultSpec("auth_failure", path=_SERVICE_PATHS, times=times),
            RATE_LIMIT: FaultSpec(
                "rate_limit",
                path=_SERVICE_PATHS,
                times=times,
                retry_after_s=int(self.rate_limit_retry_after_s),
            ),
            SERVER_ERROR: FaultSpec("server_error", path=_SERVICE_PATHS, times=times, status=503),
            MALFORMED: FaultSpec("malformed_json", path=_SERVICE_PATHS, times=times),
            TIMEOUT: FaultSpec("timeout", path=_SERVICE_PATHS, times=times,
                               latency_ms=int(self.timeout_hang_s * 1000)),
            DROP_CONNECTION: FaultSpec("drop_connection", path=_SERVICE_PATHS, times=times),
            POISON_RECORD: FaultSpec("poison_record", path=_SERVICE_PATHS, device_index=self.poison_index),
        }[fault]
        self.emulator.add_faults(spec)

    def clear_faults(self) -> None:
        self.emulator.clear_faults()


def _without_bookkeeping(document: JsonDict) -> JsonDict:
    return {k: v for k, v in document.items() if not k.startswith("$")}
