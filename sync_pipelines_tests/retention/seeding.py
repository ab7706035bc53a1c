"""Rows of every table retention covers, written at a chosen time, each remembered with whether
the purge must keep it: `Seeded.kept(table)` / `.gone(table)` are the expected outcome."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.store.database import dump_json
from sync_pipelines.store.integrations import ensure_organization
from sync_pipelines_tests.owners import OWNER_KEYED_TABLES, own_integrations

#: table -> how a row is named in assertions (its primary key, as selected)
KEYS = {
    "integration_activity_log": "id",
    "integration_sync_log": "id",
    "webhook_events": "event_id",
    "dead_letters": "id",
    "alert_incidents": "id",
    "alert_notifications": "id",
    "integration_check_results": "id",
    "event_failures": "id",
    "device_telemetry": "message_key",
    "telemetry_gaps": "id",
    # one hour row per seeded integration id
    "provider_call_hours": "integration_id",
    # ids are the store's: a change is named by its (unique, seeded) request id
    "device_changes": "request_id",
}


class Seeded:
    def __init__(self, conn: Connection, organization_id: str = "org-a") -> None:
        self.conn = conn
        self.org = organization_id
        self.expected: dict[str, dict[str, bool]] = defaultdict(dict)
        # retention works organization by organization: the ones it knows (registered)
        ensure_organization(conn, organization_id)

    def kept(self, table: str) -> set[str]:
        return {k for k, keep in self.expected[table].items() if keep}

    def gone(self, table: str) -> set[str]:
        return {k for k, keep in self.expected[table].items() if not keep}

    def _insert(self, table: str, row: dict, *, kept: bool) -> str:
        if table in OWNER_KEYED_TABLES and row.get("integration_id") is not None:
            own_integrations(self.conn, row["organization_id"], row["integration_id"])
        cols = ", ".join(row)
        self.conn.execute(
            sa.text(f"INSERT INTO {table} ({cols}) VALUES ({', '.join(':' + c for c in row)})"), row
        )
        key = row[KEYS[table]]
        self.expected[table][key] = kept
        return key

    def activity(self, at: datetime, *, kept: bool, organization_id: str | None = None) -> str:
        ensure_organization(self.conn, organization_id or self.org)
        return self._insert(
            "integration_activity_log",
            {
                "id": str(uuid.uuid4()),
                "organization_id": organization_id or self.org,
                "integration_id": "int-a",
                "direction": "internal",
                "activity_type": "import",
                "status": "success",
                "attempt": 1,
                "metadata": dump_json({"n": 1}),
                "created_at": at,
            },
            kept=kept,
        )

    def sync_log(
        self,
        at: datetime,
        status: str,
        *,
        kept: bool,
        integration_id: str = "int-a",
        stream: str = "devices",
    ) -> str:
        return self._insert(
            "integration_sync_log",
            {
                "id": str(uuid.uuid4()),
                "organization_id": self.org,
                "integration_id": integration_id,
                "stream": stream,
                "status": status,
                "started_at": at,
                "completed_at": None if status == "running" else at,
                "fetched": 0,
                "created": 0,
                "updated": 0,
                "unchanged": 0,
                "failed": 0,
                "conflicts": 0,
                "pages": 0,
            },
            kept=kept,
        )

    def webhook_event(self, at: datetime, status: str, *, kept: bool) -> str:
        return self._insert(
            "webhook_events",
            {
                "id": str(uuid.uuid4()),
                "organization_id": self.org,
                "integration_id": "int-a",
                "provider": "golioth",
                "event_id": f"evt-{uuid.uuid4()}",
                "event_type": "device.updated",
                "payload": dump_json({}),
                "headers": dump_json({}),
                "delivery_id": "dlv-1",
                "status": status,
                "received_at": at,
                "processed_at": at if status == "processed" else None,
            },
            kept=kept,
        )

    def dead_letter(
        self,
        at: datetime,
        status: str,
        *,
        kept: bool,
        stream: str = "devices",
        dedupe_key: str | None = None,
    ) -> str:
        return self._insert(
            "dead_letters",
            {
                "id": str(uuid.uuid4()),
                "organization_id": self.org,
                "integration_id": "int-a",
                "provider": "golioth",
                "stream": stream,
                "dedupe_key": dedupe_key or str(uuid.uuid4()),
                "error_type": "validation",
                "max_attempts": 5,
                "status": status,
                "first_failed_at": at,
                "last_failed_at": at,
                "updated_at": at,
                "resolved_at": at if status == "resolved" else None,
                "quarantined_at": at if status == "quarantined" else None,
            },
            kept=kept,
        )

    def incident(self, at: datetime, status: str, *, kept: bool) -> str:
        return self._insert(
            "alert_incidents",
            {
                "id": str(uuid.uuid4()),
                "organization_id": self.org,
                "integration_id": "int-a",
                "rule": "error_rate",
                "dedupe_key": f"error_rate:{uuid.uuid4()}",
                "severity": "warning",
                "status": status,
                "summary": "error rate high",
                "occurrences": 1,
                "first_seen_at": at,
                "last_seen_at": at,
                "updated_at": at,
                "resolved_at": at if status == "resolved" else None,
            },
            kept=kept,
        )

    def notification(self, at: datetime, incident_id: str | None, *, kept: bool) -> str:
        return self._insert(
            "alert_notifications",
            {
                "id": str(uuid.uuid4()),
                "organization_id": self.org,
                "incident_id": incident_id,
                "channel": "ops",
                "kind": "firing" if incident_id else "heartbeat",
                "status": "sent",
                "created_at": at,
            },
            kept=kept,
        )

    def check_result(self, at: datetime, *, kept: bool) -> str:
        return self._insert(
            "integration_check_results",
            {
                "id": str(uuid.uuid4()),
                "organization_id": self.org,
                "integration_id": "int-a",
                "provider": "golioth",
                "check_name": "error_rate",
                "passed": True,
                "severity": "WARN",
                "description": "ok",
                "metadata": dump_json({"error_rate": 0.0}),
                "created_at": at,
            },
            kept=kept,
        )

    def event_failure(self, at: datetime, *, kept: bool) -> str:
        return self._insert(
            "event_failures",
            {
                "id": str(uuid.uuid4()),
                "organization_id": self.org,
                "run_id": str(uuid.uuid4()),
                "job_name": "sync_golioth_integration",
                "error_message": "boom",
                "status": "failed",
                "created_at": at,
            },
            kept=kept,
        )

    def telemetry(self, at: datetime, *, kept: bool) -> str:
        return self._insert(
            "device_telemetry",
            {
                "organization_id": self.org,
                "integration_id": "int-a",
                "external_id": "dev-1",
                "message_key": f"sha256:{uuid.uuid4().hex}",
                "topic": "devices/dev-1/telemetry",
                "payload": dump_json({"t": 21.5}),
                "received_at": at,
            },
            kept=kept,
        )

    def gap(self, at: datetime, *, kept: bool) -> str:
        return self._insert(
            "telemetry_gaps",
            {
                "id": str(uuid.uuid4()),
                "organization_id": self.org,
                "integration_id": "int-a",
                "external_id": "dev-1",
                "first_missing": 3,
                "last_missing": 4,
                "missing_count": 2,
                "detected_at": at,
            },
            kept=kept,
        )

    def device_change(self, at: datetime, *, kept: bool) -> str:
        own_integrations(self.conn, self.org, "int-a")
        return self._insert(
            "device_changes",
            {
                "organization_id": self.org,
                "integration_id": "int-a",
                "device_id": "dev-1",
                "at": at,
                "kind": "updated",
                "changes": dump_json({"name": ["a", "b"]}),
                "source": "sync",
                "request_id": str(uuid.uuid4()),
            },
            kept=kept,
        )

    def call_hour(self, at: datetime, *, kept: bool) -> str:
        return self._insert(
            "provider_call_hours",
            {
                "organization_id": self.org,
                "integration_id": f"int-{uuid.uuid4().hex[:8]}",
                "hour": at.replace(minute=0, second=0, microsecond=0),
                "calls": 3,
                "failed": 1,
                "latency_count": 3,
                "latency_sum_ms": 30.0,
                "latency_histogram": '{"25": 3}',
                "rolled_up_at": at,
            },
            kept=kept,
        )


def remaining(conn: Connection, table: str) -> set[str]:
    return set(conn.execute(sa.text(f"SELECT {KEYS[table]} FROM {table}")).scalars())
