"""The webhook receiver: `POST /webhooks/{provider}/{integration_id}` → verified, stored once, 2xx.

Per delivery, in this order: the integration must exist, be enabled and be of that provider
(else 404, the same answer whichever it is); the body is read up to the size limit while it
streams (413 — Content-Length is only trusted to refuse early); the signature or shared secret
is checked on the raw bytes (401; see verification.py); only then is the body parsed (400
naming the problem; see events.py). Accepted events are inserted into the `webhook_events`
inbox with ON CONFLICT DO NOTHING in one transaction with the delivery's activity row, and the
sender gets 202 (new) or 200 `duplicate: true` once that commit is durable. Handshakes: Event
Grid validation → 200 `{"validationResponse": code}` (authenticated like any delivery); AWS
destination confirmation → stored with its enableUrl, 200 (never confirmed from here).

Every delivery that names a known integration — accepted, duplicate or rejected — is an
activity row: direction `incoming`, type `webhook_received`, the status code answered,
redacted headers, error type/message for rejections. (An unknown integration id has no
organization to file a row under: it is logged instead.) Every delivery is also counted in
`sync_pipelines_webhook_events_received_total` (provider, outcome).

`GET /health` is the service's health (monitoring/service_health.py): 200 while healthy or
degraded, 503 when unhealthy; the per-integration list (tenant ids, errors) only for a
`Authorization: Bearer $SYNC_HEALTH_TOKEN`, the counts for anyone. `GET /metrics` is the
Prometheus exposition of every process on this host (observability/metrics.py) plus queue
depths counted in the store at scrape time.
"""

from __future__ import annotations

import functools
import hmac
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import ConfigError
from sync_pipelines.json_limits import DEFAULT_MAX_BODY_BYTES, MAX_BODY_ENV, MAX_BODY_SETTING
from sync_pipelines.monitoring.queue_depths import ProviderQueueDepth, queue_depths
from sync_pipelines.monitoring.service_health import (
    HealthOptions,
    ServiceHealth,
    check_service_health,
    integration_states,
    warm_up,
)
from sync_pipelines.monitoring.store_probe import describe_error, probe_for
from sync_pipelines.observability import metrics
from sync_pipelines.observability.activity import (
    ActivityRow,
    ActivityScope,
    activity_row,
    redact_row,
)
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.observability.redaction import (
    REDACTED,
    is_sensitive_key,
    redact_text,
    redact_url,
)
from sync_pipelines.providers.settings import ID_PATTERN
from sync_pipelines.store.activity import activity_values
from sync_pipelines.store.database import (
    DATABASE_URL_ENV,
    Store,
    ping,
    resolve_database_url,
)
from sync_pipelines.store.integrations import (
    Integration,
    find_integration_owner,
    list_enabled_integrations,
)
from sync_pipelines.store.migrations import ensure_migrated
from sync_pipelines.store.webhook_events import WebhookEvent, insert_delivery_activity, insert_event
from sync_pipelines.webhooks.admission import Admission
from sync_pipelines.webhooks.events import (
    Delivery,
    Handshake,
    InboxEvent,
    PayloadError,
    PayloadTooLarge,
    is_unauthenticated_handshake,
    read_delivery,
    supported_providers,
)
from sync_pipelines.webhooks.group_commit import DEFAULT_COMMITS_AT_ONCE, GroupCommit, InboxDelivery
from sync_pipelines.webhooks.header_deadline import header_timeout_s, protocol_with_deadline
from sync_pipelines.webhooks.observed_requests import ObservedRequests
from sync_pipelines.webhooks.verification import (
    SECRET_REF,
    STANDARD_WEBHOOKS,
    WebhookAuth,
    WebhookRejected,
    verify_shared_secret,
    verify_standard_webhook,
    webhook_auth_for,
)

