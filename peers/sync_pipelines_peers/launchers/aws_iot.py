"""AWS IoT Core's local peer: moto server behind our fault-injecting proxy, on real sockets.

The integration points both `endpoint_url` (control plane) and `data_endpoint_url` (shadows)
at the proxy. moto accepts any credentials, so the proxy is told the one access key id the
peer handed out and rejects every other with 403 UnrecognizedClientException — wrong
credentials fail for real. The peer seeds and reads through moto's in-process backends (moto
creates ~86 things/s over HTTP; in-process it is instant). Those backends are process-global,
so each peer takes a region no other live peer in the process uses.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import string
import threading
from collections.abc import Iterable
from typing import Any

from sync_pipelines_peers.emulators.aws_iot_proxy import AwsIotProxy
from sync_pipelines_peers.emulators.moto_server import MOTO_ACCOUNT_ID, MotoServer
from sync_pipelines_peers.emulators.server import EmulatorServer, serve_forever
from sync_pipelines_peers.launchers.contract import (
    MATRIX_FAULTS,
    POISON_RECORD,
    JsonDict,
    ProviderPeer,
)
from sync_pipelines_peers.launchers.emulator_peer import fault_spec

THING_TYPE = "sensor"
_REGIONS = (
    "eu-west-1",
    "eu-central-1",
    "us-east-2",
    "us-west-2",
    "ap-southeast-2",
    "ap-northeast-1",
    "eu-north-1",
    "ca-central-1",
    "sa-east-1",
    "eu-west-2",
)
_regions_in_use: set[str] = set()
_regions_lock = threading.Lock()


def _claim_region() -> str:
    with _regions_lock:
        for region in _REGIONS:
            if region not in _regions_in_use:
                _regions_in_use.add(region)
                return region
    raise RuntimeError(f"at most {len(_REGIONS)} AWS IoT peers can run in one process")


def _access_key_id() -> str:
    return "AKIA" + "".join(
        secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16)
    )


class AwsIotPeer(ProviderPeer):
    supported_faults = frozenset(MATRIX_FAULTS) - {POISON_RECORD}
    unsupported_reasons = {
        POISON_RECORD: "moto validates things as it creates them and serves them as it stored "
        "them, and the proxy does not rewrite bodies: a single unparseable thing cannot be "
        "produced on the wire here (the AWS parser is covered by the property tests instead)",
    }

    provider = "aws_iot"

    def __init__(self) -> None:
        self.region: str | None = None
        self.access_key_id = _access_key_id()
        self.secret_access_key = secrets.token_urlsafe(30)
        self.moto: MotoServer | None = None
        self.proxy: AwsIotProxy | None = None
        self.server: EmulatorServer | None = None

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError("the AWS IoT peer is not started")
        return self.server.url

    def start(self) -> None:
        if self.server is None:
            self.server = EmulatorServer(self._prepare().app).start()

    def _prepare(self) -> AwsIotProxy:
        """moto running and the proxy built (not yet served), in a region of our own."""
        if self.proxy is None:
            self.region = _claim_region()
            self._reset_backends()
            self.moto = MotoServer().start()
            self.moto.warm_up(
                self.region, ("iot", "/things?maxResults=1"), ("iotdata", "/things/warm-up/shadow")
            )
            self.proxy = AwsIotProxy(self.moto.url, accepted_access_key_id=self.access_key_id)
        return self.proxy

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.moto is not None:
            self.moto.stop()
            self.moto = None
        self.proxy = None
        if self.region is not None:
            self._reset_backends()
            with _regions_lock:
                _regions_in_use.discard(self.region)
            self.region = None

    # -- integration wiring ---------------------------------------------------------------

    def integration_settings(self) -> JsonDict:
        return {"region": self.region, "endpoint_url": self.url, "data_endpoint_url": self.url}

    def secret_env(self, prefix: str) -> tuple[dict[str, str], dict[str, str]]:
        key_env, secret_env = f"{prefix}_AWS_ACCESS_KEY_ID", f"{prefix}_AWS_SECRET_ACCESS_KEY"
        return (
            {"access_key_id": key_env, "secret_access_key": secret_env},
            {key_env: self.access_key_id, secret_env: self.secret_access_key},
        )

    def wrong_secret_env(self, prefix: str) -> dict[str, str]:
        return {
            f"{prefix}_AWS_ACCESS_KEY_ID": _access_key_id(),
            f"{prefix}_AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
        }

    # -- peer-side truth and actions ------------------------------------------------------

    def seed(self, count: int, *, with_shadow: bool = True) -> list[str]:
        self._reset_backends()
        iot, _data = self._backends()
        iot.create_thing_type(THING_TYPE, {"thingTypeDescription": "seeded by the AWS IoT peer"})
        return [self._create_seeded(index, with_shadow=with_shadow) for index in range(count)]

    def _create_seeded(self, index: int, *, with_shadow: bool = True) -> str:
        iot, _ = self._backends()
        name = f"thing-{index:05d}"
        thing = iot.create_thing(
            name,
            THING_TYPE,
            {
                "attributes": {
                    "model": f"m{index % 3}",
                    "site": f"site-{index % 7}",
                    "revision": "1",
                    "tags": f"fleet-{index % 2},seeded",
                }
            },
        )
        if with_shadow:
            from moto.iotdata.models import FakeShadow

            # what moto's UpdateThingShadow does, without its by-name scan of every thing
            # (O(n) a call: seeding 100,000 things that way takes many minutes)
            state = {
                "reported": {"temperature": 20 + index % 10, "battery": 100 - index % 50},
                "desired": {"interval_s": 60},
            }
            thing.thing_shadows[None] = FakeShadow.create_from_previous_version(
                None, {"state": state}
            )
        return name

    def delete_devices(self, external_ids: Iterable[str]) -> None:
        """DeleteThing (the shadow goes with it, as on AWS)."""
        iot, data = self._backends()
        from moto.iotdata.exceptions import ResourceNotFoundException

        for name in external_ids:
            with contextlib.suppress(ResourceNotFoundException):  # a thing without a shadow
                data.delete_thing_shadow(name, None)
            iot.delete_thing(name)

    def restore_devices(self, external_ids: Iterable[str]) -> None:
        """The seeded thing of that name is created again."""
        for name in external_ids:
            self._create_seeded(int(name.removeprefix("thing-")))

    def create_thing(self, name: str, attributes: dict[str, str] | None = None) -> None:
        """A thing without any shadow (for tests of the no-shadow case)."""
        self._backends()[0].create_thing(name, "", {"attributes": attributes or {}})

    def write_shadow(
        self, external_id: str, document: JsonDict, shadow_name: str | None = None
    ) -> None:
        """Write a whole update document (`{"state": {...}}`) to a classic or named shadow."""
        self._backends()[1].update_thing_shadow(external_id, json.dumps(document), shadow_name)

    def inventory(self) -> set[str]:
        return {thing.thing_name for thing in self._backends()[0].things.values()}

    def change_devices(self, external_ids: Iterable[str]) -> None:
        iot, _ = self._backends()
        for external_id in external_ids:
            thing = iot.describe_thing(external_id)
            revision = int(thing.attributes.get("revision", "0")) + 1
            iot.update_thing(
                external_id, None, {"attributes": {"revision": str(revision)}, "merge": True}, False
            )
            # Real AWS bumps a thing's version on UpdateThing; moto 5.2.5 does not (§2.5).
            thing.version += 1

    def reported_state(self, external_id: str) -> JsonDict | None:
        return self._shadow_state(external_id).get("reported")

    def desired_state(self, external_id: str) -> JsonDict | None:
        return self._shadow_state(external_id).get("desired")

    def write_desired_remotely(self, external_id: str, patch: JsonDict) -> None:
        self.write_shadow(external_id, {"state": {"desired": patch}})

    def enable_fleet_index(self) -> None:
        """The account's fleet index holds the registry and the classic shadows
        (REGISTRY_AND_SHADOW): GetIndexingConfiguration says so and SearchIndex shows each
        thing's classic shadow, which the proxy adds to moto's answer. Call after `seed`."""
        iot, _ = self._backends()
        iot.update_indexing_configuration({"thingIndexingMode": "REGISTRY_AND_SHADOW"}, {})
        self._proxy().index_shadow = self._classic_shadow

    def _classic_shadow(self, thing_name: str) -> JsonDict | None:
        """The thing's classic shadow document, found by its ARN (moto's own lookup by name
        scans every thing)."""
        iot, _ = self._backends()
        arn = f"arn:aws:iot:{self.region}:{MOTO_ACCOUNT_ID}:thing/{thing_name}"
        thing = iot.things.get(arn)
        shadow = None if thing is None else thing.thing_shadows.get(None)
        if shadow is None or shadow.deleted:
            return None
        return shadow.to_dict(include_delta=True)

    def inject_fault(self, fault: str, *, times: int = 1) -> None:
        self._proxy().add_faults(fault_spec(self, fault, times=times))

    def clear_faults(self) -> None:
        self._proxy().clear_faults()

    # -- moto's in-process state ----------------------------------------------------------

    def _proxy(self) -> AwsIotProxy:
        if self.proxy is None:
            raise RuntimeError("the AWS IoT peer is not started")
        return self.proxy

    def _backends(self) -> tuple[Any, Any]:
        if self.region is None:
            raise RuntimeError("the AWS IoT peer is not started")
        from moto.iot.models import iot_backends
        from moto.iotdata.models import iotdata_backends

        return iot_backends[MOTO_ACCOUNT_ID][self.region], iotdata_backends[MOTO_ACCOUNT_ID][
            self.region
        ]

    def _reset_backends(self) -> None:
        for backend in self._backends():
            backend.reset()

    def _shadow_state(self, external_id: str, shadow_name: str | None = None) -> JsonDict:
        from moto.iotdata.exceptions import ResourceNotFoundException

        try:
            shadow = self._backends()[1].get_thing_shadow(external_id, shadow_name)
        except ResourceNotFoundException:
            return {}
        return shadow.to_dict(include_delta=False)["state"]


def run_aws_peer(
    *, port: int = 8090, devices: int = 100, host: str = "127.0.0.1", index_shadows: bool = False
) -> None:
    """Serve a seeded AWS IoT peer in the foreground (for `sync-pipelines emulator aws`): moto on
    a free port, the proxy on `port`; with `index_shadows`, a fleet index holding the shadows.
    Prints, as one JSON line, how to point an integration at it."""
    peer = AwsIotPeer()
    proxy = peer._prepare()
    peer.seed(devices)
    if index_shadows:
        peer.enable_fleet_index()
    url = f"http://{host}:{port}"
    wiring = {
        "settings": {"region": peer.region, "endpoint_url": url, "data_endpoint_url": url},
        "environment": {
            "AWS_IOT_ACCESS_KEY_ID": peer.access_key_id,
            "AWS_IOT_SECRET_ACCESS_KEY": peer.secret_access_key,
        },
        "things": devices,
        "moto_url": peer.moto.url if peer.moto else None,
    }
    print(json.dumps(wiring), flush=True)
    try:
        serve_forever(proxy.app, host=host, port=port)
    finally:
        peer.stop()
