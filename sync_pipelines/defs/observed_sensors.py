"""Every sensor evaluation observed the same way, applied once where the sensors are assembled
(definitions.py) instead of in each sensor: a span per evaluation when OpenTelemetry is on, and
an error escaping the evaluation reported to Sentry, tagged with the sensor, when Sentry is on.
Both are a flag check when off."""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from sync_pipelines.observability import otel, sentry


def observed_sensors(sensors: Sequence[dg.SensorDefinition]) -> list[dg.SensorDefinition]:
    for sensor in sensors:
        _observe(sensor)
    return list(sensors)


def _observe(sensor: dg.SensorDefinition) -> None:
    # Dagster calls `_evaluation_fn(context)` for every tick (SensorDefinition.evaluate_tick);
    # wrapping it keeps the sensor's own signature (its resources are injected by parameter
    # name) and works for run-status sensors alike. Calling a sensor directly (tests) is unchanged.
    evaluate = sensor._evaluation_fn  # noqa: SLF001
    if getattr(evaluate, "_sync_observed", False):
        return
    name = sensor.name

    def evaluate_observed(context: dg.SensorEvaluationContext) -> Any:
        with otel.span(f"sensor {name}", {"sync_pipelines.sensor": name}):
            try:
                return evaluate(context)
            except Exception as exc:
                sentry.capture_failure(exc, sensor=name)
                raise

    evaluate_observed._sync_observed = True  # type: ignore[attr-defined]
    sensor._evaluation_fn = evaluate_observed  # noqa: SLF001
