"""What the peers built on the shared fault layer (emulators/faults.py) have in common: the
peer's faults as FaultSpecs, and — for our own emulators — serving one on a loopback socket."""

from __future__ import annotations

from typing import Any

from sync_pipelines_peers.emulators.faults import FaultSpec
from sync_pipelines_peers.emulators.server import EmulatorServer
from sync_pipelines_peers.launchers.contract import (
    AUTH_FAILURE,
    DROP_CONNECTION,
    MALFORMED,
    POISON_RECORD,
    RATE_LIMIT,
    SERVER_ERROR,
    TIMEOUT,
    ProviderPeer,
)


def fault_spec(peer: ProviderPeer, fault: str, *, times: int, path: str | None = None) -> FaultSpec:
    """The FaultSpec that produces one of the peer contract's faults on the provider's paths."""
    if fault == AUTH_FAILURE:
        return FaultSpec("auth_failure", path=path, times=times)
    if fault == RATE_LIMIT:
        return FaultSpec(
            "rate_limit", path=path, times=times, retry_after_s=int(peer.rate_limit_retry_after_s)
        )
    if fault == SERVER_ERROR:
        return FaultSpec("server_error", path=path, times=times, status=503)
    if fault == MALFORMED:
        return FaultSpec("malformed_json", path=path, times=times)
    if fault == TIMEOUT:
        return FaultSpec(
            "timeout", path=path, times=times, latency_ms=int(peer.timeout_hang_s * 1000)
        )
    if fault == DROP_CONNECTION:
        return FaultSpec("drop_connection", path=path, times=times)
    if fault == POISON_RECORD:
        return FaultSpec("poison_record", path=path, device_index=peer.poison_index)
    raise ValueError(f"the {peer.provider} peer has no fault {fault!r}")


class EmulatorPeer(ProviderPeer):
    """A peer that is one of our emulators (`self.emulator`, with `.app`, `.add_faults`,
    `.clear_faults`) served by EmulatorServer; faults apply to `fault_path` only, so the
    emulator's control routes stay reachable."""

    #: regex of the provider's API paths the faults apply to
    fault_path: str | None = None
    emulator: Any
    server: EmulatorServer | None = None

    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError(f"the {self.provider} peer is not started")
        return self.server.url

    def start(self) -> None:
        if self.server is None:
            self.server = EmulatorServer(self.emulator.app).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def inject_fault(self, fault: str, *, times: int = 1) -> None:
        self.emulator.add_faults(fault_spec(self, fault, times=times, path=self.fault_path))

    def clear_faults(self) -> None:
        self.emulator.clear_faults()
