"""Azure IoT Hub provider (PROVIDERS.md §3): device twins over the service REST API, with httpx.

- Inventory: `POST /devices/query` (`SELECT * FROM devices` by default, the `query` setting
  narrows it), paged with `x-ms-max-item-count` and the `x-ms-continuation` token the previous
  page returned. The cursor after a page is `{"continuation": <token>}`; a token the hub no
  longer accepts (expired, or issued for another query) restarts the scan from the beginning
  with a warning — the idempotent upsert absorbs the re-read devices.
- A twin becomes a DeviceRecord: `deviceId` is both id and name (twins have no display
  name); `status` is the connection state, lower-cased (`connected`/`disconnected`);
  `enabled` is the twin's `status == "enabled"`; `lastActivityTime` is `last_seen_at`
  (`0001-01-01T00:00:00Z` = never → None); the twin's `statusUpdateTime` (not the device
  identity's `statusUpdatedTime`) is `provider_updated_at`. The twin `tags` object goes whole
  into `attributes["tags"]`, and `DeviceRecord.tags` holds it flattened to sorted
  `path=value` strings (`location.region=US`) so tag filters work across providers.
- State: `GET /twins/{id}` with bounded concurrency; reported/desired without `$metadata` and
  `$version`; the version is the twin etag. Export: `PATCH /twins/{id}` with `If-Match`.
- Auth: a SAS token per request from the connection string (`azure_sas`), renewed before it
  expires. Errors carry the hub's own error code and message (JSON-in-a-string `Message`,
  the legacy `ErrorCode:...;` text, or the `iothub-errorcode` header).
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx

from sync_pipelines import json_limits
from sync_pipelines.clock import utc_now
from sync_pipelines.errors import ProviderError
from sync_pipelines.observability.http_recording import IDEMPOTENT_EXTENSION
from sync_pipelines.observability.lean_http import LeanResponse
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.observability.redaction import redact_text
from sync_pipelines.providers.azure_sas import (
    DEFAULT_TTL_S,
    SasTokenSource,
    parse_connection_string,
)
from sync_pipelines.providers.contract import (
    ConnectionResult,
    DevicePage,
    DeviceRecord,
    DeviceState,
    IntegrationConfig,
    JsonDict,
    PlainJson,
    ProviderClients,
    PushResult,
    RejectedRecord,
    StatePage,
)
from sync_pipelines.providers.http_provider import (
    HttpProvider,
    device_segment,
    ms_since,
    request_id_of,
)
from sync_pipelines.providers.pools import submit_in_context
from sync_pipelines.providers.settings import AzureIotSettings

API_VERSION = "2021-04-12"
MAX_PAGE_SIZE = 100
DEFAULT_QUERY = "SELECT * FROM devices"
DEFAULT_STATE_CONCURRENCY = 8
NEVER = "0001-01-01T00:00:00Z"
_JSON = "application/json; charset=utf-8"

_log = get_logger("providers.azure_iot")


class SasAuth(httpx.Auth):
    """Puts the current SAS token on every request, so a renewed token is used as soon as it
    exists (the recording transport masks the header in activity rows)."""

    def __init__(self, tokens: SasTokenSource) -> None:
        self.tokens = tokens

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self.tokens.token()
        yield request


class AzureIotProvider(HttpProvider):
    name = "azure_iot"
    settings_model = AzureIotSettings
    service = "the hub"
    required_settings = ()
    required_secrets = ("connection_string",)
    supports_desired = True

    def __init__(self, config: IntegrationConfig, clients: ProviderClients) -> None:
        self.config = config
        settings = AzureIotSettings.of(config)  # a ConfigError names a bad setting
        integration_id = config.integration_id
        self.connection = parse_connection_string(
            config.secrets["connection_string"], integration_id
        )
        self.page_size = min(settings.page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
        self.state_concurrency = settings.state_concurrency or DEFAULT_STATE_CONCURRENCY
        self.query = settings.query or DEFAULT_QUERY
        #: "list" (the default): states come with the twin query's pages (twins carry their
        #: properties), and a full sync reads the query once for devices and states;
        #: "device": one twin read per device (the fallback for what the query leaves out)
        self.state_source = settings.state_source
        self.api_version = settings.api_version or API_VERSION
        self.tokens = SasTokenSource(self.connection, settings.sas_ttl_s or DEFAULT_TTL_S)
        self.base_url = (settings.base_url or f"https://{self.connection.host_name}").rstrip("/")
        self.http = clients.http(self.base_url, {"Accept": "application/json"})
        self.http.auth = SasAuth(self.tokens)
        # the per-device twin reads, with the same SAS token on each call
        self.lean = clients.lean_http(self.base_url, {"Accept": "application/json"})
        if self.lean is not None:
            self.lean.per_call_headers = lambda: {"Authorization": self.tokens.token()}

    # -- contract -------------------------------------------------------------------------

    def test_connection(self) -> ConnectionResult:
        started = time.perf_counter()
        try:
            response = self._query_page(None, 1)
            body = self._decode(response)
            if not isinstance(body, list):
                raise self._malformed(response, "query response is not a JSON array")
        except ProviderError as exc:
            return self._failed_connection(started, exc, hub=self.connection.host_name)
        return ConnectionResult(
            True,
            ms_since(started),
            None,
            {
                "hub": self.connection.host_name,
                "policy": self.connection.key_name,
                "api_version": self.api_version,
                "sas_expires_at": self.tokens.expiry,
            },
        )

    def list_devices(self, since: JsonDict | None = None) -> Iterator[DevicePage]:
        return self._device_pages(since, with_states=False)

    @property
    def lists_devices_with_states(self) -> bool:
        return self.state_source == "list"

    def list_devices_with_states(self, since: JsonDict | None = None) -> Iterator[DevicePage]:
        """The twin query's pages, each with the states of its twins (a twin without
        `properties`, from a query projecting them away, is listed without its state)."""
        return self._device_pages(since, with_states=True)

    def _device_pages(self, since: JsonDict | None, *, with_states: bool) -> Iterator[DevicePage]:
        continuation = since.get("continuation") if isinstance(since, dict) else None
        continuation = continuation if isinstance(continuation, str) and continuation else None
        for page_number, (response, sent, next_token) in enumerate(
            self._query_pages(continuation, restart_on_rejected_token=True)
        ):
            items, document_type = self._decode_page(response)
            self._check_page(response, items, sent, next_token)
            devices, rejected = _normalise(items, document_type)
            request_id = request_id_of(response)
            states = []
            if with_states:
                stored = {d.external_id for d in devices}
                listed = (_listed_state(twin, request_id, document_type) for twin in items)
                states = [s for s in listed if s is not None and s.external_id in stored]

            yield DevicePage(
                devices=devices,
                rejected=rejected,
                cursor_after={"continuation": next_token} if next_token else None,
                page_number=page_number,
                total=None,  # a query does not say how many twins match
                request_id=request_id,
                states=states,
            )

    def list_states(self) -> Iterator[StatePage]:
        """States from the integration's twin query: a query's twins carry their `properties`
        and `etag`, as `GET /twins/{id}` does, a page of up to `page_size` at a time. A twin
        without `properties` (a query that projects them away) is left out, for the engine to
        read alone."""
        for page_number, (response, sent, next_token) in enumerate(self._query_pages(None)):
            items, document_type = self._decode_page(response)
            self._check_page(response, items, sent, next_token)
            request_id = request_id_of(response)
            listed = (_listed_state(twin, request_id, document_type) for twin in items)
            states = [state for state in listed if state is not None]
            yield StatePage(
                states,
                len(items),
                page_number=page_number,
                request_id=request_id,
            )

    def _query_pages(
        self, continuation: str | None, *, restart_on_rejected_token: bool = False
    ) -> Iterator[tuple[httpx.Response | LeanResponse, str | None, str | None]]:
        """The query's pages in order — each answer with the token it was asked with and the
        token it gave for the next — the next page asked for as soon as an answer's headers
        name it, so the hub works on page N+1 while the caller reads page N (a query pages by
        continuation tokens: one request at a time, never more).

        With `restart_on_rejected_token`, a 400 to a token (expired, or from another query)
        starts the query over once."""
        restarted = False
        with ThreadPoolExecutor(1, thread_name_prefix="azure-query-page") as pool:
            asked = submit_in_context(pool, self._query_page, continuation, self.page_size)
            while True:
                try:
                    response = asked.result()
                except ProviderError as exc:
                    if (
                        not restart_on_rejected_token
                        or continuation is None
                        or restarted
                        or exc.status_code != 400
                    ):
                        raise
                    _log.warning(
                        "continuation_rejected_scan_restarted",
                        integration_id=self.config.integration_id,
                        error={"type": type(exc).__name__, "message": str(exc)},
                    )
                    restarted, continuation = True, None
                    asked = submit_in_context(pool, self._query_page, None, self.page_size)
                    continue
                next_token = response.headers.get("x-ms-continuation") or None
                if next_token is not None and next_token != continuation:
                    asked = submit_in_context(pool, self._query_page, next_token, self.page_size)
                yield response, continuation, next_token
                if next_token is None:
                    return
                continuation = next_token

    def _check_page(
        self,
        response: httpx.Response | LeanResponse,
        items: Any,
        sent: str | None,
        next_token: str | None,
    ) -> None:
        if not isinstance(items, list):
            raise self._malformed(response, "query response is not a JSON array of twins")
        if next_token is not None and next_token == sent:
            raise self._malformed(response, "the hub returned the same continuation token again")

    def push_desired(
        self, external_id: str, patch: JsonDict, *, expected_version: str | None
    ) -> PushResult:
        if not isinstance(patch, Mapping):
            raise TypeError(f"desired patch for device {external_id!r} must be a JSON object")
        # The SDK quotes the etag; `*` writes whatever the twin's version.
        if_match = "*" if expected_version is None else f'"{expected_version.strip(chr(34))}"'
        response = self._request(
            "PATCH",
            _twin_path(external_id),
            device_id=external_id,
            content=json.dumps({"properties": {"desired": dict(patch)}}).encode(),
            headers={"If-Match": if_match, "Content-Type": _JSON},
            # a JSON merge patch, conditional on the etag: a repeat never writes twice
            extensions={IDEMPOTENT_EXTENSION: True},
        )
        twin = self._decode(response, device_id=external_id)
        if not isinstance(twin, dict):
            raise self._malformed(response, f"twin of device {external_id!r} is not a JSON object")
        properties = twin.get("properties") if isinstance(twin.get("properties"), dict) else {}
        return PushResult(
            external_id=external_id,
            version=_etag(response.headers.get("ETag")) or _str_or_none(twin.get("etag")),
            desired=_without_bookkeeping(properties.get("desired")),
            request_id=request_id_of(response),
        )

    def parse_device(self, payload: Any) -> DeviceRecord:
        return twin_to_device(payload)

    # -- wire -----------------------------------------------------------------------------

    def _decode_page(self, response: httpx.Response | LeanResponse) -> tuple[Any, type[JsonDict]]:
        """A query page's twins, and the type their documents take: `PlainJson` when every
        float on the page is plain (the content hash then encodes them the fast way)."""
        try:
            # the depth limit on what a twin is read for: most of a twin's nesting is the hub's
            # `$metadata` (a timestamp per property), which is dropped unread
            items, plain = json_limits.decode_noting_floats(response.content, check_depth=False)
            twins = items if isinstance(items, list) else [items]  # not a list: `_check_page`
            problem = next(filter(None, map(_twin_depth_problem, twins)), None)
            if problem:
                raise json_limits.JsonLimitError(problem)
        except ValueError as exc:  # as `_decode` words it
            raise self._malformed(
                response, f"{self._subject(None)}: response is not valid JSON ({exc})"
            ) from exc
        return items, PlainJson if plain else dict

    def _query_page(
        self, continuation: str | None, max_items: int
    ) -> httpx.Response | LeanResponse:
        headers = {"x-ms-max-item-count": str(max_items), "Content-Type": _JSON}
        if continuation:
            headers["x-ms-continuation"] = continuation
        return self._post_read(
            "/devices/query",
            json.dumps({"query": self.query}).encode(),
            headers=headers,
            params={"api-version": self.api_version},
        )

    def _fetch_state(self, external_id: str) -> DeviceState | ProviderError:
        try:
            response = self._get(
                _twin_path(external_id),
                params={"api-version": self.api_version},
                device_id=external_id,
            )
            twin = self._decode(response, device_id=external_id)
        except ProviderError as exc:
            return exc
        properties = twin.get("properties") if isinstance(twin, dict) else None
        if not isinstance(properties, dict):
            return self._malformed(
                response, f"twin of device {external_id!r} has no `properties` object"
            )
        return _twin_state(
            external_id,
            properties,
            _etag(response.headers.get("ETag")) or _str_or_none(twin.get("etag")),
            request_id_of(response),
        )

    def _request(
        self, method: str, path: str, *, device_id: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        return self._send(
            method, path, device_id=device_id, params={"api-version": self.api_version}, **kwargs
        )

    def _error_detail(self, response: httpx.Response, device_id: str | None) -> str:
        status = response.status_code
        detail = hub_error_detail(response)
        subject = self._subject(device_id)
        if status == 401:
            return (
                f"{subject}: the hub rejected the SAS token (it expired, or was signed with a "
                f"policy/key the hub does not accept: check the connection string and the "
                f"clock): {detail}"
            )
        if status == 412:
            return f"{subject}: the twin changed since the expected etag (precondition failed): {detail}"
        if status == 404 and device_id:
            return f"{subject}: no such device in hub {self.connection.host_name}: {detail}"
        return f"{subject}: {detail}"


# ---------------------------------------------------------------------------------------------
# Error bodies
# ---------------------------------------------------------------------------------------------


def hub_error_detail(response: httpx.Response) -> str:
    """The hub's own words for an error: `<Name> (<code>): <message> [trackingId ...]`.

    Handles `{"Message": "<JSON string>"}`, the legacy `{"Message": "ErrorCode:<Name>;..."}`
    and bodies that are neither, plus the `iothub-errorcode` header. Redacted, since a body
    is text we did not write.
    """
    name = response.headers.get("iothub-errorcode")
    code: Any = None
    message: str | None = None
    tracking: str | None = None
    try:
        body = json_limits.decode(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        raw = body.get("Message") if "Message" in body else body.get("message")
        if isinstance(raw, str) and raw.startswith("ErrorCode:"):
            legacy_name, _, message = raw[len("ErrorCode:") :].partition(";")
            name = name or legacy_name
        elif isinstance(raw, str):
            try:
                inner = json_limits.decode(raw)
            except ValueError:
                inner = None
            if isinstance(inner, dict):
                code, message, tracking = (
                    inner.get("errorCode"),
                    inner.get("message"),
                    inner.get("trackingId"),
                )
            else:
                message = raw
        exception_message = body.get("ExceptionMessage")
        if (
            tracking is None
            and isinstance(exception_message, str)
            and exception_message.startswith("Tracking ID:")
        ):
            tracking = exception_message[len("Tracking ID:") :]
    label = (
        " ".join(p for p in (name, f"({code})" if code is not None else None) if p)
        or f"HTTP {response.status_code}"
    )
    text = message if message else response.text[:300] or response.reason_phrase
    suffix = f" [trackingId {tracking}]" if tracking else ""
    return redact_text(f"{label}: {text}{suffix}")


# ---------------------------------------------------------------------------------------------
# Twins -> records
# ---------------------------------------------------------------------------------------------


def _normalise(
    items: list[Any], document_type: type[JsonDict] = dict
) -> tuple[list[DeviceRecord], list[RejectedRecord]]:
    devices: list[DeviceRecord] = []
    rejected: list[RejectedRecord] = []
    for raw in items:
        try:
            devices.append(twin_to_device(raw, document_type))
        except (ValueError, TypeError, KeyError) as exc:
            device_id = raw.get("deviceId") if isinstance(raw, dict) else None
            rejected.append(
                RejectedRecord(
                    external_id=device_id if isinstance(device_id, str) and device_id else None,
                    payload=raw,
                    error_type="validation",
                    error_message=f"{type(exc).__name__}: {exc}",
                )
            )
    return devices, rejected


def twin_to_device(raw: Any, document_type: type[JsonDict] = dict) -> DeviceRecord:
    """A query item (a twin) → record; see the module docstring for the mapping. Its attributes
    as `document_type` (`PlainJson` from a page whose floats were all plain)."""
    if not isinstance(raw, dict):
        raise TypeError(f"twin is a {type(raw).__name__}, not an object")
    device_id = raw.get("deviceId")
    if not isinstance(device_id, str) or not device_id:
        raise ValueError("twin has no `deviceId`")
    status = raw.get("status")
    if status not in (None, "enabled", "disabled"):
        raise ValueError(
            f"device {device_id}: `status` must be enabled or disabled, got {status!r:.40}"
        )
    connection_state = raw.get("connectionState")
    if connection_state is not None and not isinstance(connection_state, str):
        raise TypeError(f"device {device_id}: `connectionState` is not a string")
    tags = raw.get("tags")
    if tags is not None and not isinstance(tags, dict):
        raise TypeError(f"device {device_id}: `tags` must be an object, got {type(tags).__name__}")
    attributes: JsonDict = document_type()
    for key in ("authenticationType", "statusReason", "modelId", "deviceScope", "moduleId"):
        if raw.get(key) not in (None, ""):
            attributes[key] = raw[key]
    capabilities = raw.get("capabilities")
    if isinstance(capabilities, dict) and capabilities:
        attributes["capabilities"] = capabilities
    if raw.get("parentScopes"):
        attributes["parentScopes"] = raw["parentScopes"]
    if tags:
        attributes["tags"] = tags
    return DeviceRecord(
        external_id=device_id,
        name=device_id,
        tags=flatten_tags(tags or {}),
        status=connection_state.lower() if connection_state else None,
        enabled=None if status is None else status == "enabled",
        last_seen_at=_hub_time(raw.get("lastActivityTime"), "lastActivityTime", device_id),
        provider_updated_at=_hub_time(raw.get("statusUpdateTime"), "statusUpdateTime", device_id),
        attributes=attributes,
    )


def flatten_tags(tags: Mapping[str, Any], prefix: str = "") -> tuple[str, ...]:
    """`{"location": {"region": "US"}, "env": "prod"}` → ("env=prod", "location.region=US")."""
    flat: list[str] = []
    for key, value in tags.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.extend(flatten_tags(value, f"{path}."))
        else:
            flat.append(f"{path}={value if isinstance(value, str) else json.dumps(value)}")
    return tuple(sorted(flat))


def _hub_time(value: Any, field: str, device_id: str) -> datetime | None:
    if (
        value in (None, "")
        or value == NEVER
        or (isinstance(value, str) and value.startswith("0001-01-01"))
    ):
        return None
    if not isinstance(value, str):
        raise TypeError(f"device {device_id}: `{field}` is not a time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(
            f"device {device_id}: `{field}` {value!r:.40} is not an ISO 8601 time"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _twin_state(
    external_id: str,
    properties: JsonDict,
    version: str | None,
    request_id: str | None,
    document_type: type[JsonDict] = dict,
) -> DeviceState:
    return DeviceState(
        external_id=external_id,
        reported=_without_bookkeeping(properties.get("reported"), document_type),
        desired=_without_bookkeeping(properties.get("desired"), document_type),
        version=version,
        observed_at=utc_now(),
        request_id=request_id,
    )


def _listed_state(
    twin: Any, request_id: str | None, document_type: type[JsonDict] = dict
) -> DeviceState | None:
    """A query item's state, or None when it does not carry one whole."""
    if not isinstance(twin, dict):
        return None
    device_id, properties = twin.get("deviceId"), twin.get("properties")
    if not isinstance(device_id, str) or not device_id or not isinstance(properties, dict):
        return None
    return _twin_state(
        device_id, properties, _str_or_none(twin.get("etag")), request_id, document_type
    )


def _twin_depth_problem(twin: Any) -> str | None:
    """`json_limits.depth_problem` of a query item, its properties' `$metadata` / `$version`
    left out (a twin is read without them: `_without_bookkeeping`)."""
    if not isinstance(twin, dict):
        return json_limits.depth_problem(twin)
    properties = twin.get("properties")
    if isinstance(properties, dict):
        kept = {
            k: _without_bookkeeping(v) if isinstance(v, dict) else v for k, v in properties.items()
        }
        twin = {**twin, "properties": kept}
    return json_limits.depth_problem(twin)


def _without_bookkeeping(document: Any, document_type: type[JsonDict] = dict) -> JsonDict | None:
    """A property document without the hub's `$metadata` / `$version`."""
    if not isinstance(document, dict):
        return None
    kept = {k: v for k, v in document.items() if not k.startswith("$")}
    return kept if document_type is dict else document_type(kept)


def _etag(header: str | None) -> str | None:
    if not header:
        return None
    value = header.strip()
    return (value[2:] if value.startswith("W/") else value).strip('"') or None


def _str_or_none(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _twin_path(device_id: str) -> str:
    return f"/twins/{device_segment(device_id)}"
