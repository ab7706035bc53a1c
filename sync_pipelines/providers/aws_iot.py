"""AWS IoT Core provider (PROVIDERS.md §2): things from the registry, state from Device Shadows.

Inventory is ListThings (`maxResults` ≤ 250, opaque `nextToken`); the cursor after a page is
`{"next_token": …}`, so a killed scan resumes at the next page. A token AWS no longer accepts
(expired, tampered, from other filters) restarts the scan from the start — the upsert is
idempotent, so that costs time, not correctness. State is GetThingShadow: the classic shadow,
one named shadow (`shadow_name`), or several (`named_shadows`: a list, or "*" for all the
thing has), read with bounded concurrency. Every call goes through the recording boto3
client (observability.boto_recording), retried per the integration's RetryPolicy.

States in bulk (`state_source: list`, the default): when the account's fleet index holds the
shadow read (GetIndexingConfiguration: `thingIndexingMode` REGISTRY_AND_SHADOW, and for a
`shadow_name` the named-shadow indexing with that name), SearchIndex lists every thing with its
shadow, 100 a call (PROVIDERS.md §7.1); what it leaves out is read per thing, as is everything
when the index does not hold the shadows (or `named_shadows` is set). The index is eventually
consistent: a shadow written seconds before may still show its previous version there.

Settings: `region` (required); `endpoint_url` (control plane) and `data_endpoint_url` (else
DescribeEndpoint `iot:Data-ATS`); `page_size`; `thing_type`, `attribute_name` +
`attribute_value` (ListThings filters); `tags_attribute` (default "tags": a comma-separated
thing attribute read as tags); `shadow_name` / `named_shadows`; `state_concurrency` (8).
Secrets: `access_key_id`, `secret_access_key`, optional `session_token`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from typing import Any

from botocore.exceptions import ClientError

from sync_pipelines import aws_errors, json_limits
from sync_pipelines.clock import utc_now
from sync_pipelines.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    MalformedResponseError,
    PermanentError,
    ProviderError,
    RateLimitedError,
)
from sync_pipelines.observability.boto_recording import request_id_of
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.outbound import OutboundRefused
from sync_pipelines.providers.contract import (
    ConnectionResult,
    DevicePage,
    DeviceRecord,
    DeviceState,
    IntegrationConfig,
    JsonDict,
    Provider,
    ProviderClients,
    PushResult,
    RejectedRecord,
    StateFailure,
    StatePage,
)
from sync_pipelines.providers.pools import map_in_context
from sync_pipelines.providers.settings import AwsIotSettings

MAX_PAGE_SIZE = 250
_NAMED_SHADOWS_PAGE_SIZE = 100
#: SearchIndex's `maxResults` ceiling, and the fleet index of things
_INDEX_PAGE_SIZE = 100
_THING_INDEX = "AWS_Things"
_ALL_NAMED_SHADOWS = "*"

_log = get_logger("providers.aws_iot")


class _NoShadow(Exception):
    """GetThingShadow said 404: the thing has no such shadow (or does not exist)."""


class AwsIotProvider(Provider):
    name = "aws_iot"
    settings_model = AwsIotSettings
    required_settings = ("region",)
    required_secrets = ("access_key_id", "secret_access_key")
    #: read when present (temporary credentials); resolve_config resolves only required_secrets
    #: today, so `session_token` reaches `config.secrets` once it also resolves these
    optional_secrets = ("session_token",)
    supports_desired = True

    def __init__(self, config: IntegrationConfig, clients: ProviderClients) -> None:
        self.config = config
        settings = AwsIotSettings.of(config)  # a ConfigError names a bad setting
        self.region = settings.region
        self.page_size = min(settings.page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
        self.state_concurrency = settings.state_concurrency
        self.tags_attribute = settings.tags_attribute
        self._filters = {
            key: value
            for key, value in (
                ("thingTypeName", settings.thing_type),
                ("attributeName", settings.attribute_name),
                ("attributeValue", settings.attribute_value),
            )
            if value
        }
        self.shadow_name: str | None = settings.shadow_name
        self.named_shadows = _named_shadows(settings.named_shadows)
        self.state_source = settings.state_source
        self._index_holds_shadows: bool | None = None
        self.data_endpoint_url: str | None = settings.data_endpoint_url
        self._clients = clients
        self._client_kwargs: dict[str, Any] = {
            "region_name": self.region,
            "aws_access_key_id": config.secrets["access_key_id"],
            "aws_secret_access_key": config.secrets["secret_access_key"],
            "aws_session_token": config.secrets.get("session_token") or None,
            "max_pool_connections": max(10, self.state_concurrency),
        }
        self.iot = clients.boto("iot", endpoint_url=settings.endpoint_url, **self._client_kwargs)
        self._data: Any = None

    def close(self) -> None:
        self.iot.close()
        if self._data is not None:
            self._data.close()

    # -- contract -------------------------------------------------------------------------

    def test_connection(self) -> ConnectionResult:
        started = time.perf_counter()
        try:
            self._call(self.iot.list_things, "ListThings", maxResults=1)
            data = self._data_client()
        except ProviderError as exc:
            reason = "authentication failed" if isinstance(exc, AuthError) else exc.category
            return ConnectionResult(
                False,
                _ms_since(started),
                f"{reason}: {exc}",
                {"status_code": exc.status_code, "category": exc.category},
            )
        except Exception as exc:  # noqa: BLE001 - a connection test reports, it never raises
            return ConnectionResult(False, _ms_since(started), f"{type(exc).__name__}: {exc}")
        return ConnectionResult(
            True,
            _ms_since(started),
            None,
            {"region": self.region, "data_endpoint": data.meta.endpoint_url},
        )

    def list_devices(self, since: JsonDict | None = None) -> Iterator[DevicePage]:
        token = (since or {}).get("next_token")
        if token is not None and not isinstance(token, str):
            _log.warning(
                "resume_token_discarded",
                reason="not a string",
                integration_id=self.config.integration_id,
            )
            token = None
        try:
            yield from self._pages(token)
        except _RejectedToken as exc:  # raised before the first page, so nothing was yielded
            _log.warning(
                "resume_token_rejected",
                integration_id=self.config.integration_id,
                error={"type": exc.code, "message": exc.message},
                action="restarting the inventory scan from the beginning",
            )
            yield from self._pages(None)

    def get_states(
        self, external_ids: Sequence[str]
    ) -> tuple[list[DeviceState], list[StateFailure]]:
        if not external_ids:
            return [], []
        data = self._data_client()  # before the threads: DescribeEndpoint once
        states: list[DeviceState] = []
        failures: list[StateFailure] = []
        with ThreadPoolExecutor(self.state_concurrency, thread_name_prefix="aws-iot-state") as pool:
            outcomes = map_in_context(
                pool, self._read_state, repeat(data, len(external_ids)), external_ids
            )
            for external_id, outcome in zip(external_ids, outcomes, strict=True):
                if isinstance(outcome, DeviceState):
                    states.append(outcome)
                elif isinstance(outcome, AuthError):
                    raise outcome  # no point carrying on with bad credentials
                else:
                    failures.append(
                        StateFailure(
                            external_id, outcome.category, str(outcome), outcome.request_id
                        )
                    )
        return states, failures

    def parse_device(self, payload: Any) -> DeviceRecord:
        return thing_to_device(payload, self.tags_attribute)

    @property
    def lists_states(self) -> bool:
        """`state_source: list` and the account's fleet index holds the shadow read (asked once)."""
        if self.state_source != "list" or self.named_shadows:
            return False
        if self._index_holds_shadows is None:
            self._index_holds_shadows = self._index_has_shadows()
        return self._index_holds_shadows

    def list_states(self) -> Iterator[StatePage]:
        """Every thing's shadow from the fleet index (SearchIndex), 100 things a call; a thing
        the index shows without that shadow is left out, for the engine to read alone."""
        kwargs: dict[str, Any] = {
            "indexName": _THING_INDEX,
            "queryString": self._index_query(),
            "maxResults": _INDEX_PAGE_SIZE,
        }
        page_number = 0
        while True:
            response = self._call(self.iot.search_index, "SearchIndex", **kwargs)
            things = response.get("things")
            if not isinstance(things, list):
                raise self._malformed(response, None, "SearchIndex", "no `things` list")
            request_id = request_id_of(response)
            listed = (_indexed_state(thing, self.shadow_name, request_id) for thing in things)
            yield StatePage(
                [state for state in listed if state is not None],
                len(things),
                page_number=page_number,
                request_id=request_id,
            )
            token = response.get("nextToken")
            if not token:
                return
            kwargs["nextToken"] = token
            page_number += 1

    def _index_has_shadows(self) -> bool:
        try:
            config = self._call(
                self.iot.get_indexing_configuration, "GetIndexingConfiguration"
            ).get("thingIndexingConfiguration", {})
        except ProviderError as exc:  # e.g. no iot:GetIndexingConfiguration permission
            _log.warning(
                "fleet_index_unknown",
                integration_id=self.config.integration_id,
                error={"type": exc.category, "message": str(exc)},
                action="reading shadows one thing at a time",
            )
            return False
        if config.get("thingIndexingMode") != "REGISTRY_AND_SHADOW":
            return False
        if self.shadow_name is None:
            return True
        named = (config.get("filter") or {}).get("namedShadowNames") or []
        return config.get("namedShadowIndexingMode") == "ON" and self.shadow_name in named

    def _index_query(self) -> str:
        """The ListThings filters as a fleet-index query (every thing when there are none)."""
        terms = []
        if "thingTypeName" in self._filters:
            terms.append(f"thingTypeName:{_query_term(self._filters['thingTypeName'])}")
        if "attributeName" in self._filters:
            name = self._filters["attributeName"]
            value = self._filters.get("attributeValue", "*")
            terms.append(f"attributes.{name}:{_query_term(value)}")
        return " AND ".join(terms) or "thingName:*"

    def push_desired(
        self, external_id: str, patch: JsonDict, *, expected_version: str | None
    ) -> PushResult:
        if self.named_shadows:
            raise ConfigError(
                self.config.integration_id,
                "push_desired writes one shadow: set shadow_name (or none, the classic shadow) "
                "instead of named_shadows",
            )
        document: JsonDict = {"state": {"desired": patch}}
        if expected_version is not None:
            try:
                document["version"] = int(expected_version)
            except ValueError:
                raise PermanentError(
                    f"thing {external_id!r}: expected_version {expected_version!r} is not a "
                    "shadow version (an integer)",
                    provider=self.name,
                ) from None
        data = self._data_client()
        try:
            response = self._call(
                data.update_thing_shadow,
                "UpdateThingShadow",
                external_id,
                thingName=external_id,
                payload=json.dumps(document).encode(),
                **self._shadow_kwargs(self.shadow_name),
            )
        except ConflictError as exc:
            raise ConflictError(
                f"thing {external_id!r}: its shadow is no longer at version {expected_version} (someone else "
                "changed it); re-read its state before pushing again",
                provider=self.name,
                endpoint="UpdateThingShadow",
                status_code=exc.status_code,
                request_id=exc.request_id,
            ) from exc
        accepted = self._payload(response, external_id, "UpdateThingShadow")
        version = accepted.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise self._malformed(
                response, external_id, "UpdateThingShadow", "the accepted document has no version"
            )
        # The accepted document holds only the patch; read the whole desired state back, and
        # keep it only if nobody wrote in between (same version).
        desired = None
        try:
            shadow = self._get_shadow(data, external_id, self.shadow_name)
        except (ProviderError, _NoShadow):
            shadow = None
        if shadow is not None and shadow[0].get("version") == version:
            desired = shadow[0].get("state", {}).get("desired")
        return PushResult(
            external_id=external_id,
            version=str(version),
            desired=desired,
            request_id=request_id_of(response),
        )

    # -- inventory ------------------------------------------------------------------------

    def _pages(self, token: str | None) -> Iterator[DevicePage]:
        from botocore.paginate import TokenEncoder  # the paginator's own StartingToken format

        pagination: dict[str, Any] = {"PageSize": self.page_size}
        if token:
            pagination["StartingToken"] = TokenEncoder().encode({"nextToken": token})
        responses = iter(
            self.iot.get_paginator("list_things").paginate(
                **self._filters, PaginationConfig=pagination
            )
        )
        page_number = 0
        while True:
            try:
                response = next(responses)
            except StopIteration:
                return
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if token and page_number == 0 and code in aws_errors.BAD_TOKEN_CODES:
                    raise _RejectedToken(
                        code, exc.response.get("Error", {}).get("Message", "")
                    ) from exc
                raise self._error(exc, "ListThings") from exc
            except Exception as exc:
                raise self._error(exc, "ListThings") from exc
            yield self._to_page(response, page_number)
            page_number += 1

    def _to_page(self, response: JsonDict, page_number: int) -> DevicePage:
        things = response.get("things")
        if not isinstance(things, list):
            raise self._malformed(response, None, "ListThings", "the response has no `things` list")
        devices, rejected = [], []
        for raw in things:
            try:
                devices.append(thing_to_device(raw, self.tags_attribute))
            except (TypeError, ValueError) as exc:
                name = raw.get("thingName") if isinstance(raw, dict) else None
                rejected.append(
                    RejectedRecord(
                        external_id=name if isinstance(name, str) and name else None,
                        payload=raw,
                        error_type="validation",
                        error_message=f"{type(exc).__name__}: {exc}",
                    )
                )
        next_token = response.get("nextToken")
        return DevicePage(
            devices=devices,
            rejected=rejected,
            cursor_after={"next_token": next_token} if next_token else None,
            page_number=page_number,
            request_id=request_id_of(response),
        )

    # -- state ----------------------------------------------------------------------------

    def _read_state(self, data: Any, thing: str) -> DeviceState | ProviderError:
        try:
            if self.named_shadows:
                return self._read_named_shadows(data, thing)
            try:
                document, request_id = self._get_shadow(data, thing, self.shadow_name)
            except _NoShadow:
                return self._no_state(thing)
            state = document["state"]
            return DeviceState(
                external_id=thing,
                reported=state.get("reported"),
                desired=state.get("desired"),
                version=str(document["version"]),
                observed_at=utc_now(),
                request_id=request_id,
            )
        except ProviderError as exc:
            return exc

    def _read_named_shadows(self, data: Any, thing: str) -> DeviceState | ProviderError:
        names = (
            self._list_named_shadows(data, thing)
            if self.named_shadows == _ALL_NAMED_SHADOWS
            else list(self.named_shadows or ())
        )
        reported: JsonDict = {}
        desired: JsonDict = {}
        versions: list[str] = []
        request_id = None
        for name in sorted(names):
            try:
                document, rid = self._get_shadow(data, thing, name)
            except _NoShadow:
                continue
            request_id = request_id or rid
            state = document["state"]
            if state.get("reported") is not None:
                reported[name] = state["reported"]
            if state.get("desired") is not None:
                desired[name] = state["desired"]
            versions.append(f"{name}:{document['version']}")
        if not versions:
            return self._no_state(thing)
        return DeviceState(
            external_id=thing,
            reported=reported,
            desired=desired,
            version=",".join(versions),
            observed_at=utc_now(),
            request_id=request_id,
        )

    def _list_named_shadows(self, data: Any, thing: str) -> list[str]:
        # ListNamedShadowsForThing has no botocore paginator: follow nextToken by hand.
        names: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"thingName": thing, "pageSize": _NAMED_SHADOWS_PAGE_SIZE}
            if token:
                kwargs["nextToken"] = token
            response = self._call(
                data.list_named_shadows_for_thing, "ListNamedShadowsForThing", thing, **kwargs
            )
            results = response.get("results", [])
            if not isinstance(results, list) or not all(isinstance(n, str) for n in results):
                raise self._malformed(
                    response, thing, "ListNamedShadowsForThing", "`results` is not a list of names"
                )
            names.extend(results)
            token = response.get("nextToken")
            if not token:
                return names

    def _get_shadow(
        self, data: Any, thing: str, shadow_name: str | None
    ) -> tuple[JsonDict, str | None]:
        """The shadow document (with a `state` object, maybe empty) and our request id; raises
        _NoShadow when AWS has none."""
        try:
            response = self._call(
                data.get_thing_shadow,
                "GetThingShadow",
                thing,
                thingName=thing,
                **self._shadow_kwargs(shadow_name),
            )
        except ProviderError as exc:
            if _not_found(exc):
                raise _NoShadow() from exc
            raise
        document = self._payload(response, thing, "GetThingShadow")
        state, version = document.get("state", {}), document.get("version")
        if not isinstance(state, dict) or not isinstance(version, int) or isinstance(version, bool):
            raise self._malformed(
                response,
                thing,
                "GetThingShadow",
                "the shadow has no `state` object or no `version`",
            )
        for part in ("reported", "desired"):
            if state.get(part) is not None and not isinstance(state[part], dict):
                raise self._malformed(
                    response, thing, "GetThingShadow", f"`state.{part}` is not an object"
                )
        # a shadow without `state` (every section deleted) is one with nothing in it
        return {**document, "state": state}, request_id_of(response)

    def _no_state(self, thing: str) -> DeviceState | ProviderError:
        """No shadow: a state of nothing — unless the thing itself is gone, which is a failure."""
        try:
            self._call(self.iot.describe_thing, "DescribeThing", thing, thingName=thing)
        except ProviderError as exc:
            if _not_found(exc):
                return PermanentError(
                    f"thing {thing!r} does not exist (deleted since the inventory sync?)",
                    provider=self.name,
                    endpoint="DescribeThing",
                    status_code=404,
                    request_id=exc.request_id,
                )
            return exc
        return DeviceState(
            external_id=thing, reported=None, desired=None, version=None, observed_at=utc_now()
        )

    # -- wire -----------------------------------------------------------------------------

    def _data_client(self) -> Any:
        if self._data is None:
            endpoint = self.data_endpoint_url
            if endpoint is None:
                response = self._call(
                    self.iot.describe_endpoint, "DescribeEndpoint", endpointType="iot:Data-ATS"
                )
                address = response.get("endpointAddress")
                if not isinstance(address, str) or not address:
                    raise self._malformed(
                        response, None, "DescribeEndpoint", "no `endpointAddress`"
                    )
                endpoint = f"https://{address}"
            self._data = self._clients.boto(
                "iot-data", endpoint_url=endpoint, **self._client_kwargs
            )
        return self._data

    @staticmethod
    def _shadow_kwargs(shadow_name: str | None) -> dict[str, str]:
        return {"shadowName": shadow_name} if shadow_name else {}

    def _call(
        self, method: Any, operation: str, thing: str | None = None, /, **kwargs: Any
    ) -> JsonDict:
        try:
            return method(**kwargs)
        except OutboundRefused as exc:  # an endpoint the service may not call (outbound.py)
            raise ConfigError(self.config.integration_id, f"setting 'endpoint_url': {exc}") from exc
        except Exception as exc:
            raise self._error(exc, operation, thing) from exc

    def _payload(self, response: JsonDict, thing: str, operation: str) -> JsonDict:
        """The JSON document in a data-plane `payload` blob (botocore leaves it unparsed)."""
        raw = response.get("payload")
        body = raw.read() if hasattr(raw, "read") else raw
        try:
            document = json_limits.decode(body)
        except (TypeError, ValueError) as exc:
            raise self._malformed(
                response, thing, operation, f"the shadow document is not valid JSON ({exc})"
            ) from exc
        if not isinstance(document, dict):
            raise self._malformed(
                response, thing, operation, "the shadow document is not a JSON object"
            )
        return document

    def _error(self, exc: BaseException, operation: str, thing: str | None = None) -> ProviderError:
        """Any botocore failure → the taxonomy, naming the integration or the thing."""
        if isinstance(exc, ProviderError):
            return exc
        subject = f"thing {thing!r}" if thing else f"integration {self.config.integration_id!r}"
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            meta = exc.response.get("ResponseMetadata", {})
            status, code = meta.get("HTTPStatusCode"), error.get("Code")
            cls = aws_errors.error_class(status, code)
            aws_id = meta.get("RequestId")
            return cls(
                f"{subject}: {code}: {error.get('Message') or 'no message'}"
                + (f" (aws_request_id={aws_id})" if aws_id else ""),
                provider=self.name,
                endpoint=operation,
                status_code=status,
                request_id=request_id_of(exc),
                retry_after_s=aws_errors.retry_after_s(meta.get("HTTPHeaders", {}))
                if cls is RateLimitedError
                else None,
            )
        cls = aws_errors.exception_class(exc) or PermanentError
        return cls(
            f"{subject}: {type(exc).__name__}: {exc}",
            provider=self.name,
            endpoint=operation,
            request_id=request_id_of(exc),
        )

    def _malformed(
        self, response: JsonDict, thing: str | None, operation: str, problem: str
    ) -> MalformedResponseError:
        subject = f"thing {thing!r}" if thing else f"integration {self.config.integration_id!r}"
        meta = response.get("ResponseMetadata", {})
        return MalformedResponseError(
            f"{subject}: {problem}",
            provider=self.name,
            endpoint=operation,
            status_code=meta.get("HTTPStatusCode"),
            request_id=request_id_of(response),
        )


