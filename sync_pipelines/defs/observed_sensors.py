"""Every sensor evaluation observed the same way: a span per evaluation when OpenTelemetry is on,
and an error escaping the evaluation reported to Sentry, tagged with the sensor, when Sentry is
on. Both are a flag check when off.

`@observed` goes directly under a sensor's Dagster decorator and wraps the plain function, so
Dagster still reads the function's own signature (the context parameter and the resources it
injects by name; `functools.wraps` keeps both visible). `observed_sensors`, where the sensors are
assembled (definitions.py), refuses a sensor that was not built that way, so none is forgotten.
"""

import functools
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import dagster as dg

from sync_pipelines.observability import otel, sentry

F = TypeVar("F", bound=Callable[..., Any])

#: names of the sensor functions wrapped by `observed` (a sensor is named after its function)
_OBSERVED: set[str] = set()


def observed(fn: F) -> F:
    """Wrap a sensor function: its evaluation becomes a span, and an escaping error a Sentry event."""
    name = fn.__name__

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def evaluate_lazily(*args: Any, **kwargs: Any) -> Iterator[Any]:
            with otel.span(f"sensor {name}", {"sync_pipelines.sensor": name}):
                try:
                    yield from fn(*args, **kwargs)
                except Exception as exc:
                    sentry.capture_failure(exc, sensor=name)
                    raise

        wrapper: Callable[..., Any] = evaluate_lazily
    else:

        @functools.wraps(fn)
        def evaluate(*args: Any, **kwargs: Any) -> Any:
            with otel.span(f"sensor {name}", {"sync_pipelines.sensor": name}):
                try:
                    return fn(*args, **kwargs)
                except Exception as exc:
                    sentry.capture_failure(exc, sensor=name)
                    raise

        wrapper = evaluate
    _OBSERVED.add(name)
    return wrapper  # type: ignore[return-value]


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
