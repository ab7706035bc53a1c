"""The support bundle (`sync-pipelines export`): a trace chain as one JSON document for a ticket —
every activity row and sync-log row on the chain, the webhook events (headers already redacted
by the receiver), device provenance, dead letters, check results, alerts and, when a Dagster
instance is at hand, the runs' event-log lines — redacted as a whole before it is written.

Rows in the store are redacted when they are written; the bundle is redacted again (the rules in
observability/redaction.py, plus the current values of the chain's integrations' secrets) so a
secret that slipped into any row still never leaves in a bundle.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sync_pipelines.observability.redaction import redact, register_secret
from sync_pipelines.store.integrations import Integration
from sync_pipelines.tracing.chain import ProviderCall, TraceChain

SCHEMA_VERSION = 1


def support_bundle(
    chain: TraceChain, *, log_lines: Iterable[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """The chain as a JSON-ready, redacted dict."""
    register_integration_secrets(chain.integrations)
    runs = []
    for run in chain.runs:
        runs.append(
            {
                "run_id": run.run_id,
                "integration_ids": run.integration_ids,
                "sync_log_ids": [r["id"] for r in run.sync_logs],
                "operation_ids": [r["id"] for r in run.operations],
                "call_attempts_in_run": run.calls_total,
                "call_attempts_failed_in_run": run.calls_failed,
                "calls": [_call_ref(c) for c in chain.calls_of(run.run_id)],
            }
        )
    bundle = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": chain.generated_at,
        "id": chain.id,
        "kind": chain.kind,
        "organization_id": chain.organization_id,
        "integration_id": chain.integration_id,
        "also_matches": list(chain.also_matches),
        "integrations": [
            {
                "integration_id": i.integration_id,
                "provider": i.provider,
                "name": i.name,
                "enabled": i.enabled,
                "poll_interval_s": i.poll_interval_s,
            }
            for i in chain.integrations
        ],
        "chain": {
            "webhooks": [
                {
                    "webhook_event_row_id": link.event["id"] if link.event else None,
                    "event_id": link.event["event_id"] if link.event else None,
                    "delivery_row_ids": [r["id"] for r in link.deliveries],
                }
                for link in chain.webhooks
            ],
            "runs": runs,
            "calls_outside_runs": [_call_ref(c) for c in chain.calls_of(None)],
            "devices": [
                {
                    "integration_id": d.integration_id,
                    "external_id": d.external_id,
                    "device_last_run_id": d.device.get("last_run_id") if d.device else None,
                    "device_last_request_id": d.device.get("last_request_id") if d.device else None,
                    "state_last_run_id": d.state.get("last_run_id") if d.state else None,
                    "state_last_request_id": d.state.get("last_request_id") if d.state else None,
                }
                for d in chain.devices
            ],
        },
        "activity_rows": chain.activity_rows,
        "sync_log_rows": chain.sync_log_rows,
        "webhook_events": [link.event for link in chain.webhooks if link.event],
        "devices": [
            {"device": d.device, "state": d.state, "history": [asdict(c) for c in d.changes]}
            for d in chain.devices
        ],
        "dead_letters": list(chain.dead_letters),
        "check_results": list(chain.check_results),
        "alerts": [
            {"incident": a.incident, "notifications": list(a.notifications)} for a in chain.alerts
        ],
        "log_lines": [dict(line) for line in log_lines],
        "truncated": dict(chain.truncated),
    }
    return redact(jsonable(bundle))


def register_integration_secrets(integrations: Iterable[Integration]) -> None:
    """Mask the current value of every secret the chain's integrations name (when this process
    has it), whatever row it might have slipped into."""
    for integration in integrations:
        for variable in integration.secret_refs.values():
            register_secret(os.environ.get(variable))


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _call_ref(call: ProviderCall) -> dict[str, Any]:
    return {"request_id": call.request_id, "attempt_row_ids": [r["id"] for r in call.attempts]}
