"""The one contract every provider implements, and the typed records it speaks in.

Providers turn a provider's wire format into these records. They never touch the store and
never record activity themselves: the clients they are handed do that (see `ProviderClients`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import msgspec

from sync_pipelines.providers.settings import IntegrationSettings

if TYPE_CHECKING:
    import httpx

    from sync_pipelines.observability.lean_http import LeanHttpClient
    from sync_pipelines.providers.mqtt_client import BrokerEndpoint, MqttConnection

JsonDict = dict[str, Any]


class PlainJson(dict):  # type: ignore[type-arg]
    """A JSON object as a JSON decoder made it, with nothing msgspec's encoder writes otherwise
    than `json.dumps`: str keys; str, int, bool, None, list and dict values, and floats only
    where both write the same digits — 0 or a magnitude in [1e-4, 1e16), never an exponent,
    NaN or infinity (`sync_pipelines.plain_floats`). A provider that knows this says so
    with this type, and the content hash encodes it the fast way (`sync.records`); a plain dict
    is always correct too, only slower to hash."""

    __slots__ = ()


class DeviceRecord(msgspec.Struct, frozen=True, gc=False):
    """One device as the provider describes it, normalised. (A frozen msgspec Struct: built in C,
    a fifth of a frozen dataclass's cost, once per device of every page; never in a cycle, so
    not tracked by the garbage collector.)"""

    external_id: str
    name: str
    hardware_ids: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    status: str | None = None
    enabled: bool | None = None
    last_seen_at: datetime | None = None
    provider_created_at: datetime | None = None
    provider_updated_at: datetime | None = None
    attributes: JsonDict = msgspec.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A record of a page that could not be normalised: kept whole, with the reason."""

    external_id: str | None
    payload: Any
    error_type: str
    error_message: str


class DeviceState(msgspec.Struct, frozen=True, gc=False):
    """Reported and desired state of one device, with the provider's version/etag (a frozen
    msgspec Struct, as `DeviceRecord`)."""

    external_id: str
    reported: JsonDict | None
    desired: JsonDict | None
    version: str | None
    observed_at: datetime
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class DevicePage:
    """One page of an inventory scan.

    `cursor_after` is the cursor to resume from once this page is committed; None means the
    scan is complete and the next sync starts a fresh one.
    """

    devices: Sequence[DeviceRecord]
    rejected: Sequence[RejectedRecord]
    cursor_after: JsonDict | None
    page_number: int = 0
    total: int | None = None
    #: the X-Request-ID of the call that fetched this page (row provenance)
    request_id: str | None = None
    #: the states the listing carried with its devices (`Provider.list_devices_with_states`);
    #: a device of `devices` without one here was listed without its state
    states: Sequence[DeviceState] = ()


@dataclass(frozen=True, slots=True)
class StatePage:
    """One page of a state listing (`Provider.list_states`): the states it carried. A device
    the page named without its state is left out; the engine reads those one by one."""

    states: Sequence[DeviceState]
    #: every device id the page named, with or without its state
    device_count: int
    page_number: int = 0
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class StateFailure:
    """A device whose state could not be read; the rest of the batch carries on."""

    external_id: str
    error_type: str
    error_message: str
    #: our X-Request-ID of the call that failed, when there was one
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectionResult:
    ok: bool
    latency_ms: float
    reason: str | None = None
    details: JsonDict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IntegrationConfig:
    """What a provider needs to know about one integration.

    `settings` are non-secret; `secrets` holds resolved secret values (from environment
    variables named by the integration's secret references) and must never be logged.
    """

    integration_id: str
    organization_id: str
    provider: str
    settings: Mapping[str, Any]
    secrets: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class PushResult:
    """The provider's answer to a desired-state write (export)."""

    external_id: str
    #: the provider's version/etag after the write (what the next write must expect)
    version: str | None
    #: the provider's whole desired document after the write, when it says
    desired: JsonDict | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class TelemetryMessage:
    """One message received from a telemetry stream (MQTT), not yet acknowledged."""

    external_id: str
    topic: str
    payload: JsonDict
    received_at: datetime
    #: the per-device sequence number the device put in the payload (gap detection)
    sequence: int | None = None
    #: the broker redelivered it (MQTT DUP flag): the store's dedupe absorbs it
    duplicate: bool = False
    #: the device's own timestamp for the reading, when it sends one
    device_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class TelemetryBatch:
    """Messages received in one bounded drain window.

    The engine commits them, then calls `acknowledge()`: until then the broker still holds
    them, so a sync killed between receive and commit loses nothing (they are redelivered).
    """

    messages: Sequence[TelemetryMessage]
    rejected: Sequence[RejectedRecord]
    acknowledge: Callable[[], None]


@dataclass(slots=True)
class TelemetryLoss:
    """Loss a provider can see around one drain that no sequence gap shows (yet): messages its
    broker reports dropped, a session it no longer had. The engine hands it to `drain_telemetry`
    with `since`, the watermark the previous drain left; the provider fills in the rest, and the
    engine stores `watermark` for the next drain once the drain has ended."""

    since: JsonDict | None = None
    watermark: JsonDict | None = None
    #: messages the broker reports dropped since the previous drain (0: none reported)
    dropped: int = 0
    #: the session the previous drain left was gone: what was published meanwhile is lost
    session_lost: bool = False
    #: (error type, one sentence) per loss, for the sync log, the activity log and the alert
    reasons: list[tuple[str, str]] = field(default_factory=list)

    @property
    def lost(self) -> bool:
        return self.dropped > 0 or self.session_lost


