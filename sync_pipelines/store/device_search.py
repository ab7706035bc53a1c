"""An integration's devices as the console lists them: searched by id or name, filtered to the
active, the deleted or the failing ones, one keyset page at a time in device-id order.

A device is *failing* while it has an unresolved dead letter of any stream — open (pending,
retrying: what health counts) or quarantined (set aside, so still not stored): that is what "a record of it could not be stored" means everywhere else (health counts,
`dead-letters list`, sql/why_is_device_not_updating.sql). Its last error is that newest open
letter's. The failing filter is read from the letters, so it also lists a device whose every
record was refused and which the store therefore never held (status `not stored`): the first
device an operator asking "why isn't it updating?" must find. A search is a case-insensitive substring of the device id or the name, with `%`, `_`
and `\\` taken literally.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.store.database import parse_timestamp
from sync_pipelines.store.dead_letters import QUARANTINED, RESOLVED

ALL = "all"
ACTIVE = "active"
DELETED = "deleted"
FAILING = "failing"
FILTERS = (ALL, ACTIVE, DELETED, FAILING)
#: the status of a failing device the store holds no row of
NOT_STORED = "not stored"

_WHERE = {
    ALL: "",
    ACTIVE: " AND d.deleted_at IS NULL",
    DELETED: " AND d.deleted_at IS NOT NULL",
}
_COLUMNS = "d.name, d.status, d.deleted_at, d.updated_at, d.last_run_id, d.last_seen_at"
_MATCH = " AND (lower({id}) LIKE :pattern ESCAPE '\\' OR lower(d.name) LIKE :pattern ESCAPE '\\')"
#: the failing devices: the open letters' device ids, with the device row where there is one
_FAILING = (
    f"SELECT l.external_id, {_COLUMNS} FROM (SELECT DISTINCT external_id FROM dead_letters "
    "WHERE organization_id = :o AND integration_id = :i AND external_id IS NOT NULL "
    f"AND status <> '{RESOLVED}'{{after}}) AS l LEFT JOIN devices AS d "
    "ON d.organization_id = :o AND d.integration_id = :i AND d.external_id = l.external_id "
    "WHERE 1 = 1{match} ORDER BY l.external_id LIMIT :n"
)


@dataclass(frozen=True, slots=True)
class DeviceListing:
    external_id: str
    #: None for a device the store never held (`NOT_STORED`)
    name: str | None
    #: the provider's status word; `deleted` once a complete scan no longer listed the device
    status: str | None
    deleted_at: datetime | None
    #: when a sync or an event last changed the stored row, and the run that did
    updated_at: datetime | None
    last_run_id: str | None
    #: when the provider last saw the device
    last_seen_at: datetime | None
    #: pending or retrying (what health calls open)
    open_dead_letters: int
    quarantined_dead_letters: int
    last_error: str | None
    last_error_at: datetime | None


def search_devices(
    conn: Connection,
    organization_id: str,
    integration_id: str,
    *,
    query: str = "",
    which: str = ALL,
    after: str | None = None,
    limit: int = 50,
) -> list[DeviceListing]:
    """Up to `limit` devices after the device id `after`, in device-id order."""
    if which not in FILTERS:
        raise ValueError(f"unknown device filter {which!r}; one of {', '.join(FILTERS)}")
    params: dict[str, Any] = {"o": organization_id, "i": integration_id, "n": limit}
    match, after_sql = "", ""
    if query:
        match = _MATCH.format(id="l.external_id" if which == FAILING else "d.external_id")
        params["pattern"] = f"%{_escape_like(query.lower())}%"
    if after is not None:
        after_sql = " AND external_id > :after"
        params["after"] = after
    if which == FAILING:
        sql = _FAILING.format(after=after_sql, match=match)
    else:
        sql = (
            f"SELECT d.external_id, {_COLUMNS} FROM devices AS d "
            f"WHERE d.organization_id = :o AND d.integration_id = :i{_WHERE[which]}{match}"
            f"{after_sql.replace('external_id', 'd.external_id')} ORDER BY d.external_id LIMIT :n"
        )
    rows = conn.execute(sa.text(sql), params).all()
    letters = _open_letters(conn, organization_id, integration_id, [r.external_id for r in rows])
    found = []
    for r in rows:
        count, quarantined, error, error_at = letters.get(r.external_id, (0, 0, None, None))
        found.append(
            DeviceListing(
                external_id=r.external_id,
                name=r.name,
                status=_status(r),
                deleted_at=parse_timestamp(r.deleted_at),
                updated_at=parse_timestamp(r.updated_at),
                last_run_id=r.last_run_id,
                last_seen_at=parse_timestamp(r.last_seen_at),
                open_dead_letters=count,
                quarantined_dead_letters=quarantined,
                last_error=error,
                last_error_at=error_at,
            )
        )
    return found


def count_devices_by_filter(
    conn: Connection, organization_id: str, integration_id: str
) -> dict[str, int]:
    """How many devices each filter holds (the tabs above the list)."""
    row = conn.execute(
        sa.text(
            "SELECT count(*) AS total, "
            "sum(CASE WHEN deleted_at IS NULL THEN 1 ELSE 0 END) AS active "
            "FROM devices WHERE organization_id = :o AND integration_id = :i"
        ),
        {"o": organization_id, "i": integration_id},
    ).one()
    failing = conn.execute(
        sa.text(
            "SELECT count(DISTINCT external_id) FROM dead_letters WHERE organization_id = :o "
            f"AND integration_id = :i AND external_id IS NOT NULL AND status <> '{RESOLVED}'"
        ),
        {"o": organization_id, "i": integration_id},
    ).scalar_one()
    total, active = int(row.total or 0), int(row.active or 0)
    return {ALL: total, ACTIVE: active, DELETED: total - active, FAILING: int(failing or 0)}


def _open_letters(
    conn: Connection, organization_id: str, integration_id: str, external_ids: list[str]
) -> dict[str, tuple[int, int, str | None, datetime | None]]:
    """Per device: its open and its quarantined letters' counts and the newest one's error."""
    if not external_ids:
        return {}
    rows = conn.execute(
        sa.text(
            "SELECT external_id, status, error_type, error_message, last_failed_at FROM dead_letters "
            "WHERE organization_id = :o AND integration_id = :i AND external_id IN :ids "
            f"AND status <> '{RESOLVED}' ORDER BY last_failed_at"
        ).bindparams(sa.bindparam("ids", expanding=True)),
        {"o": organization_id, "i": integration_id, "ids": external_ids},
    ).all()
    found: dict[str, tuple[int, int, str | None, datetime | None]] = {}
    for r in rows:  # oldest first: the newest letter's error is the one kept
        count, quarantined, _, _ = found.get(r.external_id, (0, 0, None, None))
        if r.status == QUARANTINED:
            quarantined += 1
        else:
            count += 1
        error = f"{r.error_type}: {r.error_message}" if r.error_message else r.error_type
        found[r.external_id] = (count, quarantined, error, parse_timestamp(r.last_failed_at))
    return found


def _status(row: Any) -> str | None:
    if row.updated_at is None:  # no device row: only its letters know it
        return NOT_STORED
    return "deleted" if row.deleted_at is not None else row.status


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
