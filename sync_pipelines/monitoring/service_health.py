"""The service's health: the store, the Dagster instance and its daemons, each enabled
integration, the webhook inbox, the dead letters and — once `sync_pipelines.alerts` provides
`alert_path_health(conn, now)` — the alert path. `sync-pipelines health` and the receiver's
`GET /health` both report through here.

Each part is healthy / warning / degraded / unhealthy, or unknown (no evidence yet: an
integration that never synced, no DAGSTER_HOME), which is shown but does not move the overall
status. Integrations are judged by the one health model (`monitoring/health.py`); the inbox and
dead-letter parts are the worst of the integrations' own inbox and dead-letter signals, so they
use each integration's thresholds and say what the integrations' rows say. The
overall status is the worst part, with one rule: in the system-wide check (no organization,
which is what the endpoint reports) the workload parts — integrations, inbox backlog, dead
letters — count as degraded at most. One tenant's expired key or a processing backlog is not
the service failing, and a load balancer must not pull the receiver over it; scoped to an
organization they count in full. HTTP: 200 while healthy or degraded (still serving), 503 when
unhealthy.

Nothing here may hang: store work runs through a `StoreProbe` (short timeouts, a deadline) and
the Dagster check in a thread with its own deadline, concurrently with the store's.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from sync_pipelines.checks.dead_letters import DEAD_LETTERS as DEAD_LETTER_SIGNAL
from sync_pipelines.clock import utc_now
from sync_pipelines.monitoring import health as health_model
from sync_pipelines.monitoring.health import (
    DEGRADED,
    HEALTHY,
    STATES,
    UNHEALTHY,
    UNKNOWN,
    integration_health,
    worst,
)
from sync_pipelines.monitoring.queue_depths import ProviderQueueDepth, queue_depths, totals
from sync_pipelines.monitoring.store_probe import (
    BoundedCalls,
    ProbeTimeout,
    StoreProbe,
    describe_error,
    probe_for,
    wait,
)
from sync_pipelines.monitoring.thresholds import Thresholds
from sync_pipelines.observability.redaction import redact
from sync_pipelines.store.database import Store, ping, use_organization
from sync_pipelines.store.integrations import (
    list_every_integration,
    list_integrations,
    organization_exists,
)
from sync_pipelines.store.migrations import applied_versions, migrations_for

STORE, DAGSTER, INTEGRATIONS, WEBHOOK_INBOX, DEAD_LETTERS, ALERTING = (
    "store",
    "dagster",
    "integrations",
    "webhook_inbox",
    "dead_letters",
    "alerting",
)
ALERTS_MODULE = "sync_pipelines.alerts"
REQUIRE_DAEMON_ENV = "SYNC_HEALTH_REQUIRE_DAEMON"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}


class UnknownOrganization(ValueError):
    """The organization asked about does not exist in the store."""


@dataclass(frozen=True, slots=True)
class HealthOptions:
    #: the Dagster instance to check (None: not checked, reported unknown)
    dagster_home: str | None = None
    #: a daemon that is not running is unhealthy (else degraded: e.g. a receiver-only host)
    require_daemon: bool = False
    store_timeout_s: float = 2.0
    dagster_timeout_s: float = 5.0
    #: for all integrations' checks together; those not reached in time are "not checked"
    integrations_timeout_s: float = 10.0
    alerts_module: str = ALERTS_MODULE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> HealthOptions:
        """`DAGSTER_HOME` and `SYNC_HEALTH_REQUIRE_DAEMON` (1/true/yes/on or 0/false/no/off)."""
        env = os.environ if environ is None else environ
        raw = env.get(REQUIRE_DAEMON_ENV, "").strip().lower()
        if raw not in _TRUE | _FALSE:
            raise ValueError(
                f"{REQUIRE_DAEMON_ENV}={env[REQUIRE_DAEMON_ENV]!r}: expected 1/true/yes/on or 0/false/no/off"
            )
        options = cls(dagster_home=env.get("DAGSTER_HOME") or None, require_daemon=raw in _TRUE)
        return replace(options, **overrides)


@dataclass(frozen=True, slots=True)
class Check:
    """One part of the service's health."""

    name: str
    status: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    #: a workload part (integrations, backlogs): at most degraded in the system-wide check
    workload: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "detail": self.detail, **self.data}


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    status: str
    checked_at: datetime
    organization_id: str | None
    checks: list[Check]
    integrations: list[dict[str, Any]]
    duration_ms: float

    @property
    def http_status(self) -> int:
        return 503 if self.status == UNHEALTHY else 200

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def as_json(self, *, with_integrations: bool = True) -> dict[str, Any]:
        """The report, redacted; `with_integrations=False` leaves out the per-integration list
        (tenant ids and errors) and keeps the counts."""
        body: dict[str, Any] = {
            "status": self.status,
            "checked_at": self.checked_at.isoformat(),
            "organization_id": self.organization_id,
            "duration_ms": round(self.duration_ms, 1),
            "checks": {c.name: c.as_json() for c in self.checks},
        }
        if with_integrations:
            body["integrations"] = self.integrations
        return redact(body)


