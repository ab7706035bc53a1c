"""Sensor ticks that error, as alerts: Dagster OSS alerts on no sensor failure, so `@observed`
(defs/observed_sensors.py) raises `sensor_failed:<sensor>:<error type>` when a tick errors — one
incident per sensor and cause however many ticks fail, each failing tick counted in its
`occurrences` — and a tick that completes resolves every open one of its sensor.

The cause is the error's type, not its message: messages carry ids and times that would open a
new incident per tick. The message is in the summary, redacted (the latest one wins)."""

from __future__ import annotations

from datetime import datetime

from sync_pipelines.alerts.incidents import AlertOutcome, clear_alert, raise_alert
from sync_pipelines.alerts.rules import CRITICAL, SENSOR_FAILED, Condition, dedupe_key
from sync_pipelines.alerts.settings import AlertSettings, settings_or_store_only
from sync_pipelines.observability.redaction import redact_text
from sync_pipelines.store.alerts import Incident, open_incidents_for_rules
from sync_pipelines.store.database import Store
from sync_pipelines.store.event_failures import SYSTEM_ORGANIZATION

_SUMMARY_MESSAGE_MAX = 500


def error_type_of(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def sensor_failure_key(sensor: str, error_type: str) -> str:
    # a sensor's name is a Python identifier: the prefix `sensor_failed:<sensor>:` is its own
    return dedupe_key(SENSOR_FAILED, f"{sensor}:{error_type}")


def sensor_failure_condition(sensor: str, exc: BaseException) -> Condition:
    error_type = error_type_of(exc)
    message = redact_text(str(exc)).strip()[:_SUMMARY_MESSAGE_MAX] or "(no message)"
    return Condition(
        organization_id=SYSTEM_ORGANIZATION,
        integration_id=None,
        rule=SENSOR_FAILED,
        subject=f"{sensor}:{error_type}",
        # a sensor that cannot tick stops what it watches (alerts, checks, failure records)
        severity=CRITICAL,
        summary=f"sensor {sensor} failed: {error_type}: {message}",
        details={"sensor": sensor, "error_type": error_type},
    )


def alert_sensor_failed(
    store: Store, sensor: str, exc: BaseException, settings: AlertSettings, *, now: datetime
) -> AlertOutcome:
    return raise_alert(store, sensor_failure_condition(sensor, exc), settings, now=now)


def resolve_sensor_failures(
    store: Store, sensor: str, *, now: datetime, settings: AlertSettings | None = None
) -> list[Incident]:
    """Resolve the sensor's open `sensor_failed` incidents (any cause): it just ticked cleanly.
    Returns those resolved. With none open (every clean tick but one) this is one read, and the
    settings (default: the environment's) are not even loaded."""
    prefix = sensor_failure_key(sensor, "")
    with store.scoped(SYSTEM_ORGANIZATION).connect() as conn:
        keys = [
            i.dedupe_key
            for i in open_incidents_for_rules(conn, SYSTEM_ORGANIZATION, [SENSOR_FAILED])
            if i.dedupe_key.startswith(prefix)
        ]
    if not keys:
        return []
    settings = settings if settings is not None else settings_or_store_only()
    resolved = []
    for key in keys:
        outcome = clear_alert(
            store,
            SYSTEM_ORGANIZATION,
            key,
            settings,
            now=now,
            reason=f"sensor {sensor} completed a tick",
        )
        if outcome.incident is not None:  # None: a concurrent tick resolved it first
            resolved.append(outcome.incident)
    return resolved