class _RejectedToken(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def _named_shadows(value: Any) -> str | tuple[str, ...] | None:
    """The `named_shadows` setting: "*" (all the thing has), a list, or "a,b"; None if unset."""
    if value in (None, "", []):
        return None
    if value == _ALL_NAMED_SHADOWS:
        return _ALL_NAMED_SHADOWS
    names = value.split(",") if isinstance(value, str) else value
    return tuple(str(name).strip() for name in names if str(name).strip()) or None


def _query_term(value: str) -> str:
    """A value as a fleet-index query term: quoted when it holds a space or a colon."""
    return f'"{value}"' if any(c in value for c in ' :"') else value


def _indexed_state(
    thing: Any, shadow_name: str | None, request_id: str | None
) -> DeviceState | None:
    """A SearchIndex thing's shadow as GetThingShadow would give it, or None when the index
    shows none (or a shape we do not read): the classic shadow's `reported`, `desired` and
    `version` sit at the top of the `shadow` JSON, a named one's under `name.<shadow>`."""
    if not isinstance(thing, dict) or not isinstance(thing.get("thingName"), str):
        return None
    try:
        shadow = json_limits.decode(thing.get("shadow") or "null")
    except (TypeError, ValueError):
        return None
    if shadow_name is not None and isinstance(shadow, dict):
        named = shadow.get("name")
        shadow = named.get(shadow_name) if isinstance(named, dict) else None
    if not isinstance(shadow, dict):
        return None
    version = shadow.get("version")
    reported, desired = shadow.get("reported"), shadow.get("desired")
    if (
        not isinstance(version, int)
        or isinstance(version, bool)
        or not isinstance(reported, dict | None)
        or not isinstance(desired, dict | None)
    ):
        return None
    return DeviceState(
        external_id=thing["thingName"],
        reported=reported,
        desired=desired,
        version=str(version),
        observed_at=utc_now(),
        request_id=request_id,
    )


def _not_found(exc: ProviderError) -> bool:
    """AWS said ResourceNotFoundException (a bare 404 from something else is not that)."""
    cause = exc.__cause__
    return isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") == (
        "ResourceNotFoundException"
    )


def thing_to_device(raw: Any, tags_attribute: str | None) -> DeviceRecord:
    """ThingAttribute (or a registry event's thing) → record: `thingName` is the id and the name; the rest are attributes."""
    if not isinstance(raw, dict):
        raise TypeError(f"thing is a {type(raw).__name__}, not an object")
    name = raw.get("thingName")
    if not isinstance(name, str) or not name:
        raise ValueError("thing has no `thingName`")
    attributes = raw.get("attributes", {})
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise TypeError(
            f"thing {name}: `attributes` must map strings to strings, got {attributes!r:.80}"
        )
    version = raw.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise TypeError(f"thing {name}: `version` is not an integer, got {version!r:.40}")
    for key in ("thingTypeName", "thingArn"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise TypeError(f"thing {name}: `{key}` is not a string")
    tags_value = attributes.get(tags_attribute, "") if tags_attribute else ""
    return DeviceRecord(
        external_id=name,
        name=name,
        tags=tuple(tag.strip() for tag in tags_value.split(",") if tag.strip()),
        attributes={
            key: raw[key]
            for key in ("thingTypeName", "thingArn", "version", "attributes")
            if raw.get(key) is not None
        },
    )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