WEBHOOK_RECEIVED = "webhook_received"  # activity type of every delivery
#: an oversized body is read and dropped up to this much, so the sender reads our 413 instead of
#: a connection reset; beyond it the connection is simply closed
DRAIN_LIMIT_BYTES = 8 << 20
HEALTH_TOKEN_ENV = "SYNC_HEALTH_TOKEN"
MAX_IN_FLIGHT_ENV = "SYNC_RECEIVER_MAX_IN_FLIGHT"
#: deliveries handled at once by one receiver process; more are answered 429 at once. A delivery
#: waiting for its group commit holds no thread and no connection, only its body: the limit
#: bounds the wait instead (about limit / rate: 256 at 700 events/s a process is 0.4 s)
DEFAULT_MAX_IN_FLIGHT = 256
WORKERS_ENV = "SYNC_RECEIVER_WORKERS"
#: store work of a process besides its group commits (integration lookups, rejections,
#: handshakes): threads at once, each with a pooled connection, so none waits for one
STORE_THREADS = 8
#: a body above this is verified and parsed on a worker thread, not on the event loop
INLINE_BODY_BYTES = 64 * 1024
#: what a 503 (store not reachable) tells the sender to wait, seconds
RETRY_AFTER_S = 5
#: how often a receiver whose store has not answered yet asks it again
STORE_RETRY_S = 2.0
#: the receiver's store and Dagster checks answer within this (its /health within 2 s)
STORE_PROBE_TIMEOUT_S = 1.5
#: /health, /metrics and store tries run on threads of their own, never queued behind
#: deliveries that wait on the store (those use the default limiter: 40 threads)
_SERVICE_THREADS = anyio.CapacityLimiter(4)
_STORE_THREADS = anyio.CapacityLimiter(STORE_THREADS)
_STORE_TRIES = anyio.CapacityLimiter(1)
_LOGGED_ID_CHARS = 140
_EVENT_IDS_LISTED = 50

_log = get_logger("webhooks.receiver")


@dataclass(frozen=True, slots=True)
class _Target:
    """An integration as the receiver needs it, resolved once per cache period."""

    integration: Integration
    auth: WebhookAuth | None
    config_error: str | None
    max_body_bytes: int


@dataclass(slots=True)
class _Reply:
    status: int
    body: dict[str, Any]
    request_id: str
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> JSONResponse:
        return JSONResponse(
            self.body,
            status_code=self.status,
            headers={"x-request-id": self.request_id, **self.headers},
        )


