"""Every sensor evaluation observed the same way: a span per evaluation when OpenTelemetry is on;
an error escaping the evaluation reported to Sentry (tagged with the sensor) when Sentry is on,
and always raised as an alert incident, `sensor_failed:<sensor>:<error type>` (Dagster OSS alerts
on no sensor failure; alerts/sensor_failures.py), then re-raised so Dagster still fails the tick.
An evaluation that completes resolves the sensor's open `sensor_failed` incidents.

`@observed` goes directly under a sensor's Dagster decorator and wraps the plain function, so
Dagster still reads the function's own signature (the context parameter and the resources it
injects by name; `functools.wraps` keeps both visible). The alert goes through the store of the
sensor's `SyncStoreResource`. `observed_sensors`, where the sensors are assembled
(definitions.py), refuses a sensor that was not built that way, so none is forgotten.
"""

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import dagster as dg

from sync_pipelines.alerts.sensor_failures import (
    alert_sensor_failed,
    error_type_of,
    resolve_sensor_failures,
)
from sync_pipelines.alerts.settings import settings_or_store_only
from sync_pipelines.clock import utc_now
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.observability import otel, sentry
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.observability.redaction import redact_text

F = TypeVar("F", bound=Callable[..., Any])

_log = get_logger("defs.observed_sensors")

#: names of the sensor functions wrapped by `observed` (a sensor is named after its function)
_OBSERVED: set[str] = set()


def observed(fn: F) -> F:
    """Wrap a sensor function: its evaluation becomes a span, and an escaping error a Sentry
    event and an alert incident (then re-raised); a completed evaluation resolves the incident."""
    name = fn.__name__

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def evaluate_lazily(*args: Any, **kwargs: Any) -> Iterator[Any]:
            with otel.span(f"sensor {name}", {"sync_pipelines.sensor": name}):
                try:
                    yield from fn(*args, **kwargs)
                except Exception as exc:
                    _evaluation_failed(name, exc, kwargs)
                    raise
                _evaluation_completed(name, kwargs)

        wrapper: Callable[..., Any] = evaluate_lazily
    else:

        @functools.wraps(fn)
        def evaluate(*args: Any, **kwargs: Any) -> Any:
            with otel.span(f"sensor {name}", {"sync_pipelines.sensor": name}):
                try:
                    result = fn(*args, **kwargs)
                except Exception as exc:
                    _evaluation_failed(name, exc, kwargs)
                    raise
                _evaluation_completed(name, kwargs)
                return result

        wrapper = evaluate
    _OBSERVED.add(name)
    return wrapper  # type: ignore[return-value]


def _store_resource(resources: Mapping[str, Any]) -> SyncStoreResource | None:
    # Dagster passes a sensor's resources by name
    return next((r for r in resources.values() if isinstance(r, SyncStoreResource)), None)


def _evaluation_failed(name: str, exc: Exception, resources: Mapping[str, Any]) -> None:
    """Report the failure everywhere it can go; never raises (the tick's own error is what
    Dagster must see)."""
    error = {"type": error_type_of(exc), "message": redact_text(str(exc))}
    _log.error("sensor_failed", sensor=name, error=error)
    sentry.capture_failure(exc, sensor=name)
    store = _store_resource(resources)
    if store is None:
        _log.error("sensor_failure_not_alerted", sensor=name, reason="no SyncStoreResource")
        return
    try:
        alert_sensor_failed(store.get_store(), name, exc, settings_or_store_only(), now=utc_now())
    except Exception as alert_exc:  # e.g. the store is down: likely the tick's own cause
        _log.error(
            "sensor_failure_not_alerted",
            sensor=name,
            error={"type": error_type_of(alert_exc), "message": redact_text(str(alert_exc))},
        )
        sentry.capture_failure(alert_exc, sensor=name)


def _evaluation_completed(name: str, resources: Mapping[str, Any]) -> None:
    """Resolve the sensor's open failure incidents; a failure to is logged, never fails the
    tick whose work is done (the incident stays open until a later tick resolves it)."""
    store = _store_resource(resources)
    if store is None:
        return
    try:
        resolved = resolve_sensor_failures(store.get_store(), name, now=utc_now())
    except Exception as exc:
        _log.error(
            "sensor_failure_not_resolved",
            sensor=name,
            error={"type": error_type_of(exc), "message": redact_text(str(exc))},
        )
        sentry.capture_failure(exc, sensor=name)
        return
    for incident in resolved:
        _log.info("sensor_recovered", sensor=name, incident_id=incident.id)


def observed_sensors(sensors: Sequence[dg.SensorDefinition]) -> list[dg.SensorDefinition]:
    """`sensors`, once each is known to be observed; raises ValueError naming any that is not."""
    unobserved = sorted(s.name for s in sensors if s.name not in _OBSERVED)
    if unobserved:
        raise ValueError(
            f"sensors not observed: {', '.join(unobserved)}; put `@observed` "
            "(sync_pipelines.defs.observed_sensors) directly under each one's Dagster decorator, "
            "and keep the sensor named after its function"
        )
    return list(sensors)
