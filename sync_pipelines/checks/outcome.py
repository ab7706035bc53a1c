"""What one check concluded about one integration: passed or not, how bad, why, and the figures
it judged on (numeric, so the Dagster UI can plot them over time)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: Dagster's AssetCheckSeverity names, also the `severity` column of integration_check_results
WARN = "WARN"
ERROR = "ERROR"

Figure = int | float | None


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    name: str
    passed: bool
    #: how bad a failure is; a pass carries WARN (it never escalates anything)
    severity: str
    description: str
    #: numeric figures; None where there was nothing to measure (no calls, no sync yet)
    metadata: Mapping[str, Figure] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in (WARN, ERROR):
            raise ValueError(
                f"check {self.name!r}: severity must be WARN or ERROR, got {self.severity!r}"
            )


def passed(name: str, description: str, **metadata: Figure) -> CheckOutcome:
    return CheckOutcome(name, True, WARN, description, metadata)


def failed(name: str, severity: str, description: str, **metadata: Figure) -> CheckOutcome:
    return CheckOutcome(name, False, severity, description, metadata)


def graded(
    name: str,
    value: float,
    *,
    warn: float,
    critical: float,
    ok: str,
    bad: str,
    inclusive: bool = False,
    **metadata: Figure,
) -> CheckOutcome:
    """Pass under `warn`, WARN from `warn`, ERROR from `critical` ("above" unless `inclusive`,
    where reaching the threshold is enough). `ok`/`bad` are the descriptions."""

    def beyond(limit: float) -> bool:
        return value >= limit if inclusive else value > limit

    if beyond(critical):
        return failed(name, ERROR, bad, **metadata)
    if beyond(warn):
        return failed(name, WARN, bad, **metadata)
    return passed(name, ok, **metadata)
