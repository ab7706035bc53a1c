"""Provider events applied in their own order, not in arrival order (sql/021_event_order.sql).

Senders deliver at least once and unordered (AWS registry and lifecycle events, Event Grid), so
each device row keeps the ordering key of the newest event applied to it, per kind, and every
write here is one conditional statement — `UPDATE … WHERE <the row's key is older>` — so two
processors racing on one device cannot both win: on Postgres the second waits for the first's
row lock and re-checks the condition against what it committed.

- **Registry** (created / updated / deleted): the key is (`registry_generation`,
  `registry_version`, `registry_at`). Events of the same generation (AWS `thingId`) compare by
  version; otherwise (a re-created thing starts again at version 1; Azure events carry no
  generation) by event time. A deletion wins a tie with the write of its own version. A row no
  event has written yet (polled, or a placeholder) is overwritten unless the poll saw a provider
  change (`provider_updated_at`) later than the event.
- **Connection** (connected / disconnected): `connection_sequence` (fixed-width text compared
  bytewise) when both sides have one, the later `connection_at` breaking a tie; else
  `connection_at`.

A deleted device keeps status `deleted` whatever connection event comes; a registry write newer
than the deletion restores it. A deletion of a device never stored leaves a tombstone row
(deleted, with the deletion's key), so the older creation that arrives after it is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.store.dead_letters import resolve_letters_of_deleted_devices
from sync_pipelines.store.devices import DEVICE_CONTENT_COLUMNS

Outcome = Literal["created", "updated", "unchanged"]

_KEY = "organization_id = :o AND integration_id = :i AND external_id = :e"


@dataclass(frozen=True, slots=True)
class RegistryKey:
    """Where a registry event sits in its device's history."""

    at: datetime  # the event's time (or, lacking one, when it was received)
    version: int | None = None
    generation: str | None = None  # the provider's identity of this incarnation (AWS thingId)


@dataclass(frozen=True, slots=True)
class ConnectionKey:
    """Where a connection event sits: its sequence (fixed width, bytewise) and/or its time."""

    sequence: str | None
    at: datetime | None


@dataclass(frozen=True, slots=True)
class DeviceRef:
    organization_id: str
    integration_id: str
    external_id: str
    run_id: str | None
    request_id: str
    now: datetime

    def params(self) -> dict[str, Any]:
        return {
            "o": self.organization_id,
            "i": self.integration_id,
            "e": self.external_id,
            "r": self.run_id,
            "q": self.request_id,
            "t": self.now,
        }


def _registry_newer(key: RegistryKey, *, deleting: bool) -> str:
    """SQL: the event keyed `key` (params :at, :v, :gen) is newer than the row's registry key."""
    unwritten = (
        "(registry_at IS NULL AND (provider_updated_at IS NULL OR provider_updated_at <= :at))"
    )
    clauses = [unwritten]
    by_time = "registry_at < :at"
    tie = "registry_at = :at"
    if key.generation is not None and key.version is not None:
        other = "(registry_generation IS NULL OR registry_generation <> :gen)"
        clauses.append("(registry_generation = :gen AND registry_version < :v)")
        by_time, tie = (
            f"({other} AND {by_time})",
            "(registry_generation = :gen AND registry_version = :v)",
        )
    clauses.append(by_time)
    if deleting:
        clauses.append(f"({tie} AND deleted_at IS NULL)")
    return "(" + " OR ".join(clauses) + ")"


def _registry_params(key: RegistryKey) -> dict[str, Any]:
    return {"at": key.at, "v": key.version, "gen": key.generation}


_REGISTRY_SET = "registry_generation = :gen, registry_version = :v, registry_at = :at"
_PROVENANCE = "last_run_id = :r, last_request_id = :q, updated_at = :t"


def apply_registry_write(
    conn: Connection, ref: DeviceRef, row: Mapping[str, Any], key: RegistryKey
) -> Outcome:
    """A device created or updated by an event: `row` (shaped like sync/records.py's device_row)
    is stored if the event is newer than the row's registry key; a deleted device is restored.
    The status is the newest connection event's when one was applied."""
    params = {**ref.params(), **_registry_params(key), **_device_values(row)}
    created = (
        conn.execute(
            sa.text(
                "INSERT INTO devices (organization_id, integration_id, external_id, name, "
                "hardware_ids, tags, status, enabled, attributes, provider_created_at, "
                "provider_updated_at, last_seen_at, content_hash, last_run_id, last_request_id, "
                "created_at, updated_at, registry_generation, registry_version, registry_at) "
                "VALUES (:o, :i, :e, :name, :hardware_ids, :tags, :status, :enabled, :attributes, "
                ":provider_created_at, :provider_updated_at, :last_seen_at, :content_hash, :r, :q, "
                ":t, :t, :gen, :v, :at) ON CONFLICT (integration_id, external_id) DO NOTHING"
            ),
            params,
        ).rowcount
        == 1
    )
    if created:
        return "created"
    if row.get("last_seen_at") is not None:  # moves forward, however late the event
        conn.execute(
            sa.text(
                f"UPDATE devices SET last_seen_at = :last_seen_at WHERE {_KEY} "
                "AND (last_seen_at IS NULL OR last_seen_at < :last_seen_at)"
            ),
            params,
        )
    updated = conn.execute(
        sa.text(
            "UPDATE devices SET name = :name, hardware_ids = :hardware_ids, tags = :tags, "
            "status = COALESCE(connection_status, :status), enabled = :enabled, "
            "attributes = :attributes, provider_created_at = :provider_created_at, "
            "provider_updated_at = :provider_updated_at, content_hash = :content_hash, "
            f"deleted_at = NULL, {_PROVENANCE}, {_REGISTRY_SET} "
            f"WHERE {_KEY} AND {_registry_newer(key, deleting=False)}"
        ),
        params,
    ).rowcount
    return "updated" if updated else "unchanged"


