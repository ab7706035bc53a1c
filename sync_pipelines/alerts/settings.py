"""Alert delivery settings, from the environment only (channel URLs are secrets: they never live
in the store or in Dagster config).

| variable | meaning | default |
|---|---|---|
| `SYNC_ALERT_WEBHOOK_URL` | generic JSON webhook (channel `webhook`) | unset |
| `SYNC_ALERT_SLACK_WEBHOOK_URL` | Slack-compatible incoming webhook (channel `slack`) | unset |
| `SYNC_ALERT_COOLDOWN_S` | re-notify an open incident no sooner than this | 1800 |
| `SYNC_ALERT_HEARTBEAT_INTERVAL_S` | heartbeat to every channel this often | 3600 |
| `SYNC_ALERT_TIMEOUT_S` | per-request timeout of a delivery | 5 |
| `SYNC_ALERT_MAX_ATTEMPTS` | attempts per delivery (connection errors, 429, 5xx) | 2 |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from sync_pipelines.alerts.channels import SLACK, WEBHOOK, Channel
from sync_pipelines.observability.logging import get_logger

WEBHOOK_URL_ENV = "SYNC_ALERT_WEBHOOK_URL"
SLACK_WEBHOOK_URL_ENV = "SYNC_ALERT_SLACK_WEBHOOK_URL"
COOLDOWN_ENV = "SYNC_ALERT_COOLDOWN_S"
HEARTBEAT_INTERVAL_ENV = "SYNC_ALERT_HEARTBEAT_INTERVAL_S"
TIMEOUT_ENV = "SYNC_ALERT_TIMEOUT_S"
MAX_ATTEMPTS_ENV = "SYNC_ALERT_MAX_ATTEMPTS"

_log = get_logger("alerts.settings")


@dataclass(frozen=True, slots=True)
class AlertSettings:
    channels: tuple[Channel, ...] = ()
    cooldown_s: float = 1800.0
    heartbeat_interval_s: float = 3600.0
    timeout_s: float = 5.0
    max_attempts: int = 2

    def __post_init__(self) -> None:
        for name in ("cooldown_s", "heartbeat_interval_s", "timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"alert setting {name} must be > 0, got {getattr(self, name)}")
        if self.max_attempts < 1:
            raise ValueError(f"alert setting max_attempts must be >= 1, got {self.max_attempts}")
        names = [c.name for c in self.channels]
        if len(names) != len(set(names)):
            raise ValueError(f"alert channel names must be unique, got {names}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AlertSettings:
        """The settings the environment describes; a ValueError names the variable at fault."""
        env = os.environ if environ is None else environ
        channels = []
        for variable, name, kind in (
            (WEBHOOK_URL_ENV, "webhook", WEBHOOK),
            (SLACK_WEBHOOK_URL_ENV, "slack", SLACK),
        ):
            url = (env.get(variable) or "").strip()
            if url:
                try:
                    channels.append(Channel(name, kind, url))
                except ValueError as exc:
                    raise ValueError(f"{variable}: {exc}") from None
        return cls(
            channels=tuple(channels),
            cooldown_s=_number(env, COOLDOWN_ENV, 1800.0),
            heartbeat_interval_s=_number(env, HEARTBEAT_INTERVAL_ENV, 3600.0),
            timeout_s=_number(env, TIMEOUT_ENV, 5.0),
            max_attempts=int(_number(env, MAX_ATTEMPTS_ENV, 2)),
        )


def settings_or_store_only() -> AlertSettings:
    """The environment's settings; invalid ones are logged and replaced by no channel at all, so
    whoever raises an incident still records it in the store (the health command reports the
    settings) instead of failing on the alert path."""
    try:
        return AlertSettings.from_env()
    except ValueError as exc:
        _log.error("alert_settings_invalid", error={"type": "ValueError", "message": str(exc)})
        return AlertSettings()


def _number(env: Mapping[str, str], variable: str, default: float) -> float:
    raw = (env.get(variable) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{variable} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{variable} must be > 0, got {raw!r}")
    return value
