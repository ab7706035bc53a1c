"""Retention: purge log rows past their retention period, table by table, in short transactions.

What goes, and what stays whatever its age (`RULES` below is the one list):

- logs (`SYNC_RETENTION_DAYS`, default 90): the activity log (on Postgres whole monthly
  partitions are dropped, then the rows of the boundary month and of the default partition
  before the cutoff are deleted, so the cutoff is exact), the sync log (except each integration
  stream's newest row and newest good row, which the poll schedule and health read), the
  devices' history (`device_changes`: monthly partitions on Postgres, dropped and trimmed like
  the activity log's), dead
  letters once resolved or quarantined, alert incidents once resolved, alert notifications
  (except an open incident's), check results and failed-run records;
- webhook events: processed (or failed with no dead letter left open), and never younger than
  7 days whatever the setting: a sender's late retry is absorbed by the row (sql/005);
- telemetry is data, not a log: its own setting (`SYNC_TELEMETRY_RETENTION_DAYS`, default 90,
  0 keeps it forever) for device_telemetry and telemetry_gaps. telemetry_sequences is each
  device's baseline and is never purged; nor is state (devices, device_states, desired_changes,
  sync_conflicts, integrations).

Rows go in key-ordered chunks of `chunk_size`, one transaction each, so a purge never holds
locks for long. It spans tenants the way the service role may (sql/026): every organization in
turn, each one's rows in that organization's own transactions; activity-log partitions, which
belong to no tenant, through the named functions; its activity row belongs to the `_system`
organization.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from sync_pipelines.clock import utc_now
from sync_pipelines.observability.activity import RETENTION, ActivityRecorder, ActivityScope
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.store.activity_partitions import (
    drop_activity_partition,
    ensure_activity_partitions,
    expired_partitions,
    list_activity_partitions,
)
from sync_pipelines.store.database import Store, format_timestamp, sql_list
from sync_pipelines.store.device_changes import (
    drop_device_change_partition,
    ensure_device_change_partitions,
)
from sync_pipelines.store.event_failures import SYSTEM_ORGANIZATION
from sync_pipelines.store.integrations import organization_ids
from sync_pipelines.store.sync_state import GOOD_SYNC_STATUSES

RETENTION_DAYS_ENV = "SYNC_RETENTION_DAYS"
TELEMETRY_RETENTION_DAYS_ENV = "SYNC_TELEMETRY_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 90
#: webhook events stay at least this long whatever the setting (sql/005_webhook_events.sql)
WEBHOOK_MIN_DAYS = 7

# which cutoff a rule is judged by
LOGS, WEBHOOKS, TELEMETRY = "logs", "webhooks", "telemetry"

_log = get_logger("store.retention")


class RetentionConfigError(ValueError):
    """A retention setting is unusable."""


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    days: int = DEFAULT_RETENTION_DAYS
    #: 0 keeps telemetry forever
    telemetry_days: int = DEFAULT_RETENTION_DAYS
    #: rows per delete transaction
    chunk_size: int = 5000
    #: activity partitions kept ready after the current month (Postgres)
    partitions_ahead: int = 2
    #: longest wait for the lock a partition drop needs; on timeout the rows are deleted instead
    lock_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        for name, value, least in (
            ("days", self.days, 1),
            ("telemetry_days", self.telemetry_days, 0),
            ("chunk_size", self.chunk_size, 1),
            ("partitions_ahead", self.partitions_ahead, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise RetentionConfigError(
                    f"retention {name} must be a whole number >= {least}, got {value!r}"
                )
        if not self.lock_timeout_s > 0:
            raise RetentionConfigError(
                f"retention lock_timeout_s must be > 0, got {self.lock_timeout_s!r}"
            )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> RetentionPolicy:
        """Defaults, then `SYNC_RETENTION_DAYS` / `SYNC_TELEMETRY_RETENTION_DAYS`, then the
        overrides that are not None (a run's config, a CLI option)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, variable, least in (
            ("days", RETENTION_DAYS_ENV, 1),
            ("telemetry_days", TELEMETRY_RETENTION_DAYS_ENV, 0),
        ):
            raw = environ.get(variable, "").strip()
            if not raw:
                continue
            value = int(raw) if raw.isdigit() else None
            if value is None or value < least:
                raise RetentionConfigError(
                    f"{variable} must be a whole number of days >= {least}, got {raw!r}"
                )
            values[field] = value
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def cutoffs(self, now: datetime) -> dict[str, datetime | None]:
        """Rows older than these go; None: kept forever."""
        logs = now - timedelta(days=self.days)
        return {
            LOGS: logs,
            WEBHOOKS: min(logs, now - timedelta(days=WEBHOOK_MIN_DAYS)),
            TELEMETRY: now - timedelta(days=self.telemetry_days) if self.telemetry_days else None,
        }