def overall_status(checks: list[Check], *, organization_id: str | None) -> str:
    counted = []
    for check in checks:
        if check.status == UNKNOWN:
            continue
        if check.workload and organization_id is None and check.status == UNHEALTHY:
            counted.append(DEGRADED)
        else:
            counted.append(check.status)
    return worst(counted)


def check_service_health(
    store: Store,
    options: HealthOptions | None = None,
    *,
    organization_id: str | None = None,
    now: datetime | None = None,
) -> ServiceHealth:
    """Check every part; `organization_id` scopes integrations and backlogs to one tenant
    (raises UnknownOrganization when the store answers and has no such organization).
    Without it, integrations and backlogs are a system-level scan across tenants."""
    options = options or HealthOptions.from_env()
    started = time.perf_counter()
    now = now or utc_now()
    dagster = _DAGSTER_CALLS.start(
        lambda: _check_dagster(options.dagster_home, options.require_daemon)
    )
    probe = probe_for(store, options.store_timeout_s)
    store_check = _check_store(probe, store)
    checks = [store_check]
    integrations: list[dict[str, Any]] = []
    if store_check.status == UNHEALTHY:
        checks += [
            Check(name, UNKNOWN, "not checked: the store is unavailable", workload=True)
            for name in (INTEGRATIONS, WEBHOOK_INBOX, DEAD_LETTERS)
        ]
    else:
        workload, integrations = _check_workload(probe, options, organization_id, now)
        checks += workload
    checks.insert(1, _dagster_outcome(dagster, options))
    alerting = _check_alerting(probe, options, now, store_up=store_check.status != UNHEALTHY)
    if alerting is not None:
        checks.append(alerting)
    return ServiceHealth(
        status=overall_status(checks, organization_id=organization_id),
        checked_at=now,
        organization_id=organization_id,
        checks=checks,
        integrations=integrations,
        duration_ms=(time.perf_counter() - started) * 1000,
    )


# -- the store ------------------------------------------------------------------------------------


def _check_store(probe: StoreProbe, store: Store) -> Check:
    def ask(conn: Connection) -> tuple[float, set[str] | None]:
        started = time.perf_counter()
        ping(conn)
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            applied = applied_versions(conn)
        except SQLAlchemyError:
            applied = None  # no ledger: never migrated
        return latency_ms, applied

    data: dict[str, Any] = {"dialect": store.dialect}
    try:
        latency_ms, applied = probe.run(ask)
    except Exception as exc:  # noqa: BLE001 - any failure to answer is the finding
        error = describe_error(exc)
        return Check(STORE, UNHEALTHY, f"store unreachable: {error}", {**data, "error": error})
    data["latency_ms"] = round(latency_ms, 2)
    if applied is None:
        return Check(
            STORE, UNHEALTHY, "the store has no schema: run `sync-pipelines migrate`", data
        )
    expected = [m.version for m in migrations_for(store.dialect)]
    pending = [v for v in expected if v not in applied]
    data.update(migrations_applied=len(expected) - len(pending), migrations_pending=pending)
    if pending:
        return Check(
            STORE,
            DEGRADED,
            f"{len(pending)} migration(s) pending ({', '.join(pending)}): run `sync-pipelines migrate`",
            data,
        )
    return Check(
        STORE,
        HEALTHY,
        f"{store.dialect} answered in {latency_ms:.1f} ms; migrations up to date ({len(expected)})",
        data,
    )


