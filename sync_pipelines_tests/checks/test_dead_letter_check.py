"""Open dead letters of an integration, recorded the way a sync records them."""

from __future__ import annotations

import pytest

from sync_pipelines.checks.dead_letters import dead_letters_below_threshold
from sync_pipelines.checks.outcome import ERROR, WARN
from sync_pipelines.store.dead_letters import (
    DeadLetterPolicy,
    DeadLetterSelection,
    FailedRecord,
    quarantine_dead_letters,
    record_dead_letters,
)
from sync_pipelines_tests.checks.check_support import NOW, judge, save


def _dead_letter(store, integ, count: int) -> None:
    with store.transaction() as conn:
        record_dead_letters(
            conn,
            organization_id=integ.organization_id,
            integration_id=integ.integration_id,
            provider=integ.provider,
            records=[
                FailedRecord(
                    "devices", f"dev-{k}", "validation", "no name", {"id": f"dev-{k}"}, f"dev-{k}"
                )
                for k in range(count)
            ],
            policy=DeadLetterPolicy(),
            run_id="run-seed",
            now=NOW,
        )


@pytest.mark.parametrize(
    ("letters", "passed", "severity"),
    [(0, True, WARN), (3, False, WARN), (5, False, ERROR)],
    ids=["none-passes", "3-warn", "5-errors-at-critical-5"],
)
def test_open_dead_letters_are_graded_by_the_thresholds(store, letters, passed, severity):
    integ = save(store, monitoring={"dead_letters_critical": 5})
    _dead_letter(store, integ, letters)
    outcome = judge(store, integ, dead_letters_below_threshold)
    assert (outcome.passed, outcome.severity) == (passed, severity)
    assert outcome.metadata["depth"] == letters


def test_quarantined_letters_are_not_open(store, integ):
    _dead_letter(store, integ, 2)
    with store.transaction() as conn:
        quarantine_dead_letters(
            conn,
            integ.organization_id,
            DeadLetterSelection(integration_id=integ.integration_id),
            now=NOW,
        )
    assert judge(store, integ, dead_letters_below_threshold).metadata["depth"] == 0
