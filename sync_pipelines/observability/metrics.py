"""Prometheus metrics: the instruments every layer records into, and the `/metrics` exposition.

Syncs run in Dagster run-worker processes, webhooks arrive in the receiver's: a counter must
add up across processes on one host. That is prometheus-client's multiprocess mode: each
process writes its values to mmap files in `PROMETHEUS_MULTIPROC_DIR`, and `/metrics` merges
every file there (`MultiProcessCollector`). The library picks the mode when it is first
imported, so this module sets the directory before importing it: `$PROMETHEUS_MULTIPROC_DIR`
when set, else `<SYNC_HOME>/prometheus_multiproc` (created). One directory per host, on local
disk; wipe it when the host's services start together (the library's rule: files of processes
gone keep counting until then). Beyond one host each receiver exposes its own host's processes
and Prometheus aggregates; nothing here merges hosts.

Labels are bounded sets (provider, stream, operation, status class, outcome), never tenant or
device ids: per-integration figures are the health report's and the alert rules' job. Every
recording function swallows its own failures: a metric must never fail a sync.
"""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sync_pipelines.errors import (
    AUTH,
    CONFIG,
    CONFLICT,
    PERMANENT,
    RATE_LIMITED,
    TRANSIENT,
    VALIDATION,
)
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.store.database import default_sqlite_path
from sync_pipelines.store.sync_state import FAILED_SYNC_STATUSES, GOOD_SYNC_STATUSES

if TYPE_CHECKING:
    from sync_pipelines.monitoring.queue_depths import ProviderQueueDepth

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
MULTIPROC_SUBDIR = "prometheus_multiproc"

_log = get_logger("metrics")


def default_multiproc_dir() -> Path:
    """`<SYNC_HOME>/prometheus_multiproc`: next to the embedded store, one per host."""
    return default_sqlite_path().parent / MULTIPROC_SUBDIR


def _prepare_multiproc_dir() -> Path | None:
    """Point prometheus-client at the shared directory before it is imported (it decides
    single- or multi-process mode once, at import). None: single-process mode."""
    configured = os.environ.get(MULTIPROC_DIR_ENV)
    path = Path(configured) if configured else default_multiproc_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if configured:  # the operator asked for it: the library would fail on every write
            raise OSError(
                f"{MULTIPROC_DIR_ENV}={configured!r} is not a usable directory: {exc}"
            ) from exc
        _log.warning("metrics_multiprocess_dir_unusable", path=str(path), error=str(exc))
        return None
    os.environ[MULTIPROC_DIR_ENV] = str(path)
    return path


MULTIPROC_DIR = _prepare_multiproc_dir()

# Imported only now: see `_prepare_multiproc_dir`.
from prometheus_client import (  # noqa: E402
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
)
from prometheus_client import values as _values  # noqa: E402
from prometheus_client.exposition import choose_encoder, gzip_accepted  # noqa: E402
from prometheus_client.metrics_core import GaugeMetricFamily, Metric  # noqa: E402

#: False when something imported prometheus_client before this module could set the directory
#: (then `/metrics` shows this process's own values only)
MULTIPROCESS = bool(getattr(_values.ValueClass, "_multiprocess", False))

UNKNOWN = "unknown"

# -- instruments (prometheus-client adds `_total` to counter names) -----------------------------

