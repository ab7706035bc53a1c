"""Fixtures for the alert tests: a real local alert sink on a loopback port, settings pointing
at it, and a Dagster test instance for the sensor tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg
import pytest
from sync_pipelines_peers.alert_sink import AlertSink

from sync_pipelines.alerts.channels import SLACK, WEBHOOK, Channel
from sync_pipelines.alerts.settings import AlertSettings

#: a fixed "now" for evaluations: every test injects its times, none sleeps
T0 = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def sink() -> Iterator[AlertSink]:
    with AlertSink() as running:
        yield running


@pytest.fixture
def settings(sink) -> AlertSettings:
    """The generic webhook channel at the sink; cooldown 10 min; fast retries."""
    return AlertSettings(
        channels=(Channel("webhook", WEBHOOK, sink.webhook_url),),
        cooldown_s=600,
        timeout_s=2,
        max_attempts=2,
    )


@pytest.fixture
def slack_settings(sink) -> AlertSettings:
    return AlertSettings(
        channels=(Channel("slack", SLACK, sink.slack_url),),
        cooldown_s=600,
        timeout_s=2,
        max_attempts=2,
    )


@pytest.fixture(scope="module")
def module_instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def instance(module_instance) -> dg.DagsterInstance:
    module_instance.wipe()
    return module_instance