# -- integrations and backlogs ---------------------------------------------------------------------


def _check_workload(
    probe: StoreProbe, options: HealthOptions, organization_id: str | None, now: datetime
) -> tuple[list[Check], list[dict[str, Any]]]:
    budget_s = options.integrations_timeout_s

    def ask(
        conn: Connection,
    ) -> tuple[IntegrationStates, list[ProviderQueueDepth]] | None:
        if organization_id is not None:
            use_organization(conn, organization_id)
            if not organization_exists(conn, organization_id):
                return None
        states = integration_states(conn, organization_id, now=now, budget_s=budget_s)
        return states, queue_depths(conn, now=now, organization_id=organization_id)

    try:
        answer = probe.run(ask, timeout_s=budget_s + options.store_timeout_s)
    except Exception as exc:  # noqa: BLE001
        error = f"check failed: {describe_error(exc)}"
        return [
            Check(name, UNKNOWN, error, workload=True)
            for name in (INTEGRATIONS, WEBHOOK_INBOX, DEAD_LETTERS)
        ], []
    if answer is None:
        raise UnknownOrganization(
            f"no organization {organization_id!r} in {probe.store_location} "
            "(see `sync-pipelines integrations list`)"
        )
    states, depths = answer
    results = states.results
    return [
        _integrations_check(states.enabled, states.unchecked, results, budget_s),
        _inbox_check(depths, results),
        _dead_letters_check(depths, results),
    ], results


@dataclass(frozen=True, slots=True)
class IntegrationStates:
    """The health model's verdict on each integration listed, as JSON; those the time budget
    did not reach are counted, not guessed."""

    enabled: int
    unchecked: int
    results: list[dict[str, Any]]


def integration_states(
    conn: Connection, organization_id: str | None, *, now: datetime, budget_s: float
) -> IntegrationStates:
    """One organization's every integration, or every organization's (a system-level scan
    across tenants); a disabled one is listed, `unknown`. `/health`, the CLI and the
    `sync_pipelines_integration_health` metric all read this."""
    if organization_id is not None:
        listed = list_integrations(conn, organization_id)
    else:
        listed = list_every_integration(conn)
    deadline = time.monotonic() + budget_s
    results = []
    for integ in listed:
        if time.monotonic() >= deadline:
            break
        use_organization(conn, integ.organization_id)  # each read in its own organization
        results.append(integration_health(conn, integ, now=now).as_json())
    return IntegrationStates(
        enabled=sum(1 for i in listed if i.enabled),
        unchecked=len(listed) - len(results),
        results=results,
    )


def _integrations_check(
    enabled: int, unchecked: int, results: list[dict[str, Any]], budget_s: float
) -> Check:
    states = Counter(r["state"] for r in results if r["enabled"])
    # disabled, but not by an operator: its shape drift policy paused it, and that is a failure
    paused = [r for r in results if not r["enabled"] and _drift_paused(r)]
    status = worst([s for s in states if s != UNKNOWN] + [r["state"] for r in paused])
    counts = ", ".join(f"{states[s]} {s}" for s in STATES if states[s])
    detail = f"{enabled} enabled: {counts}" if enabled else "no enabled integrations"
    if paused:
        ids = ", ".join(r["integration_id"] for r in paused[:5])
        detail += f"; {len(paused)} paused for shape drift ({ids})"
    if unchecked:
        status = worst([status, DEGRADED])
        detail += f"; {unchecked} not checked within {budget_s:g} s"
    data = {
        "enabled": enabled,
        **{s: states[s] for s in STATES},
        "not_checked": unchecked,
        "paused_for_shape_drift": len(paused),
    }
    return Check(INTEGRATIONS, status, detail, data, workload=True)