SYNCS = Counter(
    "sync_pipelines_syncs",
    "Syncs finished (one per sync-log row), by provider, stream and status (success, partial, failed).",
    ["provider", "stream", "status"],
)
SYNC_DURATION = Histogram(
    "sync_pipelines_sync_duration_seconds",
    "Duration of finished syncs, whatever their status.",
    ["provider", "stream"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
LAST_SUCCESSFUL_SYNC = Gauge(
    "sync_pipelines_last_successful_sync_timestamp_seconds",
    "Unix time of the latest sync that stored its data (success or partial).",
    ["provider", "stream"],
    multiprocess_mode="max",  # the newest across processes; survives the process that set it
)
PROVIDER_REQUESTS = Counter(
    "sync_pipelines_provider_requests",
    "Provider call attempts (each retry counts). operation: HTTP method, AWS API operation or "
    "MQTT packet; status_class: 2xx/3xx/4xx/5xx, or for MQTT ok/refused; error = no answer.",
    ["provider", "operation", "status_class"],
)
PROVIDER_REQUEST_DURATION = Histogram(
    "sync_pipelines_provider_request_duration_seconds",
    "Duration of provider call attempts, until the whole answer was read.",
    ["provider", "operation", "status_class"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
PROVIDER_ERRORS = Counter(
    "sync_pipelines_provider_errors",
    "Failed provider call attempts (retried or final), by error type (the error taxonomy's category).",
    ["provider", "error_type"],
)
DEVICES_DELETED = Counter(
    "sync_pipelines_devices_deleted",
    "Devices soft-deleted, by provider and source: scan (missing from a complete inventory scan), "
    "event (a provider's deletion event) or confirmed (held by the mass-deletion guard, then "
    "confirmed by an operator).",
    ["provider", "source"],
)
DELETION_GUARD_TRIPS = Counter(
    "sync_pipelines_deletion_guard_trips",
    "Complete inventory scans whose deletions the mass-deletion guard held.",
    ["provider"],
)
WEBHOOK_EVENTS_RECEIVED = Counter(
    "sync_pipelines_webhook_events_received",
    "Webhook deliveries: events accepted or duplicate (one per event of a batch); handshakes and "
    "rejections (outcome = the reason, e.g. bad_secret, not_found) one per delivery.",
    ["provider", "outcome"],
)
WEBHOOK_EVENTS_PROCESSED = Counter(
    "sync_pipelines_webhook_events_processed",
    "Inbox events handled by processing runs: applied, ignored (nothing to apply) or failed (dead-lettered).",
    ["provider", "status"],
)
WEBHOOK_PROCESSING_DELAY = Histogram(
    "sync_pipelines_webhook_processing_delay_seconds",
    "From an event's receipt to its processing.",
    ["provider"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 21600),
)

#: every instrument above: each is in every scrape, with or without series (`_EveryFamily`)
INSTRUMENTS = (
    SYNCS,
    SYNC_DURATION,
    LAST_SUCCESSFUL_SYNC,
    PROVIDER_REQUESTS,
    PROVIDER_REQUEST_DURATION,
    PROVIDER_ERRORS,
    DEVICES_DELETED,
    DELETION_GUARD_TRIPS,
    WEBHOOK_EVENTS_RECEIVED,
    WEBHOOK_EVENTS_PROCESSED,
    WEBHOOK_PROCESSING_DELAY,
)

# -- the label values known before anything happens ----------------------------------------------
# A counter's series appears with its first event, so `rate()` and `absent()` would see nothing on a
# healthy system that has not failed yet: `_known_series` creates these at zero. Only values known
# in advance: providers (providers/registry.py), streams, the taxonomy's categories and the
# outcomes the code records. Operations and status classes are open-ended, and a timestamp of 0
# would claim a sync in 1970: those families are exported without series until their first value.

PROVIDERS = ("aws_iot", "azure_iot", "golioth", "mqtt")
SYNC_STREAMS = (
    "devices",
    "device_states",
    "desired_exports",
    "telemetry",
    "webhook_events",
    "dead_letter_replay",
)
#: every status a sync ends with (abandoned: closed for a dead process; fenced: a stale writer)
SYNC_STATUSES = (*GOOD_SYNC_STATUSES, *FAILED_SYNC_STATUSES)
PROVIDER_ERROR_TYPES = (AUTH, RATE_LIMITED, TRANSIENT, PERMANENT, VALIDATION, CONFLICT, CONFIG)
DELETION_SOURCES = ("scan", "event", "confirmed")
#: the healthy outcomes; rejections (bad_secret, not_found ...) appear when they happen
WEBHOOK_RECEIVED_OUTCOMES = ("accepted", "duplicate")
WEBHOOK_PROCESSED_STATUSES = ("applied", "ignored", "failed")

# Computed at scrape time from the store (see StoreGaugeCollector), not recorded by processes.
STORE_UP = "sync_pipelines_store_up"
INBOX_BACKLOG = "sync_pipelines_webhook_inbox_backlog"
INBOX_OLDEST_AGE = "sync_pipelines_webhook_inbox_oldest_pending_age_seconds"
DEAD_LETTERS = "sync_pipelines_dead_letters"
INTEGRATION_HEALTH = "sync_pipelines_integration_health"
INTEGRATIONS_BY_HEALTH = "sync_pipelines_integrations_by_health"


# -- recording ----------------------------------------------------------------------------------


_failing: set[str] = set()  # metrics whose failure was logged already (once per process)


def _safely(what: str, record: Callable[[], None]) -> None:
    try:
        record()
    except Exception as exc:  # noqa: BLE001 - metrics are best effort, the work is not
        if what not in _failing:
            _failing.add(what)
            _log.warning("metric_not_recorded", metric=what, error=f"{type(exc).__name__}: {exc}")


def http_status_class(status_code: int | None) -> str:
    """`2xx`…`5xx`; `error` when there was no answer (timeout, refused, dropped)."""
    return f"{status_code // 100}xx" if status_code else "error"


class ProviderCallMetrics:
    """One client's call metrics, its provider fixed: label children are bound once per
    (operation, status class) and reused, so an attempt costs a dict lookup and three writes."""

    def __init__(self, provider: str | None) -> None:
        self.provider = provider or UNKNOWN
        self._calls: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._errors: dict[str, Any] = {}

    def attempt(
        self, operation: str, status_class: str, duration_s: float | None, error_type: str | None
    ) -> None:
        """One finished attempt; `error_type` when it failed (the taxonomy category)."""

        def record() -> None:
            key = (operation or UNKNOWN, status_class)
            children = self._calls.get(key)
            if children is None:
                labels = (self.provider, *key)
                children = self._calls[key] = (
                    PROVIDER_REQUESTS.labels(*labels),
                    PROVIDER_REQUEST_DURATION.labels(*labels),
                )
            children[0].inc()
            if duration_s is not None:
                children[1].observe(duration_s)
            if error_type:
                error = self._errors.get(error_type)
                if error is None:
                    error = self._errors[error_type] = PROVIDER_ERRORS.labels(
                        self.provider, error_type
                    )
                error.inc()

        _safely("provider_requests", record)


def sync_finished(provider: str, stream: str, status: str, duration_s: float) -> None:
    def record() -> None:
        SYNCS.labels(provider, stream, status).inc()
        SYNC_DURATION.labels(provider, stream).observe(duration_s)
        if status in GOOD_SYNC_STATUSES:  # stored its data, as freshness counts it
            LAST_SUCCESSFUL_SYNC.labels(provider, stream).set(time.time())

    _safely("syncs", record)


def devices_deleted(provider: str, source: str, count: int) -> None:
    if count > 0:
        _safely("devices_deleted", lambda: DEVICES_DELETED.labels(provider, source).inc(count))


def deletion_guard_tripped(provider: str) -> None:
    _safely("deletion_guard_trips", lambda: DELETION_GUARD_TRIPS.labels(provider).inc())


def webhook_received(provider: str, outcome: str, events: int = 1) -> None:
    if events > 0:
        _safely(
            "webhook_events_received",
            lambda: WEBHOOK_EVENTS_RECEIVED.labels(provider, outcome).inc(events),
        )


def webhook_processed(provider: str, status: str, delay_s: float | None) -> None:
    def record() -> None:
        WEBHOOK_EVENTS_PROCESSED.labels(provider, status).inc()
        if delay_s is not None:
            WEBHOOK_PROCESSING_DELAY.labels(provider).observe(max(0.0, delay_s))

    _safely("webhook_events_processed", record)


# -- exposition -----------------------------------------------------------------------------------


class StoreGaugeCollector:
    """Queue depths read from the store at scrape time (cheap grouped counts), so they are right
    whichever process changed the rows. `read` returns one row per provider and is expected to
    bound its own time; when it fails, `sync_pipelines_store_up` is 0 and the depths are absent."""

    def __init__(self, read: Callable[[], Sequence[ProviderQueueDepth]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(STORE_UP, "1 when the store answered this scrape's count queries.")
        try:
            depths = self._read()
        except Exception as exc:  # noqa: BLE001 - a scrape must answer while the store is down
            _log.warning("metrics_store_unavailable", error=type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        backlog = GaugeMetricFamily(
            INBOX_BACKLOG,
            "Webhook inbox events not yet processed (pending + processing).",
            labels=["provider"],
        )
        oldest = GaugeMetricFamily(
            INBOX_OLDEST_AGE, "Age of the oldest unprocessed webhook event.", labels=["provider"]
        )
        letters = GaugeMetricFamily(
            DEAD_LETTERS,
            "Dead letters by status (pending and retrying are open; quarantined wait for an operator).",
            labels=["provider", "status"],
        )
        listed = {depth.provider for depth in depths}
        for depth in [*depths, *(_empty_depth(p) for p in PROVIDERS if p not in listed)]:
            backlog.add_metric([depth.provider], depth.inbox_pending)
            if depth.inbox_oldest_age_s is not None:
                oldest.add_metric([depth.provider], depth.inbox_oldest_age_s)
            for status, count in sorted(depth.dead_letters.items()):
                letters.add_metric([depth.provider, status], count)
        yield from (backlog, oldest, letters)


class IntegrationHealthCollector:
    """The health model's verdict (monitoring/health.py) on each enabled integration, read at
    scrape time: `sync_pipelines_integration_health` is 1 on the integration's state and 0 on the
    other four (a change of state is a change of value, not a new series), and
    `sync_pipelines_integrations_by_health` counts them per state. Judging reads ~10 queries per
    integration, so one answer serves the scrapes of `ttl_s`; `read` bounds its own time and
    returns the integrations' health as JSON (service_health.integration_states)."""

    def __init__(
        self,
        read: Callable[[], Sequence[dict[str, Any]]],
        *,
        ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read, self._ttl_s, self._clock = read, ttl_s, clock
        self._answer: tuple[float, Sequence[dict[str, Any]]] | None = None

    def collect(self) -> Iterable[Metric]:
        from sync_pipelines.monitoring.health import STATES  # reads the store: not at import

        per_integration = GaugeMetricFamily(
            INTEGRATION_HEALTH,
            "1 on the integration's health state (healthy, unknown, warning, degraded, "
            "unhealthy), 0 on the others; its reasons are in /health and the console.",
            labels=["provider", "integration_id", "state"],
        )
        by_state = GaugeMetricFamily(
            INTEGRATIONS_BY_HEALTH,
            "Integrations per health state (a disabled one is unknown, one its shape drift "
            "policy paused is unhealthy).",
            labels=["state"],
        )
        try:
            results = self._current()
        except Exception as exc:  # noqa: BLE001 - a scrape must answer while the store is down
            _log.warning("metrics_health_unavailable", error=type(exc).__name__)
            yield from (per_integration, by_state)  # named, without samples: absent() sees it
            return
        for entry in results:
            for state in STATES:
                per_integration.add_metric(
                    [entry["provider"], entry["integration_id"], state],
                    1 if entry["state"] == state else 0,
                )
        for state in STATES:
            by_state.add_metric([state], sum(1 for e in results if e["state"] == state))
        yield from (per_integration, by_state)

    def _current(self) -> Sequence[dict[str, Any]]:
        now = self._clock()
        if self._answer is None or now - self._answer[0] >= self._ttl_s:
            self._answer = (now, self._read())
        return self._answer[1]


def _empty_depth(provider: str) -> ProviderQueueDepth:
    """Zero depths for a provider the store has no rows of (imported late: monitoring reads the
    store, which this module must not load at import)."""
    from sync_pipelines.monitoring.queue_depths import ProviderQueueDepth

    return ProviderQueueDepth(provider)


_known_series_created = False


def _known_series() -> None:
    """Create the known series at zero in this process (once): in multiprocess mode they land in
    its files, so the merged scrape has them however little has happened on the host yet."""
    global _known_series_created
    if _known_series_created:
        return
    _known_series_created = True

    def create() -> None:
        for provider in PROVIDERS:
            for stream in SYNC_STREAMS:
                SYNC_DURATION.labels(provider, stream)
                for status in SYNC_STATUSES:
                    SYNCS.labels(provider, stream, status)
            for error_type in PROVIDER_ERROR_TYPES:
                PROVIDER_ERRORS.labels(provider, error_type)
            for source in DELETION_SOURCES:
                DEVICES_DELETED.labels(provider, source)
            DELETION_GUARD_TRIPS.labels(provider)
            for outcome in WEBHOOK_RECEIVED_OUTCOMES:
                WEBHOOK_EVENTS_RECEIVED.labels(provider, outcome)
            for status in WEBHOOK_PROCESSED_STATUSES:
                WEBHOOK_EVENTS_PROCESSED.labels(provider, status)
            WEBHOOK_PROCESSING_DELAY.labels(provider)

    _safely("known_series", create)


class _EveryFamily:
    """The instruments' values (every process's files merged in multiprocess mode, else this
    process's own), plus each instrument not among them as a family without samples, so a scrape
    always names every family it documents."""

    def __init__(self) -> None:
        self._values: Any = multiprocess.MultiProcessCollector(None) if MULTIPROCESS else REGISTRY

    def collect(self) -> Iterable[Metric]:
        seen = set()
        for family in self._values.collect():
            seen.add(family.name)
            yield family
        for instrument in INSTRUMENTS:
            for family in instrument.describe():
                if family.name not in seen:
                    yield family


def scrape_registry(*collectors: Any) -> CollectorRegistry:
    """A registry for one scrape: every process's files merged (the library's multiprocess
    collector) with the known series at zero and every instrument's family, plus `collectors`."""
    _known_series()
    registry = CollectorRegistry()
    registry.register(_EveryFamily())
    for collector in collectors:
        registry.register(collector)
    return registry


def render(
    registry: CollectorRegistry, accept: str | None, accept_encoding: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """The exposition in the format the scraper asked for (Prometheus text or OpenMetrics),
    gzipped when accepted; returns the body and the response headers."""
    encoder, content_type = choose_encoder(accept or "")
    body = encoder(registry)
    headers = {"content-type": content_type}
    if gzip_accepted(accept_encoding or ""):
        body = gzip.compress(body)
        headers["content-encoding"] = "gzip"
    return body, headers
