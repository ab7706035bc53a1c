"""The retention settings: defaults, environment, overrides, and errors that name the setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sync_pipelines.store.retention import (
    LOGS,
    TELEMETRY,
    WEBHOOKS,
    RetentionConfigError,
    RetentionPolicy,
)

NOW = datetime(2026, 5, 1, tzinfo=UTC)


def test_defaults_keep_logs_and_telemetry_90_days():
    policy = RetentionPolicy.from_env({})
    assert (policy.days, policy.telemetry_days, policy.partitions_ahead) == (90, 90, 2)


def test_the_environment_sets_days_and_a_run_override_wins():
    env = {"SYNC_RETENTION_DAYS": "30", "SYNC_TELEMETRY_RETENTION_DAYS": "0"}
    assert RetentionPolicy.from_env(env).days == 30
    assert RetentionPolicy.from_env(env).telemetry_days == 0
    assert RetentionPolicy.from_env(env, days=7, telemetry_days=None).days == 7


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SYNC_RETENTION_DAYS", "ninety"),
        ("SYNC_RETENTION_DAYS", "0"),
        ("SYNC_TELEMETRY_RETENTION_DAYS", "-1"),
        ("SYNC_RETENTION_DAYS", "1.5"),
    ],
)
def test_an_unusable_environment_value_is_an_error_naming_the_variable(variable, value):
    with pytest.raises(
        RetentionConfigError, match=rf"{variable} must be a whole number.*{value!r}"
    ):
        RetentionPolicy.from_env({variable: value})


def test_an_unusable_override_is_an_error_naming_the_setting():
    with pytest.raises(
        RetentionConfigError, match="retention days must be a whole number >= 1, got 0"
    ):
        RetentionPolicy(days=0)
    with pytest.raises(RetentionConfigError, match="chunk_size"):
        RetentionPolicy(chunk_size=0)


def test_webhook_events_are_judged_by_at_least_7_days():
    assert RetentionPolicy(days=1).cutoffs(NOW)[WEBHOOKS] == NOW - timedelta(days=7)
    assert RetentionPolicy(days=30).cutoffs(NOW)[WEBHOOKS] == NOW - timedelta(days=30)


def test_cutoffs_follow_each_setting():
    cutoffs = RetentionPolicy(days=90, telemetry_days=10).cutoffs(NOW)
    assert cutoffs[LOGS] == NOW - timedelta(days=90)
    assert cutoffs[TELEMETRY] == NOW - timedelta(days=10)
    assert RetentionPolicy(telemetry_days=0).cutoffs(NOW)[TELEMETRY] is None
