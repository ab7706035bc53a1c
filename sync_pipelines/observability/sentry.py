"""Sentry error tracking: on when `SENTRY_DSN` is set, otherwise nothing is imported or sent.

`configure_sentry()` initialises the SDK (environment and release from `SENTRY_ENVIRONMENT` /
`SENTRY_RELEASE`, as the SDK reads them). Failures are reported where we know who was acting —
`capture_failure(exc, tags)` from the integration session, the sensor wrapper and the receiver
middleware — with the tags provider, integration_id, organization_id, run_id, job, step,
request_id and the error taxonomy's category and class. What the interpreter's excepthook
reports (an unhandled CLI error) is tagged with the command.

Every event passes `scrub_event` (before_send): the same redaction rules as the logs
(observability/redaction.py), then cookies dropped and Authorization masked whatever their
case. Errors of the taxonomy are fingerprinted by integration + error class, so a permanent
provider error that fails every poll (and is already dead-lettered) stays one issue rather
than a new one per run. An exception is sent once: a failure reported with its tags is marked,
and the same exception reaching the excepthook or another layer later is dropped.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

from sync_pipelines.observability.redaction import REDACTED, redact

DSN_ENV = "SENTRY_DSN"
_REPORTED = "_sync_pipelines_sentry_reported"

_enabled = False


def sentry_enabled() -> bool:
    return _enabled


def configure_sentry(dsn: str | None = None, **options: Any) -> bool:
    """Idempotent; True when Sentry is on. `dsn` defaults to `$SENTRY_DSN`; `options` go to
    `sentry_sdk.init` (tests: a transport setting)."""
    global _enabled
    dsn = dsn or os.environ.get(DSN_ENV, "").strip() or None
    if dsn is None or (_enabled and not options):
        return _enabled
    import logging

    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration

    sentry_sdk.init(
        dsn=dsn,
        before_send=scrub_event,  # no PII either: send_default_pii / data_collection left unset
        # our own layers report with tags; framework auto-instrumentation would report the same
        # failures again, untagged
        auto_enabling_integrations=False,
        # error log lines are breadcrumbs, not events: a failed sync logs several, and is one event
        integrations=[LoggingIntegration(level=logging.INFO, event_level=None)],
        **options,
    )
    _enabled = True
    return True


def shutdown_sentry() -> None:
    """Flush what is queued and stop (tests)."""
    global _enabled
    if not _enabled:
        return
    import sentry_sdk

    sentry_sdk.flush()
    client = sentry_sdk.get_client()
    client.close()
    _enabled = False


def capture_failure(exc: BaseException, **tags: Any) -> None:
    """Report `exc` once, with `tags` (None values left out) and the taxonomy of its error."""
    if not _enabled or _already_reported(exc):
        return
    import sentry_sdk

    with sentry_sdk.new_scope() as scope:
        for key, value in tags.items():
            if value is not None:
                scope.set_tag(key, str(value))
        from sync_pipelines.observability.otel import current_ids

        trace_id, span_id = current_ids()
        if trace_id:  # joins the event to the trace, the logs and the activity rows
            scope.set_context("trace_ids", {"trace_id": trace_id, "span_id": span_id})
            scope.set_tag("otel.trace_id", trace_id)
        sentry_sdk.capture_exception(exc)
    _mark_reported(exc)


def set_tags(**tags: Any) -> None:
    """Tags for whatever this process reports from now on (the CLI's command)."""
    if not _enabled:
        return
    import sentry_sdk

    for key, value in tags.items():
        if value is not None:
            sentry_sdk.set_tag(key, str(value))


def scrub_event(event: dict[str, Any], hint: Mapping[str, Any]) -> dict[str, Any] | None:
    """before_send: drop repeats, fingerprint taxonomy errors, redact everything."""
    exc_info = hint.get("exc_info") if hint else None
    exc = exc_info[1] if exc_info else None
    if exc is not None and _already_reported(exc):
        return None
    event = redact(event)
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("cookies", None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            for name in list(headers):
                if name.lower() in ("authorization", "cookie", "set-cookie", "proxy-authorization"):
                    headers[name] = REDACTED
    if exc is not None:
        _tag_taxonomy(event, exc)
    return event


def _tag_taxonomy(event: dict[str, Any], exc: BaseException) -> None:
    """The error taxonomy's category and class (and a provider error's provider and request id)
    as tags; a taxonomy error of an integration is fingerprinted by integration + class."""
    from sync_pipelines.errors import ProviderError, category_of

    error = _sync_error_of(exc)
    tags = event.setdefault("tags", {})
    tags.setdefault("error.category", category_of(error or exc))
    tags.setdefault("error.class", type(error or exc).__name__)
    if isinstance(error, ProviderError):
        tags.setdefault("provider", error.provider)
        if error.request_id:
            tags.setdefault("request_id", error.request_id)
    integration_id = tags.get("integration_id")
    if error is not None and integration_id:
        event["fingerprint"] = ["sync-error", str(integration_id), type(error).__name__]


def _sync_error_of(exc: BaseException) -> Any:
    # late: errors.py imports httpx, which a CLI start-up without Sentry need not pay for
    from sync_pipelines.errors import sync_error_of

    return sync_error_of(exc)


def _already_reported(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if getattr(current, _REPORTED, False):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _mark_reported(exc: BaseException) -> None:
    with contextlib.suppress(AttributeError):  # a __slots__ exception: reported again at worst
        setattr(exc, _REPORTED, True)