@dataclass(frozen=True, slots=True)
class PurgeRule:
    """One table's retention: `expired` is a predicate on `:cutoff` that already leaves out the
    protected rows; `key` orders the chunks (the primary key, so a chunk is an index range)."""

    table: str
    key: tuple[str, ...]
    clock: str
    expired: str


def _newer_sync(extra: str = "") -> str:
    return (
        "EXISTS (SELECT 1 FROM integration_sync_log newer "
        "WHERE newer.organization_id = integration_sync_log.organization_id "
        "AND newer.integration_id = integration_sync_log.integration_id "
        "AND newer.stream = integration_sync_log.stream "
        f"AND newer.started_at > integration_sync_log.started_at{extra})"
    )


_GOOD_SYNC = f"({sql_list(GOOD_SYNC_STATUSES)})"

#: in order: webhook events before dead letters (a failed event goes once its letter is settled)
RULES: tuple[PurgeRule, ...] = (
    PurgeRule("integration_activity_log", ("id",), LOGS, "created_at < :cutoff"),
    PurgeRule("device_changes", ("id",), LOGS, "at < :cutoff"),
    # A sync still `running` past the cutoff died long ago (monitoring calls it stale after an
    # hour), so status does not protect a row; the newest row and the newest good row of each
    # integration stream do, whatever their age: `sync_history` (last success, failure streak)
    # and the poll schedule (last start) read them.
    PurgeRule(
        "integration_sync_log",
        ("id",),
        LOGS,
        "integration_sync_log.started_at < :cutoff AND " + _newer_sync() + " AND "
        f"(integration_sync_log.status NOT IN {_GOOD_SYNC} OR "
        + _newer_sync(f" AND newer.status IN {_GOOD_SYNC}")
        + ")",
    ),
    # pending/processing rows wait to be processed; a failed one while its dead letter is open
    # (pending, retrying or quarantined: it can still be replayed)
    PurgeRule(
        "webhook_events",
        ("id",),
        WEBHOOKS,
        "webhook_events.received_at < :cutoff AND (webhook_events.status = 'processed' OR "
        "(webhook_events.status = 'failed' AND NOT EXISTS (SELECT 1 FROM dead_letters d "
        "WHERE d.organization_id = webhook_events.organization_id "
        "AND d.integration_id = webhook_events.integration_id AND d.stream = 'webhook_events' "
        "AND d.dedupe_key = webhook_events.event_id AND d.status <> 'resolved')))",
    ),
    # open letters (pending, retrying) wait for their replay whatever their age
    PurgeRule(
        "dead_letters",
        ("id",),
        LOGS,
        "status IN ('resolved', 'quarantined') AND updated_at < :cutoff",
    ),
    PurgeRule(
        "alert_notifications",
        ("id",),
        LOGS,
        "alert_notifications.created_at < :cutoff AND (alert_notifications.incident_id IS NULL "
        "OR NOT EXISTS (SELECT 1 FROM alert_incidents i WHERE i.id = alert_notifications.incident_id "
        "AND i.status = 'open'))",
    ),
    PurgeRule("alert_incidents", ("id",), LOGS, "status = 'resolved' AND resolved_at < :cutoff"),
    PurgeRule("integration_check_results", ("id",), LOGS, "created_at < :cutoff"),
    # the calls' hourly roll-up goes with the calls it sums
    PurgeRule(
        "provider_call_hours", ("organization_id", "integration_id", "hour"), LOGS, "hour < :cutoff"
    ),
    PurgeRule("event_failures", ("id",), LOGS, "created_at < :cutoff"),
    PurgeRule(
        "device_telemetry",
        ("integration_id", "external_id", "message_key"),
        TELEMETRY,
        "received_at < :cutoff",
    ),
    PurgeRule("telemetry_gaps", ("id",), TELEMETRY, "detected_at < :cutoff"),
)


