"""Where alerts go: a generic JSON webhook or a Slack-compatible incoming webhook, and the one
way a payload is delivered to either (httpx, a short timeout, a small tenacity retry).

A delivery never raises: whatever goes wrong (refused connection, timeout, HTTP 500) comes back
as a failed `Delivery` for the caller to record. Channel URLs never appear in a log line, a row
or a repr; Slack's, which carry their credential in the path, are registered for redaction too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import tenacity

from sync_pipelines.observability.redaction import redact_text, register_secret
from sync_pipelines.observability.retrying import RetryPolicy
from sync_pipelines.outbound import DestinationGuard, OutboundRefused, check_literal_host

WEBHOOK, SLACK = "webhook", "slack"
KINDS = (WEBHOOK, SLACK)
SENT, FAILED = "sent", "failed"


@dataclass(frozen=True, slots=True)
class Channel:
    """A configured destination: its name (what the history records), kind and URL."""

    name: str
    kind: str
    url: str = field(repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"alert channel {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}"
            )
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # never echo the URL: for Slack it is the credential
            raise ValueError(
                f"alert channel {self.name!r}: the URL must be an http(s) URL with a host"
            )
        try:
            check_literal_host(self.url)
        except OutboundRefused as exc:  # names the address, never the URL
            raise ValueError(f"alert channel {self.name!r}: {exc}") from None
        if self.kind == SLACK:
            register_secret(self.url)
            register_secret(parts.path)  # in case a library prints the URL re-encoded


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one payload went to one channel."""

    channel: str
    status: str
    status_code: int | None = None
    error_message: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.status == SENT


def deliver(
    channel: Channel, payload: dict[str, Any], *, timeout_s: float, max_attempts: int
) -> Delivery:
    """POST `payload` as JSON; retried on connection errors, timeouts, 429 and 5xx."""
    policy = RetryPolicy(
        max_attempts=max_attempts,
        max_total_s=max(1.0, timeout_s * max_attempts),
        base_backoff_s=0.2,
        max_backoff_s=1.0,
        jitter_s=0.1,
    )
    attempts = 0

    def attempt(client: httpx.Client) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        return client.post(channel.url, json=payload)

    try:
        DestinationGuard().check_url(channel.url)  # what the name resolves to now
    except OutboundRefused as exc:
        return Delivery(channel.name, FAILED, None, redact_text(f"refused: {exc}")[:500], 0)
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
            response = policy.retrying(_worth_retrying)(attempt, client)
    except Exception as exc:  # noqa: BLE001 - a channel failure is recorded, never raised
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return Delivery(channel.name, FAILED, None, redact_text(message)[:500], attempts)
    if 200 <= response.status_code < 300:
        return Delivery(channel.name, SENT, response.status_code, None, attempts)
    body = response.text.strip()[:200]
    return Delivery(
        channel.name,
        FAILED,
        response.status_code,
        redact_text(
            f"HTTP {response.status_code}: {body}" if body else f"HTTP {response.status_code}"
        ),
        attempts,
    )


def _worth_retrying(state: tenacity.RetryCallState) -> bool:
    outcome = state.outcome
    if outcome is None:
        return False
    if outcome.failed:
        return isinstance(outcome.exception(), httpx.TransportError)
    status = outcome.result().status_code
    return status == 429 or status >= 500


class _MaskSecretsInHttpxLog(logging.Filter):
    """httpx logs every request's full URL at INFO ("HTTP Request: POST https://hooks…"): a
    Slack webhook URL is its credential, so the line goes through the redaction rules first."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact_text(record.getMessage()), None
        return True


def _install_httpx_log_mask() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _MaskSecretsInHttpxLog) for f in logger.filters):
        logger.addFilter(_MaskSecretsInHttpxLog())


_install_httpx_log_mask()