class WebhookReceiver:
    """The receiver's state: the store, the integration cache, the limits."""

    def __init__(
        self,
        store: Store,
        *,
        max_body_bytes: int | None = None,
        clock: Callable[[], float] = time.time,
        environ: Mapping[str, str] | None = None,
        cache_ttl_s: float = 5.0,
        store_ready: bool = True,
        max_in_flight: int | None = None,
        commits_at_once: int = DEFAULT_COMMITS_AT_ONCE,
    ) -> None:
        self.store = store
        self.commits: GroupCommit[_Reply] = GroupCommit(store, commits_at_once=commits_at_once)
        self.max_in_flight = max_in_flight or max_in_flight_from_env(environ)
        self.admission = Admission(self.max_in_flight)
        self.default_max_body = max_body_bytes or int(
            os.environ.get(MAX_BODY_ENV) or DEFAULT_MAX_BODY_BYTES
        )
        self.clock = clock
        self.environ = environ
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[float, _Target]] = {}
        self._cache_lock = threading.Lock()
        #: the store answered and is migrated; until then every delivery is a 503 (the sender
        #: retries) and the store is tried again at most every STORE_RETRY_S
        self._store_ready = threading.Event()
        if store_ready:
            self._store_ready.set()
        self._next_store_try = 0.0
        self._store_try_lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """Deliveries admitted and not answered yet (reading, verifying or waiting for a commit)."""
        return self.admission.in_flight

    # -- the endpoint ---------------------------------------------------------------------------

    async def receive(self, request: Request) -> Response:
        started = time.perf_counter()
        provider = request.path_params["provider"]
        integration_id = request.path_params["integration_id"]
        if not (ID_PATTERN.fullmatch(integration_id) and ID_PATTERN.fullmatch(provider)):
            # no integration can have this id (NUL, control characters, too long): answered
            # here, so junk never reaches the store, where it could read as a store fault
            return self._not_found(None, provider, request, started).response()
        # admission: beyond max_in_flight a delivery is answered 429 + Retry-After at once (the
        # sender throttles), never left to queue into a timeout. One event loop: no lock needed
        if not self.admission.enter():
            return _overloaded(
                _metric_provider(provider), self.max_in_flight, self.admission.retry_after_s()
            ).response()
        try:
            return await self._receive(request, started, provider, integration_id)
        finally:
            self.admission.leave()

    async def _receive(
        self, request: Request, started: float, provider: str, integration_id: str
    ) -> Response:
        if not self._store_ready.is_set() and not await anyio.to_thread.run_sync(
            self.try_store, limiter=_STORE_TRIES
        ):
            return _store_not_ready(_metric_provider(provider)).response()
        try:
            target = self._cached(integration_id) or await _on_store_thread(
                self._resolve, integration_id
            )
        except SQLAlchemyError as exc:
            return _store_unavailable(integration_id, _metric_provider(provider), exc).response()
        if target is None or not self._serves(target, provider):
            return (
                await _on_store_thread(self._not_found, target, provider, request, started)
            ).response()
        try:
            body = await _read_body(request, target.max_body_bytes)
        except WebhookRejected as rejected:
            reply = await _on_store_thread(self._reject, target, request, rejected, started, None)
            return reply.response()
        except ClientDisconnect:
            metrics.webhook_received(target.integration.provider, "client_disconnected")
            _log.info("webhook_sender_disconnected", integration_id=integration_id)
            return Response(status_code=400)
        # verification and parsing are a few microseconds for a usual body: on the event loop,
        # sparing each delivery two thread switches; a large body goes to a thread
        if len(body) <= INLINE_BODY_BYTES:
            read = self._read(target, request, body)
        else:
            read = await run_in_threadpool(self._read, target, request, body)
        if isinstance(read, WebhookRejected):
            reply = await _on_store_thread(self._reject, target, request, read, started, body)
        elif isinstance(read, Handshake):
            reply = await self._on_handshake_thread(target, request, read, body, started)
        else:
            reply = await self._store(target, request, read, body, started)
        return reply.response()

    def _read(
        self, target: _Target, request: Request, body: bytes
    ) -> list[InboxEvent] | Handshake | WebhookRejected:
        """The delivery verified and read: its events, a handshake, or why it is refused."""
        headers = _lower_headers(request)
        try:
            if target.config_error is not None:
                # 503: the sender keeps the delivery and retries once the operator fixes the config
                raise WebhookRejected(503, "config", target.config_error)
            signed_id = self._authenticate(target, headers, request, body)
            try:
                return read_delivery(
                    Delivery(
                        target.integration.provider,
                        body,
                        headers,
                        signed_id,
                        target.max_body_bytes,
                    )
                )
            except PayloadTooLarge as exc:
                raise WebhookRejected(413, "body_too_large", str(exc)) from None
            except PayloadError as exc:
                raise WebhookRejected(400, "malformed_payload", str(exc)) from None
        except WebhookRejected as rejected:
            return rejected

    async def _on_handshake_thread(
        self, target: _Target, request: Request, handshake: Handshake, body: bytes, started: float
    ) -> _Reply:
        try:
            return await _on_store_thread(
                self._handshake, target, request, handshake, body, started
            )
        except SQLAlchemyError as exc:
            return _store_unavailable(
                target.integration.integration_id, target.integration.provider, exc
            )

    def _authenticate(
        self, target: _Target, headers: Mapping[str, str], request: Request, body: bytes
    ) -> str | None:
        """Verify the delivery; returns the signed message id (Standard Webhooks) or None."""
        assert target.auth is not None
        if is_unauthenticated_handshake(target.integration.provider, headers):
            expected_arn = target.integration.settings.get("aws_destination_arn")
            if expected_arn and headers.get("x-amz-rules-engine-destination-arn") != expected_arn:
                raise WebhookRejected(
                    401, "unexpected_destination", "confirmation for another destination ARN"
                )
            return None
        if target.auth.scheme == STANDARD_WEBHOOKS:
            return verify_standard_webhook(
                target.auth.keys,
                headers,
                body,
                now=self.clock(),
                public_keys=target.auth.public_keys,
            )
        verify_shared_secret(target.auth, headers, request.query_params)
        return None

    def try_store(self) -> bool:
        """Whether the store is ready; if not known to be, ask it (at most every STORE_RETRY_S,
        within the health probe's short deadline), migrating it and checking the webhook
        integrations once it answers. Called from worker threads."""
        if self._store_ready.is_set():
            return True
        with self._store_try_lock:
            if self._store_ready.is_set():
                return True
            if time.monotonic() < self._next_store_try:
                return False
            self._next_store_try = time.monotonic() + STORE_RETRY_S
            try:
                probe_for(self.store, STORE_PROBE_TIMEOUT_S).run(ping)
                ensure_migrated(self.store)
            except Exception as exc:  # noqa: BLE001 - any failure: still not ready
                _log.warning("webhook_store_not_ready", error=describe_error(exc))
                return False
            self._store_ready.set()
        _log.info("webhook_store_ready", store=repr(self.store))
        for integration_id, problem in check_webhook_integrations(self.store, self.environ).items():
            _log.error("webhook_config_invalid", integration_id=integration_id, error=problem)
        return True

    # -- outcomes ---------------------------------------------------------------------------------

    async def _store(
        self,
        target: _Target,
        request: Request,
        events: list[InboxEvent],
        body: bytes,
        started: float,
    ) -> _Reply:
        """The delivery's events and activity row through the group commit: answered once the
        transaction that holds them is committed (202 new, 200 `duplicate: true`), 503 if not."""
        integ = target.integration
        request_id = events[0].event_id if len(events) == 1 else str(uuid.uuid4())
        # redacted once, for the event rows and the activity row
        headers = self._redacted_headers(target, request)
        now = utc_now()
        rows = [_inbox_row(integ, e, headers, request_id, now) for e in events]

        def settle(fresh: list[WebhookEvent]) -> tuple[ActivityRow, _Reply]:
            duplicate = not fresh
            status = 200 if duplicate else 202
            row = self._row(
                target,
                request,
                status,
                request_id,
                started,
                body,
                headers,
                metadata={
                    "event_ids": [e.event_id for e in events][:_EVENT_IDS_LISTED],
                    "events": len(events),
                    "new": len(fresh),
                    "duplicates": len(events) - len(fresh),
                    "duplicate": duplicate,
                    "event_types": sorted({e.event_type for e in events})[:10],
                },
            )
            answer = {
                "status": "duplicate" if duplicate else "accepted",
                "duplicate": duplicate,
                "events": len(events),
                "new": len(fresh),
                "request_id": request_id,
            }
            return row, _Reply(status, answer, request_id)

        try:
            reply = await self.commits.write(InboxDelivery(rows, settle))
        except SQLAlchemyError as exc:
            return _store_unavailable(integ.integration_id, integ.provider, exc)
        # counted, not logged: the activity row is the delivery's record
        new = reply.body["new"]
        metrics.webhook_received(integ.provider, "accepted", new)
        if new < len(events):
            metrics.webhook_received(integ.provider, "duplicate", len(events) - new)
        return reply

    def _handshake(
        self, target: _Target, request: Request, handshake: Handshake, body: bytes, started: float
    ) -> _Reply:
        integ = target.integration
        request_id = handshake.event.event_id if handshake.event else str(uuid.uuid4())
        metadata = {"handshake": handshake.kind, **handshake.metadata}
        headers = self._redacted_headers(target, request)
        with self.store.scoped(integ.organization_id).transaction() as conn:
            if handshake.event is not None:
                metadata["new"] = insert_event(
                    conn, _inbox_row(integ, handshake.event, headers, request_id, utc_now())
                )
            row = self._row(
                target, request, 200, request_id, started, body, headers, metadata=metadata
            )
            insert_delivery_activity(conn, activity_values(row))
        metrics.webhook_received(integ.provider, "handshake")
        _log.info(
            "webhook_handshake",
            integration_id=integ.integration_id,
            handshake=handshake.kind,
            request_id=request_id,
        )
        return _Reply(200, handshake.response, request_id)

    def _reject(
        self,
        target: _Target,
        request: Request,
        rejected: WebhookRejected,
        started: float,
        body: bytes | None,
    ) -> _Reply:
        request_id = str(uuid.uuid4())
        metadata: dict[str, Any] = {"reason": rejected.reason}
        claimed = request.headers.get("webhook-id")
        if claimed:  # unauthenticated: a clue for the operator, never a key
            metadata["claimed_webhook_id"] = claimed[:200]
        row = self._row(
            target,
            request,
            rejected.status,
            request_id,
            started,
            body,
            self._redacted_headers(target, request),
            metadata=metadata,
            error=(rejected.reason, str(rejected)),
        )
        try:
            with self.store.scoped(target.integration.organization_id).transaction() as conn:
                insert_delivery_activity(conn, activity_values(row))
        except SQLAlchemyError as exc:  # the rejection stands; only its record is lost
            _log.error("webhook_rejection_not_recorded", exc_info=exc)
        metrics.webhook_received(target.integration.provider, rejected.reason)
        _log.warning(
            "webhook_rejected",
            integration_id=target.integration.integration_id,
            status_code=rejected.status,
            reason=rejected.reason,
            request_id=request_id,
            error={"type": rejected.reason, "message": row.error_message},
        )
        return _Reply(
            rejected.status, {"error": rejected.reason, "detail": row.error_message}, request_id
        )

    def _not_found(
        self, target: _Target | None, provider: str, request: Request, started: float
    ) -> _Reply:
        """Unknown integration, another provider's, disabled, or a provider without webhooks:
        one answer for all, so the endpoint does not reveal which integrations exist."""
        if target is None:
            metrics.webhook_received(_metric_provider(provider), "not_found")
            _log.warning(
                "webhook_unknown_integration",
                # anyone can send any path: logged escaped and cut, never as raw bytes
                integration_id=_escaped(request.path_params["integration_id"]),
                provider=_escaped(provider),
            )
            return _Reply(
                404,
                {"error": "not_found", "detail": "no webhook endpoint at this path"},
                str(uuid.uuid4()),
            )
        integ = target.integration
        why = (
            "integration is disabled"
            if not integ.enabled
            else f"integration is a {integ.provider} integration, not {provider}"
            if integ.provider != provider
            else f"provider {provider} has no webhook receiver"
        )
        reply = self._reject(target, request, WebhookRejected(404, "not_found", why), started, None)
        reply.body["detail"] = "no webhook endpoint at this path"
        return reply

    # -- rows ---------------------------------------------------------------------------------------

    def _row(
        self,
        target: _Target,
        request: Request,
        status: int,
        request_id: str,
        started: float,
        body: bytes | None,
        headers: dict[str, str],
        *,
        metadata: dict[str, Any],
        error: tuple[str, str] | None = None,
    ) -> ActivityRow:
        """The delivery's activity row (observability.activity's one builder), redacted."""
        integ = target.integration
        row = activity_row(
            ActivityScope(integ.organization_id, integ.integration_id),
            WEBHOOK_RECEIVED,
            created_at=utc_now(),
            direction="incoming",
            status="failed" if error else "success",
            request_id=request_id,
            method=request.method,
            status_code=status,
            response_time_ms=round((time.perf_counter() - started) * 1000, 3),
            metadata={
                "provider": integ.provider,
                "body_bytes": None if body is None else len(body),
                **metadata,
            },
        )
        if error:
            row.error_type, row.error_message = error
        row.completed_at = row.created_at
        redact_row(row)
        # redacted already, by the rules for a URL and for headers: not a second time
        row.endpoint, row.request_headers = self._endpoint(target, request), headers
        return row

    def _redacted_headers(self, target: _Target, request: Request) -> dict[str, str]:
        """redaction.redact_headers' rule, with each header name judged once per process (the
        same dozen names arrive on every delivery), and a custom secret header name redacted too
        (it may look harmless)."""
        custom = target.auth.header if target.auth else None
        return {
            k: REDACTED
            if k == custom or _sensitive_header(k)
            else redact_text(v).replace("\x00", "")
            for k, v in _lower_headers(request).items()
        }

    def _endpoint(self, target: _Target, request: Request) -> str:
        url = request.scope["path"]
        if not request.scope.get("query_string"):
            return redact_text(url)  # what redact_url does to a URL without a query
        if request.url.query:
            secret_param = target.auth.query_param if target.auth else None
            pairs = [
                (k, REDACTED if k == secret_param else v)
                for k, v in request.query_params.multi_items()
            ]
            url += "?" + "&".join(f"{k}={v}" for k, v in pairs)
        return redact_url(url)

    # -- integrations -------------------------------------------------------------------------------

    def _cached(self, integration_id: str) -> _Target | None:
        entry = self._cache.get(integration_id)
        return entry[1] if entry and entry[0] > time.monotonic() else None

    def _resolve(self, integration_id: str) -> _Target | None:
        with self.store.connect() as conn:
            integration = find_integration_owner(conn, integration_id)
        if integration is None:
            return None  # not cached: random ids must not grow the cache
        target = self._target_for(integration)
        with self._cache_lock:
            self._cache[integration_id] = (time.monotonic() + self.cache_ttl_s, target)
        return target

    def _target_for(self, integration: Integration) -> _Target:
        auth, problem = None, None
        try:
            auth = webhook_auth_for(integration, self.environ)
        except ConfigError as exc:
            problem = str(exc)
            _log.error(
                "webhook_config_invalid", integration_id=integration.integration_id, error=problem
            )
        limit = integration.settings.get(MAX_BODY_SETTING) or self.default_max_body
        if not str(limit).isdigit() or int(limit) <= 0:
            problem = f"integration {integration.integration_id!r}: setting {MAX_BODY_SETTING} must be a positive integer"
            limit = self.default_max_body
        return _Target(integration, auth, problem, int(limit))

    def _serves(self, target: _Target, provider: str) -> bool:
        integ = target.integration
        return integ.enabled and integ.provider == provider and provider in supported_providers()