@dataclass(frozen=True, slots=True)
class TablePurge:
    table: str
    #: None: this table is kept forever under the policy
    cutoff: datetime | None
    #: rows deleted (or, in a dry run, that would be), dropped partitions' rows included
    deleted: int
    partitions_dropped: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "cutoff": format_timestamp(self.cutoff) if self.cutoff else None,
            "deleted": self.deleted,
            "partitions_dropped": list(self.partitions_dropped),
        }


@dataclass(frozen=True, slots=True)
class RetentionReport:
    policy: RetentionPolicy
    now: datetime
    dry_run: bool
    tables: tuple[TablePurge, ...]
    partitions_created: tuple[str, ...]

    @property
    def deleted(self) -> dict[str, int]:
        return {t.table: t.deleted for t in self.tables}

    @property
    def total_deleted(self) -> int:
        return sum(t.deleted for t in self.tables)

    @property
    def partitions_dropped(self) -> tuple[str, ...]:
        return tuple(p for t in self.tables for p in t.partitions_dropped)

    def as_json(self) -> dict[str, Any]:
        """Everything: the activity row's metadata and the CLI's --json output."""
        return {
            "dry_run": self.dry_run,
            "now": format_timestamp(self.now),
            "retention_days": self.policy.days,
            "telemetry_retention_days": self.policy.telemetry_days,
            "webhook_min_days": WEBHOOK_MIN_DAYS,
            "deleted": self.deleted,
            "total_deleted": self.total_deleted,
            "partitions_dropped": list(self.partitions_dropped),
            "partitions_created": list(self.partitions_created),
            "tables": [t.as_json() for t in self.tables],
        }


def retention_scope(*, run_id: str, step_key: str, job_name: str) -> ActivityScope:
    """Who a purge acts as: the `_system` organization, because it spans every tenant."""
    return ActivityScope(
        organization_id=SYSTEM_ORGANIZATION, run_id=run_id, step_key=step_key, job_name=job_name
    )


def purge_expired(
    store: Store,
    policy: RetentionPolicy,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    recorder: ActivityRecorder | None = None,
) -> RetentionReport:
    """Purge every table by its rule (see the module docstring); a dry run only counts, creates
    nothing and records nothing. With a recorder, the purge is one `retention` activity
    operation carrying the per-table counts."""
    now = now or utc_now()
    if dry_run or recorder is None:
        return _purge(store, policy, now, dry_run)
    with recorder.operation(
        RETENTION, retention_days=policy.days, telemetry_retention_days=policy.telemetry_days
    ) as op:
        report = _purge(store, policy, now, dry_run)
        op.annotate(**report.as_json())
    return report


def _purge(store: Store, policy: RetentionPolicy, now: datetime, dry_run: bool) -> RetentionReport:
    created: list[str] = []
    if not dry_run:
        with store.transaction() as conn:
            created = ensure_activity_partitions(
                conn, now=now, months_ahead=policy.partitions_ahead
            ) + ensure_device_change_partitions(conn, now=now, months_ahead=policy.partitions_ahead)
        for name in created:
            _log.info("activity_partition_created", partition=name)
    cutoffs = policy.cutoffs(now)
    tables = []
    for rule in RULES:
        cutoff = cutoffs[rule.clock]
        if cutoff is None:
            tables.append(TablePurge(rule.table, None, 0))
            continue
        dropped: tuple[str, ...] = ()
        deleted = 0
        if rule.table in _PARTITIONED and store.is_postgres:
            dropped, deleted = _drop_expired_partitions(store, rule.table, cutoff, policy, dry_run)
        with store.connect() as conn:
            # the system's own rows (alerts about the service, failed runs of no integration,
            # this job's activity) belong to no registered organization
            organizations = sorted({*organization_ids(conn), SYSTEM_ORGANIZATION})
        for organization_id in organizations:
            scoped = store.scoped(organization_id)
            deleted += (
                _count(scoped, rule, cutoff)
                if dry_run
                else _delete_in_chunks(scoped, rule, cutoff, policy)
            )
        tables.append(TablePurge(rule.table, cutoff, deleted, dropped))
        _log.info(
            "retention_table_purged" if not dry_run else "retention_table_counted",
            table=rule.table,
            cutoff=format_timestamp(cutoff),
            deleted=deleted,
            partitions_dropped=list(dropped),
        )
    report = RetentionReport(policy, now, dry_run, tuple(tables), tuple(created))
    _log.info(
        "retention_finished",
        dry_run=dry_run,
        total_deleted=report.total_deleted,
        deleted=report.deleted,
        partitions_dropped=list(report.partitions_dropped),
        partitions_created=list(created),
    )
    return report


