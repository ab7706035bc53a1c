"""A provider's local peer: the thing that stands in for the cloud on this machine.

Every provider ships one (Golioth and Azure: our emulators; AWS IoT: moto server behind a
fault-injecting proxy; MQTT: a Mosquitto broker plus a device simulator). The demo starts
them, and the conformance suite (sync_pipelines_tests/conformance) drives every registered
provider through its peer with the same assertions, so a peer must expose the peer-side
truth (what the inventory really is) and the peer-side actions (a device changes, someone
else writes desired state, a fault happens).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from typing import Any

JsonDict = dict[str, Any]

#: the faults every peer is asked about; a peer lists those it can produce in `supported_faults`
AUTH_FAILURE = "auth_failure"  # the provider rejects the credentials → AuthError
RATE_LIMIT = "rate_limit"  # the provider throttles, saying how long to wait → RateLimitedError(retry_after_s)
SERVER_ERROR = "server_error"  # a 5xx / unreachable broker → TransientError
MALFORMED = "malformed"  # a response (or message) that is not valid JSON → MalformedResponseError / rejected
ALL_FAULTS = (AUTH_FAILURE, RATE_LIMIT, SERVER_ERROR, MALFORMED)
#: transport faults for the fault matrix: a call that hangs past the client's timeout, and a
#: connection dropped before the response is complete
TIMEOUT = "timeout"
DROP_CONNECTION = "drop_connection"
#: one record of the inventory the provider's parser must reject (the rest of the page is fine)
POISON_RECORD = "poison_record"
MATRIX_FAULTS = (*ALL_FAULTS, TIMEOUT, DROP_CONNECTION, POISON_RECORD)


class ProviderPeer(abc.ABC):
    """Start/stop a provider's local peer and act on it from the outside."""

    #: the provider name this peer stands in for (the key in providers.registry.PROVIDERS)
    provider: str = ""
    #: which of ALL_FAULTS this peer can inject; the conformance suite states the others
    supported_faults: frozenset[str] = frozenset(MATRIX_FAULTS)
    #: why a fault is not supported (shown in the conformance report), fault -> reason
    unsupported_reasons: Mapping[str, str] = {}
    #: the peer retry-after the rate_limit fault announces, in seconds
    rate_limit_retry_after_s: float = 2.0
    #: how long the timeout fault hangs: set the integration's `request_timeout_s` below it
    timeout_hang_s: float = 5.0
    #: the inventory index POISON_RECORD breaks
    poison_index: int = 3
    #: `inject_fault(times=N)` fails exactly N calls; False when a fault lasts until
    #: `clear_faults` (a stopped broker has no per-call hook)
    faults_count_calls: bool = True

    # -- lifecycle ------------------------------------------------------------------------

    @abc.abstractmethod
    def start(self) -> None:
        """Start serving (real sockets on loopback, free ports). Idempotent."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop serving and release everything started."""

    def __enter__(self) -> ProviderPeer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- integration wiring ---------------------------------------------------------------

    @abc.abstractmethod
    def integration_settings(self) -> JsonDict:
        """Non-secret settings of an integration pointed at this peer."""

    @abc.abstractmethod
    def secret_env(self, prefix: str) -> tuple[dict[str, str], dict[str, str]]:
        """(secret_refs, environment) for an integration: secret_refs maps each of the
        provider's `required_secrets` to an environment variable named `{prefix}_...`, and the
        environment gives those variables their (valid) values."""

    @abc.abstractmethod
    def wrong_secret_env(self, prefix: str) -> dict[str, str]:
        """The same environment variables as `secret_env`, with credentials the peer rejects."""

    # -- peer-side truth and actions ------------------------------------------------------

    @abc.abstractmethod
    def seed(self, count: int) -> list[str]:
        """Replace the inventory with exactly `count` devices (each with reported and desired
        state); return their external ids."""

    @abc.abstractmethod
    def inventory(self) -> set[str]:
        """The external ids the peer holds right now."""

    @abc.abstractmethod
    def change_devices(self, external_ids: Iterable[str]) -> None:
        """Change something a sync imports about each device (its attributes/name/tags)."""

    @abc.abstractmethod
    def delete_devices(self, external_ids: Iterable[str]) -> None:
        """The provider deletes these devices, as its console or API would (Golioth and Azure:
        `DELETE /_emulator/devices/{id}`; AWS: DeleteThing; MQTT: an empty retained `meta`)."""

    @abc.abstractmethod
    def restore_devices(self, external_ids: Iterable[str]) -> None:
        """Devices deleted by `delete_devices` exist again, with the same ids."""

    @abc.abstractmethod
    def reported_state(self, external_id: str) -> JsonDict | None:
        """The device's reported state as the peer holds it."""

    @abc.abstractmethod
    def desired_state(self, external_id: str) -> JsonDict | None:
        """The device's desired state as the peer holds it."""

    @abc.abstractmethod
    def write_desired_remotely(self, external_id: str, patch: JsonDict) -> None:
        """Someone else (a console, another system) changes desired state on the provider."""

    @abc.abstractmethod
    def inject_fault(self, fault: str, *, times: int = 1) -> None:
        """Make the next `times` provider calls fail with `fault` (one of supported_faults)."""

    @abc.abstractmethod
    def clear_faults(self) -> None:
        """Remove every pending injected fault."""

    def emit_telemetry(
        self, messages_per_device: int, external_ids: Iterable[str] | None = None
    ) -> int:
        """Devices send telemetry (providers with a telemetry stream); returns messages sent."""
        raise NotImplementedError(f"the {self.provider} peer has no telemetry stream")