def _inbox_row(
    integ: Integration, event: InboxEvent, headers: dict[str, str], delivery_id: str, now: datetime
) -> WebhookEvent:
    return WebhookEvent(
        id=str(uuid.uuid4()),
        organization_id=integ.organization_id,
        integration_id=integ.integration_id,
        provider=integ.provider,
        event_id=event.event_id,
        event_type=event.event_type,
        external_id=event.external_id,
        payload=event.payload,
        headers=headers,
        delivery_id=delivery_id,
        received_at=now,
    )


async def _on_store_thread(func: Callable[..., Any], *args: Any) -> Any:
    """Store work besides the group commit, on a thread of the few that each have a pooled
    connection (STORE_THREADS): a burst of rejections waits here, not in the pool."""
    return await anyio.to_thread.run_sync(lambda: func(*args), limiter=_STORE_THREADS)


def _metric_provider(provider: str) -> str:
    """The provider label for a path segment anyone can send: only known providers, so junk
    paths cannot grow the metric's label set."""
    return provider if provider in supported_providers() else metrics.UNKNOWN


def _escaped(path_segment: str) -> str:
    """A path segment as a log may carry it: control and non-ASCII characters escaped, cut."""
    return path_segment[:_LOGGED_ID_CHARS].encode("unicode_escape").decode("ascii")


