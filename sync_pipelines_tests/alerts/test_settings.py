"""Alert settings come from the environment only; a bad value is an error naming the variable,
and never echoes a channel URL (Slack's is a credential)."""

from __future__ import annotations

import pytest

from sync_pipelines.alerts.settings import AlertSettings
from sync_pipelines.observability.redaction import redact_text

SLACK_URL = "https://hooks.slack.com/services/T000/B000/zq8-settings-secret"


def test_no_variables_means_no_channels_and_the_defaults():
    settings = AlertSettings.from_env({})
    assert settings == AlertSettings()
    assert (settings.cooldown_s, settings.heartbeat_interval_s, settings.max_attempts) == (
        1800.0,
        3600.0,
        2,
    )


def test_both_channels_and_their_timings_from_the_environment():
    settings = AlertSettings.from_env(
        {
            "SYNC_ALERT_WEBHOOK_URL": "http://127.0.0.1:9000/hook",
            "SYNC_ALERT_SLACK_WEBHOOK_URL": SLACK_URL,
            "SYNC_ALERT_COOLDOWN_S": "900",
            "SYNC_ALERT_MAX_ATTEMPTS": "3",
        }
    )
    assert [(c.name, c.kind) for c in settings.channels] == [
        ("webhook", "webhook"),
        ("slack", "slack"),
    ]
    assert (settings.cooldown_s, settings.max_attempts) == (900.0, 3)
    assert "zq8-settings-secret" not in repr(settings)
    assert "zq8-settings-secret" not in redact_text(f"posting to {SLACK_URL}"), (
        "registered for redaction"
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "SYNC_ALERT_SLACK_WEBHOOK_URL",
            "hooks.slack.com/services/T/B/zq8-secret",
            r"must be an http\(s\) URL",
        ),
        ("SYNC_ALERT_WEBHOOK_URL", "ftp://example.com/zq8-secret", r"must be an http\(s\) URL"),
        ("SYNC_ALERT_COOLDOWN_S", "-5", "must be > 0"),
        ("SYNC_ALERT_TIMEOUT_S", "fast", "must be a number"),
    ],
)
def test_a_bad_value_names_its_variable(variable, value, message):
    with pytest.raises(ValueError, match=message) as raised:
        AlertSettings.from_env({variable: value})
    assert str(raised.value).startswith(variable)
    assert "zq8-secret" not in str(raised.value)
