"""A trace chain as text for a terminal (`sync-pipelines trace`): webhook → run → provider calls
(with every attempt) → rows written → dead letters → check results → alerts."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sync_pipelines.store.device_changes import DeviceChange
from sync_pipelines.store.trace_rows import Row
from sync_pipelines.text_table import shorten
from sync_pipelines.tracing.chain import ProviderCall, RunLink, TraceChain

_KIND_LABEL = {
    "webhook_event": "webhook event",
    "run": "run",
    "request": "request",
    "device": "device",
}
_COUNTS = ("fetched", "created", "updated", "unchanged", "failed", "conflicts")


def render_chain(chain: TraceChain) -> str:
    out = [_title(chain)]
    if chain.integrations:
        out.append(
            "integrations: "
            + ", ".join(
                f"{i.integration_id} ({i.provider}, {i.name!r})" for i in chain.integrations
            )
        )
    out += _webhooks(chain)
    for run in chain.runs:
        out += _run(chain, run)
    orphans = chain.calls_of(None)
    if orphans:
        out += ["", "Provider calls outside any run"]
        out += [line for call in orphans for line in _call(call)]
    out += _devices(chain)
    out += _dead_letters(chain)
    out += _checks(chain)
    out += _alerts(chain)
    if chain.truncated:
        out += [
            "",
            "Left out by limits: "
            + ", ".join(f"{k} {v}" for k, v in sorted(chain.truncated.items())),
        ]
    return "\n".join(out) + "\n"


def _title(chain: TraceChain) -> str:
    title = f"Trace of {_KIND_LABEL[chain.kind]} {chain.id} in organization {chain.organization_id}"
    if chain.integration_id:
        title += f", integration {chain.integration_id}"
    if chain.also_matches:
        title += " (also matches: " + ", ".join(_KIND_LABEL[k] for k in chain.also_matches) + ")"
    return title


def _webhooks(chain: TraceChain) -> list[str]:
    if not chain.webhooks:
        return [] if chain.kind not in ("webhook_event", "device") else ["", "Webhook: none"]
    out = ["", "Webhook"]
    for link in chain.webhooks:
        event = link.event
        if event is None:
            out.append("  delivery that stored no event")
        else:
            device = f", device {event['external_id']}" if event.get("external_id") else ""
            by = f" by run {event['run_id']}" if event.get("run_id") else ""
            out.append(
                f"  event {event['event_id']} [{event['id']}] {event['event_type']}{device}: "
                f"{event['status']}{by}"
            )
            line = f"    received {_time(event['received_at'])}"
            if event.get("processed_at"):
                delay = (event["processed_at"] - event["received_at"]).total_seconds() * 1000
                line += f", processed after {delay:,.1f} ms"
            line += f", attempts {event['attempts']}"
            if event.get("error_type"):
                line += f", error {event['error_type']}: {event.get('error_message') or ''}"
            out.append(line)
        for row in link.deliveries:
            out.append(
                f"    delivery {row['request_id']}: {row.get('method') or ''} {row.get('endpoint') or ''} "
                f"→ {row.get('status_code')} {row['status']}{_ms(row.get('response_time_ms'))}"
                f"{_error(row)}  at {_time(row['created_at'])}"
            )
        if not link.deliveries:
            out.append("    delivery row: not found (older than the activity log's retention?)")
    return out


def _run(chain: TraceChain, run: RunLink) -> list[str]:
    integrations = ", ".join(run.integration_ids)
    out = ["", f"Run {run.run_id}" + (f"  (integration {integrations})" if integrations else "")]
    for row in run.sync_logs:
        counts = " ".join(f"{k} {row.get(k, 0)}" for k in _COUNTS)
        line = (
            f"  sync  {row['stream']:<18} {row['status']:<8} {counts}{_ms(row.get('duration_ms'))}"
        )
        if row.get("error_type"):
            line += f"  {row['error_type']}: {row.get('error_message') or ''}"
        out.append(line)
    for row in run.operations:
        detail = ""
        meta = row.get("metadata") or {}
        if row.get("request_id"):
            detail += f" [request {row['request_id']}]"
        if isinstance(meta, dict) and meta.get("external_id"):
            detail += f" device {meta['external_id']}"
        out.append(
            f"  op    {row['activity_type']:<18} {row['status']:<8}{_ms(row.get('response_time_ms'))}"
            f"{detail}{_error(row)}  at {_time(row['created_at'])}"
        )
    calls = chain.calls_of(run.run_id)
    shown = sum(len(c.attempts) for c in calls)
    summary = f"  provider calls: {len(calls)} on the chain ({shown} of {run.calls_total} attempts in the run"
    summary += f", {run.calls_failed} failed or retried)" if run.calls_failed else ")"
    out.append(summary)
    for call in calls:
        out += _call(call)
    return out


def _call(call: ProviderCall) -> list[str]:
    out = [
        f"    {call.method or call.activity_type} {call.endpoint or ''}  [request {call.request_id}]"
    ]
    for row in call.attempts:
        code = row.get("status_code")
        out.append(
            f"      #{row['attempt']} {code if code is not None else '-':>3} {row['status']:<8}"
            f"{_ms(row.get('response_time_ms'))}{_error(row)}  at {_time(row['created_at'])}"
        )
    return out


def _devices(chain: TraceChain) -> list[str]:
    if not chain.devices:
        return ["", "Rows written: see the sync log counts above"] if chain.runs else []
    out = ["", "Rows written (provenance as it stands now)"]
    for link in chain.devices:
        key = f"{link.integration_id}/{link.external_id}"
        out.append(f"  device {key}: " + _provenance(link.device) + _deletion(link.device))
        out.append(f"  state  {key}: " + _provenance(link.state, version=True))
        if link.changes:
            out.append(f"  history of {key}, newest first:")
            out += [_change(c) for c in link.changes]
    return out


def _change(change: DeviceChange) -> str:
    """One history row: when, what, who wrote it, and the fields old → new (or the reason)."""
    head = f"    {_time(change.at)}  {change.kind:<8} {change.source:<13}"
    head += f" run {change.run_id or '-'}, request {change.request_id or '-'}"
    if change.kind == "rejected":
        return f"{head}: {shorten(change.reason or '', 200)}"
    fields = [
        f"{name} {_value(pair[0])} → {_value(pair[1])}"
        for name, pair in sorted(change.changes.items())
        if isinstance(pair, list) and len(pair) == 2 and pair[0] != pair[1]
    ]
    return f"{head}: " + shorten("; ".join(fields), 300) if fields else head


def _value(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


def _provenance(row: Row | None, *, version: bool = False) -> str:
    if row is None:
        return "no row"
    text = f"last written by run {row.get('last_run_id') or '-'}, request {row.get('last_request_id') or '-'}"
    text += f" at {_time(row.get('updated_at'))}"
    if version and row.get("version"):
        text += f" (version {row['version']})"
    return text


def _deletion(row: Row | None) -> str:
    """A soft-deleted device: when (its provenance is the run that deleted it)."""
    if row is None or not row.get("deleted_at"):
        return ""
    return f"; DELETED at {_time(row['deleted_at'])}"


def _dead_letters(chain: TraceChain) -> list[str]:
    if not chain.dead_letters:
        return ["", "Dead letters: none"]
    out = ["", "Dead letters"]
    for row in chain.dead_letters:
        device = f" device {row['external_id']}" if row.get("external_id") else ""
        out.append(
            f"  {row['id']} {row['stream']}{device}: {row['status']}, attempts {row['attempts']}/"
            f"{row['max_attempts']}, {row['error_type']}: {row.get('error_message') or ''}"
            f" (run {row.get('run_id') or '-'}, request {row.get('request_id') or '-'})"
        )
    return out


def _checks(chain: TraceChain) -> list[str]:
    if not chain.check_results:
        return ["", "Check results: none"]
    out = ["", "Check results"]
    for row in chain.check_results:
        verdict = "passed" if row["passed"] else f"FAILED ({row['severity']})"
        # a description may run over lines (the health check: its state, then a reason a line)
        first, *more = str(row["description"]).splitlines() or [""]
        out.append(
            f"  {row['check_name']} on {row['integration_id']}: {verdict} — {first}"
            f"  at {_time(row['created_at'])}"
        )
        out += [f"      {line}" for line in more]
    return out


def _alerts(chain: TraceChain) -> list[str]:
    if not chain.alerts:
        return ["", "Alerts: none"]
    out = ["", "Alerts"]
    for link in chain.alerts:
        i = link.incident
        out.append(
            f"  {i['severity']} {i['rule']} [{i['status']}] {i['summary']} "
            f"(first {_time(i['first_seen_at'])}, seen {i['occurrences']}×)"
        )
        for n in link.notifications:
            out.append(
                f"    {n['kind']} → {n['channel']}: {n['status']}"
                f"{' ' + str(n['status_code']) if n.get('status_code') else ''}  at {_time(n['created_at'])}"
            )
    return out


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if value else "-"


def _ms(value: Any) -> str:
    return f"  {float(value):,.1f} ms" if value is not None else ""


def _error(row: Row) -> str:
    if not row.get("error_type"):
        return ""
    return f"  {row['error_type']}: {shorten(row.get('error_message') or '', 160)}"