#: tables partitioned by month on Postgres -> how one expired partition is dropped
_PARTITIONED = {
    "integration_activity_log": drop_activity_partition,
    "device_changes": drop_device_change_partition,
}


def _drop_expired_partitions(
    store: Store, table: str, cutoff: datetime, policy: RetentionPolicy, dry_run: bool
) -> tuple[tuple[str, ...], int]:
    """Drop (or, dry, count) the monthly partitions wholly before the cutoff, one transaction
    each. A drop that cannot get its lock in time is left for tomorrow: its rows are deleted in
    chunks by the caller meanwhile, so the cutoff holds either way."""
    with store.connect() as conn:
        expired = expired_partitions(list_activity_partitions(conn, table), cutoff)
    if dry_run:
        return tuple(p.name for p in expired), 0
    dropped, rows = [], 0
    for partition in expired:
        try:
            with store.transaction() as conn:
                conn.exec_driver_sql(
                    f"SET LOCAL lock_timeout = {int(policy.lock_timeout_s * 1000)}"
                )
                rows += _PARTITIONED[table](conn, partition)
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                raise
            _log.warning(
                "activity_partition_drop_postponed",
                partition=partition.name,
                reason="lock wait exceeded lock_timeout; its rows are deleted instead",
                lock_timeout_s=policy.lock_timeout_s,
            )
            continue
        dropped.append(partition.name)
        _log.info("activity_partition_dropped", partition=partition.name)
    return tuple(dropped), rows


def _count(store: Store, rule: PurgeRule, cutoff: datetime) -> int:
    """The expired rows of the scoped store's organization."""
    with store.connect() as conn:
        return conn.execute(
            sa.text(
                f"SELECT count(*) FROM {rule.table} WHERE organization_id = :o AND {rule.expired}"
            ),
            {"cutoff": cutoff, "o": store.organization_id},
        ).scalar_one()


def _delete_in_chunks(
    store: Store, rule: PurgeRule, cutoff: datetime, policy: RetentionPolicy
) -> int:
    """Delete the scoped store's organization's expired rows `chunk_size` at a time, walking the
    key: each transaction finds the key of its chunk's last row, then deletes the expired rows
    of that key range."""
    keys = ", ".join(rule.key)
    deleted, after = 0, None
    while True:
        with store.transaction() as conn:
            params: dict[str, Any] = {
                "cutoff": cutoff,
                "offset": policy.chunk_size - 1,
                "o": store.organization_id,
            }
            where = f"organization_id = :o AND {rule.expired}"
            if after is not None:
                where += f" AND {_row(rule.key)} > {_row(rule.key, 'a')}"
                params.update(_params(after, "a"))
            last = conn.execute(
                sa.text(
                    f"SELECT {keys} FROM {rule.table} WHERE {where} "
                    f"ORDER BY {keys} LIMIT 1 OFFSET :offset"
                ),
                params,
            ).first()
            if last is not None:
                where += f" AND {_row(rule.key)} <= {_row(rule.key, 'z')}"
                params.update(_params(tuple(last), "z"))
            params.pop("offset")
            deleted += conn.execute(
                sa.text(f"DELETE FROM {rule.table} WHERE {where}"), params
            ).rowcount
        if last is None:  # that was the remainder, smaller than a chunk
            return deleted
        after = tuple(last)


def _row(columns: tuple[str, ...], prefix: str | None = None) -> str:
    """`id` / `:a0`, or a row value `(a, b)` / `(:a0, :a1)` for a composite key."""
    names = [f":{prefix}{i}" for i in range(len(columns))] if prefix else list(columns)
    return names[0] if len(names) == 1 else f"({', '.join(names)})"


def _params(values: tuple[Any, ...], prefix: str) -> dict[str, Any]:
    return {f"{prefix}{i}": v for i, v in enumerate(values)}