def apply_registry_deletion(conn: Connection, ref: DeviceRef, key: RegistryKey) -> Outcome:
    """The provider deleted the device: soft-delete it if the deletion is newer than the row's
    registry key ('updated'); a device never stored gets a deleted tombstone ('created'); one
    deleted already only takes the newer key ('unchanged')."""
    params = {**ref.params(), **_registry_params(key)}
    if (
        conn.execute(
            sa.text(
                "INSERT INTO devices (organization_id, integration_id, external_id, name, "
                "hardware_ids, tags, status, attributes, content_hash, last_run_id, last_request_id, "
                "created_at, updated_at, deleted_at, registry_generation, registry_version, "
                "registry_at) VALUES (:o, :i, :e, :e, '[]', '[]', 'deleted', '{}', '', :r, :q, :t, "
                ":t, :t, :gen, :v, :at) ON CONFLICT (integration_id, external_id) DO NOTHING"
            ),
            params,
        ).rowcount
        == 1
    ):
        return "created"
    newer = _registry_newer(key, deleting=True)
    # content_hash emptied, like every deletion (store/deletions.py): a later inventory rewrites it
    deleted = conn.execute(
        sa.text(
            "UPDATE devices SET status = 'deleted', deleted_at = :t, content_hash = '', "
            f"{_PROVENANCE}, {_REGISTRY_SET} WHERE {_KEY} AND deleted_at IS NULL AND {newer}"
        ),
        params,
    ).rowcount
    if deleted:
        resolve_letters_of_deleted_devices(
            conn,
            ref.organization_id,
            ref.integration_id,
            ":e",
            params,
            run_id=ref.run_id,
            now=ref.now,
        )
        return "updated"
    conn.execute(
        sa.text(
            f"UPDATE devices SET {_PROVENANCE}, {_REGISTRY_SET} WHERE {_KEY} "
            f"AND deleted_at IS NOT NULL AND {newer}"
        ),
        params,
    )
    return "unchanged"


def apply_connection(
    conn: Connection,
    ref: DeviceRef,
    status: str,
    key: ConnectionKey,
    *,
    seen_at: datetime | None = None,
) -> Outcome:
    """A connection event: the status (kept `deleted` on a deleted device) and its key, written
    if newer than the row's connection key. A device not stored yet gets a placeholder row (name
    = id, empty content hash: the next inventory sync rewrites it whole)."""
    params: dict[str, Any] = {
        **ref.params(),
        "s": status,
        "seq": key.sequence,
        "cat": key.at,
        "seen": seen_at,
    }
    created = (
        conn.execute(
            sa.text(
                "INSERT INTO devices (organization_id, integration_id, external_id, name, "
                "hardware_ids, tags, status, attributes, content_hash, last_seen_at, last_run_id, "
                "last_request_id, created_at, updated_at, connection_sequence, connection_at, "
                "connection_status) VALUES (:o, :i, :e, :e, '[]', '[]', :s, '{}', '', :seen, :r, "
                ":q, :t, :t, :seq, :cat, :s) ON CONFLICT (integration_id, external_id) DO NOTHING"
            ),
            params,
        ).rowcount
        == 1
    )
    if created:
        return "created"
    clauses = ["(connection_sequence IS NULL AND connection_at IS NULL)"]
    if key.sequence is not None:
        clauses.append("connection_sequence < :seq")
    if key.at is not None:
        by_time = "(connection_at IS NULL OR connection_at < :cat)"
        if key.sequence is not None:  # the sequence decides where both sides have one; the
            # event time breaks a tie (two events of one AWS connection share its version)
            clauses.append(f"(connection_sequence = :seq AND {by_time})")
            by_time = f"(connection_sequence IS NULL AND {by_time})"
        clauses.append(by_time)
    if seen_at is not None:  # the device was seen then, however late the news of it arrives
        conn.execute(
            sa.text(
                f"UPDATE devices SET last_seen_at = :seen WHERE {_KEY} "
                "AND (last_seen_at IS NULL OR last_seen_at < :seen)"
            ),
            params,
        )
    updated = conn.execute(
        sa.text(
            "UPDATE devices SET status = CASE WHEN deleted_at IS NULL THEN :s ELSE status END, "
            "connection_status = :s, connection_sequence = :seq, connection_at = :cat, "
            f"{_PROVENANCE} WHERE {_KEY} AND ({' OR '.join(clauses)})"
        ),
        params,
    ).rowcount
    return "updated" if updated else "unchanged"


def _device_values(row: Mapping[str, Any]) -> dict[str, Any]:
    return {c: row.get(c) for c in DEVICE_CONTENT_COLUMNS}
