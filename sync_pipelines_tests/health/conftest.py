"""The health checks read their options from the environment; these tests pin it: no Dagster
instance, no required daemon, no alert channel, no health token (unless a test sets them)."""

import pytest

_VARIABLES = (
    "DAGSTER_HOME",
    "SYNC_HEALTH_REQUIRE_DAEMON",
    "SYNC_HEALTH_TOKEN",
    "SYNC_ALERT_WEBHOOK_URL",
    "SYNC_ALERT_SLACK_WEBHOOK_URL",
)


@pytest.fixture(autouse=True)
def _pinned_health_environment(monkeypatch):
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)
