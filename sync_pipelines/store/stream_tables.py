"""The table each sync stream writes, described once: its columns as a catalogue shows them (name,
type, meaning) and how many rows one integration has there.

The columns mirror the migrations (sql/001_core.sql, 002_telemetry.sql, 003_desired_exports.sql);
a test compares them with the migrated tables on SQLite and Postgres, so they cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class StreamTable:
    name: str
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


_SCOPE = (
    Column("organization_id", "text", "Tenant owning the row"),
    Column("integration_id", "text", "Integration (partition) that wrote the row"),
    Column("external_id", "text", "The device's id at the provider"),
)

DEVICES = StreamTable(
    "devices",
    (
        *_SCOPE,
        Column("name", "text", "Device name at the provider"),
        Column("hardware_ids", "json", "Hardware identifiers"),
        Column("tags", "json", "Provider tags"),
        Column("status", "text", "Provider status (e.g. enabled, disabled)"),
        Column("enabled", "boolean", "Whether the provider has the device enabled"),
        Column("attributes", "json", "Other provider attributes"),
        Column("provider_created_at", "timestamp", "Created at the provider"),
        Column("provider_updated_at", "timestamp", "Last changed at the provider"),
        Column("last_seen_at", "timestamp", "Last contact reported by the provider"),
        Column("content_hash", "text", "Hash of the synced content (unchanged rows are skipped)"),
        Column("last_run_id", "text", "Dagster run that last wrote the row"),
        Column("last_request_id", "text", "Request (or webhook event) id that last wrote the row"),
        Column("created_at", "timestamp", "First stored"),
        Column("updated_at", "timestamp", "Last written"),
        Column("deleted_at", "timestamp", "When a complete scan or a provider event deleted it"),
        Column(
            "registry_generation", "text", "Provider identity of the registry entry (AWS thingId)"
        ),
        Column("registry_version", "bigint", "Version of the last registry event applied"),
        Column("registry_at", "timestamp", "Time of the last registry event applied"),
        Column("connection_sequence", "text", "Ordering key of the last connection event applied"),
        Column("connection_at", "timestamp", "Time of the last connection event applied"),
        Column("connection_status", "text", "Connection state from the last event applied"),
    ),
)
DEVICE_STATES = StreamTable(
    "device_states",
    (
        *_SCOPE,
        Column("reported", "json", "State the device reported"),
        Column("desired", "json", "State asked of the device"),
        Column("version", "text", "Provider version / etag of the state"),
        Column("observed_at", "timestamp", "When the state was read"),
        Column("content_hash", "text", "Hash of the synced content (unchanged rows are skipped)"),
        Column("last_run_id", "text", "Dagster run that last wrote the row"),
        Column("last_request_id", "text", "Request (or webhook event) id that last wrote the row"),
        Column("updated_at", "timestamp", "Last written"),
    ),
)
DEVICE_TELEMETRY = StreamTable(
    "device_telemetry",
    (
        *_SCOPE,
        Column("message_key", "text", "Message identity (deduplicates redeliveries)"),
        Column("sequence", "bigint", "Device sequence number, where the device sends one"),
        Column("topic", "text", "Topic the message came on"),
        Column("payload", "json", "Message payload"),
        Column("device_time", "timestamp", "Time the device stamped"),
        Column("received_at", "timestamp", "When it was received"),
        Column("run_id", "text", "Dagster run that stored it"),
        Column("request_id", "text", "Batch (activity request id) it came in"),
    ),
)
DESIRED_CHANGES = StreamTable(
    "desired_changes",
    (
        Column("id", "text", "Change id"),
        *_SCOPE,
        Column("patch", "json", "Desired-state patch to push"),
        Column("base_version", "text", "Provider version our side saw when the change was made"),
        Column("status", "text", "pending | pushed | conflict | failed"),
        Column("attempts", "integer", "Push attempts"),
        Column("requested_by", "text", "Who asked for the change"),
        Column("created_at", "timestamp", "Requested at"),
        Column("updated_at", "timestamp", "Last changed"),
        Column("pushed_at", "timestamp", "Pushed to the provider at"),
        Column("version_after", "text", "Provider version after the push"),
        Column("run_id", "text", "Dagster run that pushed it"),
        Column("request_id", "text", "Request id of the push"),
        Column("error_type", "text", "Error category of a failed push"),
        Column("error_message", "text", "Why the push failed"),
    ),
)

#: sync stream (SyncResult.stream) -> the table it writes
STREAM_TABLES: dict[str, StreamTable] = {
    "devices": DEVICES,
    "device_states": DEVICE_STATES,
    "telemetry": DEVICE_TELEMETRY,
    "desired_exports": DESIRED_CHANGES,
}


def count_integration_rows(
    conn: Connection, table: StreamTable, organization_id: str, integration_id: str
) -> int:
    """How many rows of `table` belong to the integration (never another tenant's)."""
    if table not in STREAM_TABLES.values():  # its name goes into the SQL
        raise ValueError(f"{table.name!r} is not a sync stream's table")
    return int(
        conn.execute(
            sa.text(
                f"SELECT count(*) FROM {table.name} "
                "WHERE organization_id = :o AND integration_id = :i"
            ),
            {"o": organization_id, "i": integration_id},
        ).scalar_one()
    )