def max_in_flight_from_env(environ: Mapping[str, str] | None = None) -> int:
    raw = (os.environ if environ is None else environ).get(MAX_IN_FLIGHT_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_IN_FLIGHT
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{MAX_IN_FLIGHT_ENV} must be an integer >= 1, got {raw[:40]!r}")
    return int(raw)


def _overloaded(provider: str, limit: int, retry_after_s: int) -> _Reply:
    metrics.webhook_received(provider, "overloaded")
    return _Reply(
        429,
        {
            "error": "overloaded",
            "detail": f"{limit} deliveries are in progress; retry after {retry_after_s} s",
        },
        str(uuid.uuid4()),
        {"retry-after": str(retry_after_s)},
    )


def _store_not_ready(provider: str) -> _Reply:
    """The store has not been ready since the receiver started (it did not answer, or its schema
    is not up to date): 503, the sender retries."""
    metrics.webhook_received(provider, "store_unavailable")
    return _Reply(
        503,
        {
            "error": "store_unavailable",
            "detail": "the store is not ready yet (not reachable, or its schema not up to date: "
            "see /health); retry later",
        },
        str(uuid.uuid4()),
        {"retry-after": str(RETRY_AFTER_S)},
    )


def _store_unavailable(integration_id: str, provider: str, exc: Exception) -> _Reply:
    """The store failed: 503, so the sender keeps the delivery and retries."""
    metrics.webhook_received(provider, "store_unavailable")
    _log.error("webhook_store_failed", integration_id=integration_id, exc_info=exc)
    detail = "could not store the delivery; retry later"
    return _Reply(
        503,
        {"error": "store_unavailable", "detail": detail},
        str(uuid.uuid4()),
        {"retry-after": str(RETRY_AFTER_S)},
    )


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it exceeds `limit` (whatever Content-Length says)."""
    declared = request.headers.get("content-length", "")
    stream = request.stream()
    if declared.isdigit() and int(declared) > limit:
        if int(declared) <= DRAIN_LIMIT_BYTES:
            await _drain(stream, DRAIN_LIMIT_BYTES)
        raise WebhookRejected(
            413, "body_too_large", f"body of {declared} bytes exceeds the limit of {limit} bytes"
        )
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            await _drain(stream, DRAIN_LIMIT_BYTES - size)
            raise WebhookRejected(413, "body_too_large", f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(stream: Any, budget: int) -> None:
    async for chunk in stream:
        budget -= len(chunk)
        if budget <= 0:
            return


@functools.lru_cache(maxsize=1024)  # bounded: header names are the sender's choice
def _sensitive_header(name: str) -> bool:
    return is_sensitive_key(name)


def _lower_headers(request: Request) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in request.headers.items():
        headers.setdefault(key.lower(), value)  # the first of repeated headers
    return headers


class ServiceEndpoints:
    """`GET /health` and `GET /metrics` of the receiver's process."""

    def __init__(
        self,
        store: Store,
        health: HealthOptions | None,
        environ: Mapping[str, str] | None,
        try_store: Callable[[], bool] = lambda: True,
    ) -> None:
        self.store = store
        self.health_options = health or HealthOptions.from_env(
            environ,
            store_timeout_s=STORE_PROBE_TIMEOUT_S,
            dagster_timeout_s=STORE_PROBE_TIMEOUT_S,
        )
        self._try_store = try_store
        self._token = (os.environ if environ is None else environ).get(HEALTH_TOKEN_ENV) or None
        self._gauges = metrics.StoreGaugeCollector(self._queue_depths)
        self._health_gauges = metrics.IntegrationHealthCollector(self._integration_states)

    async def serve_health(self, request: Request) -> Response:
        report = await anyio.to_thread.run_sync(self._health, limiter=_SERVICE_THREADS)
        body = report.as_json(with_integrations=self._may_see_integrations(request))
        headers = {"cache-control": "no-store"}
        if report.http_status == 503:
            headers["retry-after"] = str(RETRY_AFTER_S)
        return Response(
            json.dumps(body, default=str),
            status_code=report.http_status,
            media_type="application/json",
            headers=headers,
        )

    def _health(self) -> ServiceHealth:
        self._try_store()  # a store back since the start is migrated before it is judged
        return check_service_health(self.store, self.health_options)

    async def serve_metrics(self, request: Request) -> Response:
        registry = metrics.scrape_registry(self._gauges, self._health_gauges)
        body, headers = await anyio.to_thread.run_sync(
            lambda: metrics.render(
                registry, request.headers.get("accept"), request.headers.get("accept-encoding")
            ),
            limiter=_SERVICE_THREADS,
        )
        return Response(body, headers=headers)

    def _may_see_integrations(self, request: Request) -> bool:
        """The receiver faces the internet: tenants' integration ids and errors only for a
        caller holding the health token (none configured: nobody)."""
        if self._token is None:
            return False
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credential.strip().encode(), self._token.encode()
        )

    def _integration_states(self) -> list[dict[str, Any]]:
        # every organization's enabled integrations, by the health model, within its budget
        options = self.health_options
        probe = probe_for(self.store, options.store_timeout_s)
        budget_s = options.integrations_timeout_s
        return probe.run(
            lambda conn: integration_states(conn, None, now=utc_now(), budget_s=budget_s).results,
            timeout_s=budget_s + options.store_timeout_s,
        )

    def _queue_depths(self) -> list[ProviderQueueDepth]:
        # a system-level count across tenants, labelled by provider only
        probe = probe_for(self.store, self.health_options.store_timeout_s)
        return probe.run(lambda conn: queue_depths(conn, now=utc_now()))


