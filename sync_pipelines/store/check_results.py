"""Rows of `integration_check_results` (sql/009_check_results.sql): every asset-check evaluation of
an integration, kept in the store because a failed check does not fail its run. The alert
sensor, reports and `trace` read them here. Reads are scoped by organization, except
`check_results_after`, the alert sensor's scan across tenants."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.store.database import dump_json, load_json, parse_timestamp

# time-ordered ids (UUIDv7), so results of one instant still read back in the order written
from sync_pipelines.store.dead_letters import new_dead_letter_id as new_check_result_id

_COLUMNS = (
    "id",
    "organization_id",
    "integration_id",
    "provider",
    "check_name",
    "passed",
    "severity",
    "description",
    "metadata",
    "run_id",
    "created_at",
)


@dataclass(frozen=True, slots=True)
class CheckResult:
    organization_id: str
    integration_id: str
    provider: str
    check_name: str
    passed: bool
    severity: str  # WARN | ERROR
    description: str
    created_at: datetime
    #: the figures the result was judged on
    metadata: dict[str, Any] = field(default_factory=dict)
    #: the Dagster run that evaluated it; None for a sensor's evaluation outside any run
    run_id: str | None = None
    id: str = field(default_factory=new_check_result_id)


def insert_check_results(conn: Connection, results: Sequence[CheckResult]) -> None:
    if not results:
        return
    conn.execute(
        sa.text(
            f"INSERT INTO integration_check_results ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join(':' + c for c in _COLUMNS)})"
        ),
        [
            {**{c: getattr(r, c) for c in _COLUMNS}, "metadata": dump_json(dict(r.metadata))}
            for r in results
        ],
    )


def check_results(
    conn: Connection,
    organization_id: str,
    *,
    integration_id: str | None = None,
    run_id: str | None = None,
    failed_only: bool = False,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[CheckResult]:
    """Results of one organization, oldest first, filtered by any of the arguments."""
    sql = f"SELECT {', '.join(_COLUMNS)} FROM integration_check_results WHERE organization_id = :o"
    params: dict[str, Any] = {"o": organization_id}
    for column, value in (("integration_id", integration_id), ("run_id", run_id)):
        if value is not None:
            sql += f" AND {column} = :{column}"
            params[column] = value
    if failed_only:
        sql += " AND passed = :false"
        params["false"] = False
    if since is not None:
        sql += " AND created_at >= :since"
        params["since"] = since
    sql += " ORDER BY created_at, id"
    if limit:
        sql += " LIMIT :limit"
        params["limit"] = limit
    return [_to_result(r) for r in conn.execute(sa.text(sql), params).mappings()]


def latest_check_at(conn: Connection, organization_id: str, integration_id: str) -> datetime | None:
    """When the integration's checks were last evaluated (by a run or a sensor)."""
    return parse_timestamp(
        conn.execute(
            sa.text(
                "SELECT max(created_at) FROM integration_check_results "
                "WHERE organization_id = :o AND integration_id = :i"
            ),
            {"o": organization_id, "i": integration_id},
        ).scalar()
    )


def check_results_after(
    conn: Connection,
    organization_id: str,
    *,
    since: datetime,
    after: tuple[datetime, str] | None = None,
    limit: int = 1000,
) -> list[CheckResult]:
    """One organization's results in (created_at, id) order after the position `after` =
    (created_at, id) of the last one read, or, with no position yet, created at or after
    `since` (the alert sensor reads every organization's in turn)."""
    if after is None:
        where, params = "created_at >= :since", {"since": since}
    else:
        where = "(created_at > :t OR (created_at = :t AND id > :id))"
        params = {"t": after[0], "id": after[1]}
    where, params = f"organization_id = :o AND {where}", {**params, "o": organization_id}
    rows = conn.execute(
        sa.text(
            f"SELECT {', '.join(_COLUMNS)} FROM integration_check_results WHERE {where} "
            "ORDER BY created_at, id LIMIT :limit"
        ),
        {**params, "limit": limit},
    ).mappings()
    return [_to_result(r) for r in rows]


def _to_result(row: Any) -> CheckResult:
    return CheckResult(
        id=row["id"],
        organization_id=row["organization_id"],
        integration_id=row["integration_id"],
        provider=row["provider"],
        check_name=row["check_name"],
        passed=bool(row["passed"]),
        severity=row["severity"],
        description=row["description"],
        metadata=load_json(row["metadata"]) or {},
        run_id=row["run_id"],
        created_at=parse_timestamp(row["created_at"]),
    )