class ProviderClients(Protocol):
    """What a provider builds its clients with. Every client it returns records each call in
    the activity log (observability.http_recording, observability.boto_recording,
    observability.mqtt_recording): wrapping is structural, so providers never record activity
    themselves."""

    def http(self, base_url: str, headers: Mapping[str, str]) -> httpx.Client:
        """An httpx client for `base_url` sending `headers` on every request."""

    def lean_http(self, base_url: str, headers: Mapping[str, str]) -> LeanHttpClient | None:
        """The lean client (observability/lean_http.py) for the per-device GETs of a state
        sync, recorded and retried as `http`'s calls are; None where it cannot serve
        `base_url` (a proxy configured for it), and the provider uses `http`."""

    def boto(self, service_name: str, **client_kwargs: Any) -> Any:
        """A boto3 client whose every attempt is an activity row."""

    def mqtt(self, endpoint: BrokerEndpoint, client_id: str, **options: Any) -> MqttConnection:
        """An unopened MQTT connection (`options` as `MqttConnection`'s) whose every broker
        operation — CONNECT, SUBSCRIBE, UNSUBSCRIBE, PUBLISH at QoS >= 1, each until the
        broker's answer — is an activity row. Received messages are not."""

    @property
    def request_timeout_s(self) -> float:
        """The per-call timeout providers should use for their own network waits."""


class Provider(abc.ABC):
    """A device provider. One instance serves one integration for one sync."""

    #: the `provider` value in the integrations table
    name: str = ""
    #: the typed settings of an integration of this provider (providers/settings.py): checked
    #: when it is registered and whenever a run resolves it
    settings_model: ClassVar[type[IntegrationSettings]] = IntegrationSettings
    #: settings an integration of this provider must have (the model's required fields)
    required_settings: tuple[str, ...] = ()
    #: secret references an integration of this provider must have
    required_secrets: tuple[str, ...] = ()
    #: secret references it may have (resolved and redacted when set)
    optional_secrets: tuple[str, ...] = ()

    @abc.abstractmethod
    def test_connection(self) -> ConnectionResult:
        """Check credentials and reachability; never raises for a provider-side failure."""

    @abc.abstractmethod
    def list_devices(self, since: JsonDict | None = None) -> Iterator[DevicePage]:
        """Stream the inventory page by page, resuming from `since` when given."""

    @abc.abstractmethod
    def get_states(
        self, external_ids: Sequence[str]
    ) -> tuple[list[DeviceState], list[StateFailure]]:
        """Fetch state for a batch of devices, with bounded concurrency."""

    #: the provider keeps a desired state that `push_desired` can write (export)
    supports_desired: bool = False
    #: the provider streams telemetry that `drain_telemetry` receives
    supports_telemetry: bool = False

    @property
    def lists_states(self) -> bool:
        """Whether `list_states` serves this integration (the provider can return many devices'
        states per call and the integration's settings ask for it)."""
        return False

    def list_states(self) -> Iterator[StatePage]:
        """Stream every device's state, many devices per call. Only when `lists_states`."""
        raise NotImplementedError(f"provider {self.name} reads states one device at a time")

    @property
    def lists_devices_with_states(self) -> bool:
        """Whether one listing carries both the devices and their states, so a full sync reads
        it once (`list_devices_with_states`) and the state sync only reads what it left out."""
        return False

    def list_devices_with_states(self, since: JsonDict | None = None) -> Iterator[DevicePage]:
        """`list_devices`, each page also carrying its devices' states (`DevicePage.states`).
        Only when `lists_devices_with_states`."""
        raise NotImplementedError(f"provider {self.name} lists devices without their states")

    def push_desired(
        self, external_id: str, patch: JsonDict, *, expected_version: str | None
    ) -> PushResult:
        """Merge `patch` into the device's desired state, only if the provider's state version is
        still `expected_version` (None: unconditionally). Raises ConflictError when it is not."""
        raise NotImplementedError(f"provider {self.name} has no desired state to export to")

    def drain_telemetry(
        self, *, max_messages: int, window_s: float, loss: TelemetryLoss | None = None
    ) -> Iterator[TelemetryBatch]:
        """Receive telemetry for at most `window_s` seconds, in batches of at most `max_messages`;
        what the provider can tell of loss around the drain goes into `loss`."""
        raise NotImplementedError(f"provider {self.name} has no telemetry stream")

    def parse_device(self, payload: Any) -> DeviceRecord:
        """Normalise one inventory record as `list_devices` received it (a dead letter's stored
        payload) exactly as the listing does; raises ValueError/TypeError when it still cannot.
        Dead-letter replay calls it, so a record rejected by a parser since fixed (or under a
        setting since changed) is stored without listing the whole inventory again."""
        raise NotImplementedError(
            f"provider {self.name} cannot re-normalise a stored device record"
        )

    def parse_telemetry(self, payload: Any) -> TelemetryMessage:
        """Parse one rejected telemetry message as `drain_telemetry` stored it in its
        RejectedRecord, as the drain does; raises ValueError when it still cannot."""
        raise NotImplementedError(
            f"provider {self.name} cannot re-parse a stored telemetry message"
        )

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