def _drift_paused(result: dict[str, Any]) -> bool:
    return any(s["signal"] == health_model.SHAPE_DRIFT_PAUSED for s in result["signals"])


def _signal_state(results: list[dict[str, Any]], signal: str) -> str:
    """The worst state the integrations' `signal` gave (healthy when none said anything)."""
    return worst([s["state"] for r in results for s in r["signals"] if s["signal"] == signal])


def _inbox_check(depths: list[ProviderQueueDepth], results: list[dict[str, Any]]) -> Check:
    total = totals(depths)
    pending, oldest = total["inbox_pending"], total["inbox_oldest_age_s"]
    detail = f"{pending} event(s) waiting" + (f", the oldest for {oldest:.0f} s" if oldest else "")
    data = {
        "pending": pending,
        "oldest_pending_age_s": round(oldest, 1) if oldest is not None else None,
        "by_provider": {d.provider: d.inbox_pending for d in depths if d.inbox_pending},
    }
    return Check(
        WEBHOOK_INBOX,
        _signal_state(results, health_model.WEBHOOK_INBOX),
        detail,
        data,
        workload=True,
    )


def _dead_letters_check(depths: list[ProviderQueueDepth], results: list[dict[str, Any]]) -> Check:
    letters = totals(depths)["dead_letters"]
    open_letters = letters["pending"] + letters["retrying"]
    status = _signal_state(results, DEAD_LETTER_SIGNAL)
    detail = (
        f"{open_letters} open ({letters['pending']} pending, {letters['retrying']} retrying), "
        f"{letters['quarantined']} quarantined"
    )
    if status != HEALTHY:
        t = Thresholds()
        detail += f"; {status} (warn at {t.dead_letters_warn}, error at {t.dead_letters_critical} by default)"
    # letters of disabled integrations (or of ones the time budget did not reach) are nobody's
    # verdict: said, and never read as healthy
    judged = sum(r["dead_letters"] for r in results if r["enabled"])
    if open_letters > judged:
        detail += f"; {open_letters - judged} of disabled or unchecked integrations, not judged"
        if judged == 0:
            status = UNKNOWN
    data = {
        "open": open_letters,
        **letters,
        "by_provider": {d.provider: d.open_dead_letters for d in depths if d.open_dead_letters},
    }
    return Check(DEAD_LETTERS, status, detail, data, workload=True)


# -- Dagster ---------------------------------------------------------------------------------------

_DAGSTER_CALLS = BoundedCalls("dagster", slots=2)
_instances: dict[str, Any] = {}
_instances_lock = threading.Lock()


def warm_up(options: HealthOptions) -> None:
    """Open the Dagster instance in the background (importing Dagster alone takes a second or
    two), so a service's first health check does not spend its deadline on it."""
    if options.dagster_home:
        _DAGSTER_CALLS.start(lambda: _check_dagster(options.dagster_home, options.require_daemon))


def _dagster_outcome(future: Any, options: HealthOptions) -> Check:
    try:
        return wait(future, options.dagster_timeout_s, "the Dagster instance")
    except ProbeTimeout as exc:  # slow is not down: the next check will likely answer
        return Check(DAGSTER, DEGRADED, str(exc))
    except Exception as exc:  # noqa: BLE001
        error = describe_error(exc)
        return Check(DAGSTER, UNHEALTHY, f"Dagster instance unavailable: {error}", {"error": error})


def _dagster_instance(home: str) -> Any:
    """One instance per home and process (creating one opens its storages)."""
    from dagster import DagsterInstance  # the receiver imports Dagster only when asked

    with _instances_lock:
        instance = _instances.get(home)
        if instance is None:
            # what DagsterInstance.get() does for $DAGSTER_HOME, for the home we were given
            instance = _instances[home] = DagsterInstance.from_config(home)
        return instance


