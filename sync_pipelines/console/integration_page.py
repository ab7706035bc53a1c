"""The console's page of one integration: its settings (secret references by variable name, never
a value), enabled flag, poll interval and next scheduled sync, health with its reasons (the one
health model, monitoring/health.py) and its timeline of the last 90 days (store/
integration_timeline.py) — syncs, alerts opened and resolved, configuration changes, shape
changes — newest first, one keyset page at a time. An integration paused for shape drift says so,
with the reason and how to resume (sync/shape_drift.py)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.console.filters import FilterError
from sync_pipelines.console.trace import dagster_run_url
from sync_pipelines.monitoring.health import integration_health
from sync_pipelines.observability.redaction import redact, redact_url
from sync_pipelines.store.dead_letters import QUARANTINED, dead_letter_counts
from sync_pipelines.store.integration_timeline import KINDS, TimelineEntry, timeline_page
from sync_pipelines.store.integrations import Integration, find_integration_owner, get_integration
from sync_pipelines.store.shapes import drift_pause, integration_shapes
from sync_pipelines.store.sync_state import last_sync_started_at
from sync_pipelines.sync.inventory import STREAM as DEVICES_STREAM
from sync_pipelines.sync.polling import next_poll_at
from sync_pipelines.sync.shapes import ShapeDiff
from sync_pipelines.tracing.bundle import jsonable, register_integration_secrets

TIMELINE_DAYS = 90
TIMELINE_CSV_COLUMNS = ("at", "kind", "id", "status", "summary", "run_id")


class IntegrationNotFound(LookupError):
    """No integration of that id the operator may see (another organization's is not found)."""


@dataclass(frozen=True, slots=True)
class TimelineCursor:
    """Where the next timeline page starts: after the entry (at, kind, id), newest first."""

    at: datetime
    kind: str
    id: str

    def encode(self) -> str:
        raw = f"{self.at.astimezone(UTC).isoformat()}|{self.kind}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str | None) -> TimelineCursor | None:
        if not value:
            return None
        wrong = FilterError("the page cursor `after` is not one this console wrote")
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            at, kind, row_id = raw.split("|", 2)
            parsed = datetime.fromisoformat(at)
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise wrong from exc
        if kind not in KINDS or not row_id or parsed.tzinfo is None:
            raise wrong
        return cls(parsed, kind, row_id)


@dataclass(frozen=True, slots=True)
class TimelinePage:
    entries: list[TimelineEntry]
    #: where the next page starts; None on the last page
    next_cursor: TimelineCursor | None


def find_visible_integration(
    conn: Connection, integration_id: str, organization_id: str | None
) -> Integration:
    """The integration, within `organization_id` when given (a scoped operator: another
    organization's integration is not found, whatever the URL says)."""
    found = (
        find_integration_owner(conn, integration_id)
        if organization_id is None
        else get_integration(conn, organization_id, integration_id)
    )
    if found is None:
        raise IntegrationNotFound(f"no integration {integration_id!r}")
    return found


def integration_timeline(
    conn: Connection,
    integration: Integration,
    *,
    now: datetime,
    after: TimelineCursor | None,
    limit: int,
) -> TimelinePage:
    found = timeline_page(
        conn,
        integration.organization_id,
        integration.integration_id,
        since=now - timedelta(days=TIMELINE_DAYS),
        after=None if after is None else (after.at, after.kind, after.id),
        limit=limit + 1,
    )
    more = len(found) > limit
    found = found[:limit]
    last = found[-1] if found else None
    cursor = TimelineCursor(last.at, last.kind, last.id) if more and last else None
    return TimelinePage(found, cursor)


def iter_timeline(
    conn: Connection, integration: Integration, *, now: datetime, max_rows: int, page_size: int
) -> Iterator[TimelineEntry]:
    """Every entry of the 90 days up to `max_rows`, newest first, page by page (the export)."""
    after, sent = None, 0
    while sent < max_rows:
        page = integration_timeline(
            conn, integration, now=now, after=after, limit=min(page_size, max_rows - sent)
        )
        yield from page.entries
        sent += len(page.entries)
        if page.next_cursor is None:
            return
        after = page.next_cursor


def integration_summary(
    conn: Connection, integration: Integration, *, now: datetime
) -> dict[str, Any]:
    """What the page shows above the timeline; redacted."""
    register_integration_secrets([integration])
    health = integration_health(conn, integration, now=now)
    last_started = last_sync_started_at(
        conn, integration.organization_id, integration.integration_id, DEVICES_STREAM
    )
    due_at = next_poll_at(last_started, integration.poll_interval_s)
    return {
        "organization_id": integration.organization_id,
        "integration_id": integration.integration_id,
        "provider": integration.provider,
        "name": redact(integration.name),
        "enabled": integration.enabled,
        "poll_interval_s": integration.poll_interval_s,
        "last_sync_started_at": _iso(last_started),
        # a disabled integration is not polled at all
        "next_sync_at": _iso(due_at) if integration.enabled else None,
        "next_sync_due_now": integration.enabled and (due_at is None or due_at <= now),
        "settings": shown_settings(integration.settings),
        # the variable's name only: the value is never resolved here
        "secret_refs": dict(sorted(integration.secret_refs.items())),
        "health": {
            "state": health.state,
            "reasons": list(redact(health.reasons)),
            "last_success_at": _iso(health.last_success_at),
            "last_attempt_at": _iso(health.last_attempt_at),
            "last_error": redact(health.last_error),
            "dead_letters": health.dead_letters,
        },
        # open letters (pending, retrying) are the health model's; those set aside beside them
        "quarantined_dead_letters": dead_letter_counts(
            conn, integration.organization_id, integration.integration_id
        )[QUARANTINED],
        "created_at": _iso(integration.created_at),
        "updated_at": _iso(integration.updated_at),
        "shape_drift": shape_drift_summary(conn, integration),
    }


def shape_drift_summary(conn: Connection, integration: Integration) -> dict[str, Any]:
    """The shape drift policy, each stream's known shape and its newest change, and — when the
    policy paused the integration — why and how to resume (sync/shape_drift.py)."""
    policy = integration.settings.get("shape_drift_policy") or "alert"
    shapes = integration_shapes(conn, integration.organization_id, integration.integration_id)
    paused = drift_pause(conn, integration.organization_id, integration.integration_id)
    return {
        "policy": policy,
        "paused": paused.pause_reason() if paused and not integration.enabled else None,
        "streams": [
            {
                "stream": s.stream,
                "paths": s.paths,
                "baseline_at": _iso(s.baseline_at),
                "change_at": _iso(s.change_at),
                "unacknowledged": s.unacknowledged,
                "change": ShapeDiff.from_json(s.change).summary(8) if s.change else None,
            }
            for s in shapes
        ],
    }


def shown_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings as the page shows them: URLs without passwords or query tokens, sensitive
    keys masked (observability/redaction.py)."""
    return redact(
        {
            k: redact_url(v) if isinstance(v, str) and "://" in v else v
            for k, v in sorted(settings.items())
        }
    )


def entry_json(entry: TimelineEntry, environ: Mapping[str, str] | None) -> dict[str, Any]:
    details = jsonable(entry.details)
    run_id = entry.details.get("run_id")
    return redact(
        {
            "at": entry.at.isoformat(),
            "kind": entry.kind,
            "id": entry.id,
            "status": entry.status,
            "summary": entry_summary(entry),
            "run_id": run_id,
            "run_url": dagster_run_url(run_id, environ),
            "details": details,
        }
    )


def entry_summary(entry: TimelineEntry) -> str:
    """One line saying what happened."""
    d = entry.details
    if entry.kind == "sync":
        counts = ", ".join(
            f"{d[k] or 0} {k}"
            for k in ("fetched", "created", "updated", "unchanged", "deleted", "failed")
        )
        duration = f" in {d['duration_ms'] / 1000:.1f} s" if d.get("duration_ms") else ""
        error = f": {d['error_type']}: {d['error_message']}" if d.get("error_type") else ""
        return f"{d['stream']} sync {entry.status}{duration} — {counts}{error}"
    if entry.kind == "config_change":
        who = f" by {d['actor']}" if d.get("actor") else ""
        changed = ", ".join(d["changed"]) or "—"
        why = f" — {d['reason']}" if d.get("reason") else ""
        return f"{d['action']}{who}: {changed}{why}"
    if entry.kind == "shape_changed":
        return shape_change_summary(entry)
    prefix = "opened" if entry.kind == "alert_opened" else "resolved"
    reason = (
        f" ({d['resolution']})" if entry.kind == "alert_resolved" and d.get("resolution") else ""
    )
    return f"{prefix} {d['severity']} {d['rule']}: {d['summary']}{reason}"


def shape_change_summary(entry: TimelineEntry) -> str:
    """`devices shape changed (alerted): + attributes.x (string); - attributes.y (number)`."""
    d = entry.details
    diff = ShapeDiff.from_json(
        {"added": d.get("added"), "removed": d.get("removed"), "changed": d.get("changed")}
    )
    scope = "" if d.get("complete") else ", additions only (not a complete scan)"
    return f"{d.get('stream')} shape changed ({entry.status}{scope}): {diff.summary(8)}"


def csv_row(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in TIMELINE_CSV_COLUMNS}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