def create_receiver_app(
    store: Store, *, health: HealthOptions | None = None, **options: Any
) -> Starlette:
    """The receiver as an ASGI app (options: max_body_bytes, clock, environ, cache_ttl_s;
    `health`: what /health checks, default from the environment)."""
    receiver = WebhookReceiver(store, **options)
    service = ServiceEndpoints(store, health, options.get("environ"), receiver.try_store)
    app = Starlette(
        routes=[
            Route("/webhooks/{provider}/{integration_id}", receiver.receive, methods=["POST"]),
            Route("/health", service.serve_health, methods=["GET"]),
            Route("/metrics", service.serve_metrics, methods=["GET"]),
            # nothing else: the operator console has its own listener (console/server.py)
        ],
        middleware=[Middleware(ObservedRequests)],  # spans and Sentry reports, when configured
    )
    app.state.receiver = receiver
    app.state.service = service
    return app


def check_webhook_integrations(
    store: Store, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Config errors of every enabled integration that has a webhook secret (checked at start-up)."""
    problems: dict[str, str] = {}
    with store.connect() as conn:
        integrations = list_enabled_integrations(conn)
    for integration in integrations:
        if SECRET_REF in integration.secret_refs and integration.provider in supported_providers():
            try:
                webhook_auth_for(integration, environ)
            except ConfigError as exc:
                problems[integration.integration_id] = str(exc)
    return problems


def run_receiver(
    host: str = "127.0.0.1",
    port: int = 8090,
    *,
    database_url: str | None = None,
    log_level: str = "info",
) -> None:
    """Serve the receiver in the foreground with uvicorn (the `sync-pipelines receiver` command):
    `$SYNC_RECEIVER_WORKERS` processes (default: one per core) on one listening socket, each
    with its own event loop, group commit and store pool; /metrics merges them all."""
    import uvicorn

    from sync_pipelines.observability.logging import configure_logging

    configure_logging()
    # the settings first: a bad one stops here, in one line, before any worker starts
    max_in_flight_from_env()
    head_timeout_s = header_timeout_s()
    workers = workers_from_env()
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": None,
        "access_log": False,
        "lifespan": "off",
        "log_level": log_level,
        "timeout_graceful_shutdown": 5,
    }
    _log.info(
        "webhook_receiver_starting",
        host=host,
        port=port,
        workers=workers,
        store=redact_url(resolve_database_url(database_url)),
        metrics_dir=str(metrics.MULTIPROC_DIR) if metrics.MULTIPROCESS else None,
    )
    if workers == 1:
        app = _serving_app(database_url)
        uvicorn.run(app, http=protocol_with_deadline(head_timeout_s), **options)  # slowloris
        return
    # each worker process builds its own app (receiver_worker_app) from the environment
    os.environ[DATABASE_URL_ENV] = resolve_database_url(database_url)
    uvicorn.run(
        f"{__name__}:receiver_worker_app",
        factory=True,
        workers=workers,
        http="sync_pipelines.webhooks.header_deadline:ReceiverProtocol",
        **options,
    )


def receiver_worker_app() -> Starlette:
    """The app of one worker process of `run_receiver` (uvicorn calls it in the process)."""
    from sync_pipelines.observability.logging import configure_logging

    configure_logging()
    return _serving_app(None)


def _serving_app(database_url: str | None) -> Starlette:
    """The receiver app of a serving process, with its own store pool: a connection for each of
    its group commits and store threads, none opened and closed per request (an overflow
    connection per request tripled Postgres' CPU per event). Store waits are bounded (10 s),
    then the sender gets a 503 and retries."""
    store = Store(
        database_url,
        pool_size=DEFAULT_COMMITS_AT_ONCE + STORE_THREADS,
        max_overflow=0,
        statement_timeout_s=10,
        pool_timeout_s=10,
    )
    app = create_receiver_app(store, store_ready=False, max_in_flight=max_in_flight_from_env())
    if not app.state.receiver.try_store():  # serve anyway: 503 + Retry-After until it answers
        _log.error(
            "webhook_store_unreachable_at_start",
            store=repr(store),
            note="webhooks and /health answer 503 until the store answers; no restart needed",
        )
    warm_up(app.state.service.health_options)
    return app


def workers_from_env(environ: Mapping[str, str] | None = None) -> int:
    """Receiver processes: `$SYNC_RECEIVER_WORKERS`, default one per core this process may use."""
    raw = (os.environ if environ is None else environ).get(WORKERS_ENV, "").strip()
    if not raw:
        return max(1, len(os.sched_getaffinity(0)))
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{WORKERS_ENV} must be an integer >= 1, got {raw[:40]!r}")
    return int(raw)