def _check_dagster(home: str | None, require_daemon: bool) -> Check:
    if not home:
        return Check(DAGSTER, UNKNOWN, "DAGSTER_HOME is not set: no Dagster instance to check")
    path = Path(home).expanduser()
    if not path.is_absolute() or not path.is_dir():
        return Check(
            DAGSTER,
            UNHEALTHY,
            f"DAGSTER_HOME {home!r} must be an existing directory given as an absolute path",
        )
    instance = _dagster_instance(str(path))
    # the daemon types this instance needs (sensor, backfill, scheduler, run queue, ...) and
    # their heartbeats, judged as the Dagster UI judges them (DagsterInstance.get_daemon_statuses)
    statuses = instance.get_daemon_statuses()
    daemons = {
        kind: {
            "required": status.required,
            "running": bool(status.healthy),
            "last_heartbeat_at": _heartbeat_time(status.last_heartbeat),
            "errors": len(status.last_heartbeat.errors or []) if status.last_heartbeat else 0,
        }
        for kind, status in sorted(statuses.items())
    }
    data = {"daemons": daemons, "daemon_required": require_daemon}
    stopped = [k for k, d in daemons.items() if d["required"] and not d["running"]]
    failing = [k for k, d in daemons.items() if d["running"] and d["errors"]]
    if stopped:
        return Check(
            DAGSTER,
            UNHEALTHY if require_daemon else DEGRADED,
            f"daemon not running (no recent heartbeat): {', '.join(stopped)}",
            data,
        )
    if failing:
        return Check(DAGSTER, DEGRADED, f"daemon reports errors: {', '.join(failing)}", data)
    if not daemons:
        return Check(DAGSTER, HEALTHY, "instance answers; it needs no daemon", data)
    return Check(DAGSTER, HEALTHY, f"instance answers; {len(daemons)} daemon(s) running", data)


def _heartbeat_time(heartbeat: Any) -> str | None:
    if heartbeat is None:
        return None
    return datetime.fromtimestamp(heartbeat.timestamp, tz=utc_now().tzinfo).isoformat()


# -- the alert path (sync_pipelines.alerts, when installed) ---------------------------------------


def _check_alerting(
    probe: StoreProbe, options: HealthOptions, now: datetime, *, store_up: bool
) -> Check | None:
    """None while the alerts package (or its `alert_path_health`) is not there yet."""
    try:
        module = importlib.import_module(options.alerts_module)
    except ModuleNotFoundError as exc:
        if exc.name and (
            exc.name == options.alerts_module or options.alerts_module.startswith(f"{exc.name}.")
        ):
            return None
        return Check(ALERTING, DEGRADED, f"alert path cannot load: {describe_error(exc)}")
    except Exception as exc:  # noqa: BLE001 - a broken alerts package is a finding, not a crash
        return Check(ALERTING, DEGRADED, f"alert path cannot load: {describe_error(exc)}")
    alert_path_health = getattr(module, "alert_path_health", None)
    if alert_path_health is None:
        return None
    if not store_up:
        return Check(ALERTING, UNKNOWN, "not checked: the store is unavailable")
    try:
        result = probe.run(lambda conn: alert_path_health(conn, now))
    except Exception as exc:  # noqa: BLE001
        return Check(ALERTING, DEGRADED, f"alert path check failed: {describe_error(exc)}")
    if not isinstance(result, Mapping):
        return Check(
            ALERTING, UNKNOWN, f"alert_path_health returned {type(result).__name__}, not a dict"
        )
    status = result.get("status") or result.get("state")
    if status not in STATES:
        return Check(ALERTING, UNKNOWN, f"alert_path_health returned no known status ({status!r})")
    detail = str(result.get("detail") or result.get("reason") or status)
    data = {k: v for k, v in result.items() if k not in ("status", "state", "detail")}
    return Check(ALERTING, status, detail, data)
