"""The `rate_budgets` table: one row per provider account, read and compare-and-set by every
process pacing calls to that account. Only the SQL lives here; the arithmetic (leases, AIMD,
pauses) is in `providers/pacing.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipelines.clock import utc_now


@dataclass(frozen=True, slots=True)
class BudgetRow:
    """One account's budget as stored (see migration 024 for what each column means)."""

    account: str
    provider: str
    host: str
    credential_ref: str
    limit_rps: float | None
    rate_rps: float | None
    ceiling_rps: float | None
    next_at_s: float
    paused_until_s: float
    decreased_at_s: float
    increased_at_s: float
    throttled_total: int
    version: int


_COLUMNS = ", ".join(f.name for f in fields(BudgetRow))
#: what a compare-and-set writes (the key and the account's identity never change)
_STATE = (
    "limit_rps",
    "rate_rps",
    "ceiling_rps",
    "next_at_s",
    "paused_until_s",
    "decreased_at_s",
    "increased_at_s",
    "throttled_total",
)


def _row(found: Any) -> BudgetRow:
    m = found._mapping
    floats = ("limit_rps", "rate_rps", "ceiling_rps")
    return BudgetRow(
        **{
            k: (None if m[k] is None else float(m[k]))
            if k in floats
            else (int(m[k]) if k in ("throttled_total", "version") else m[k])
            for k in m
        }
    )


def read_budget(conn: Connection, account: str) -> BudgetRow | None:
    found = conn.execute(
        sa.text(f"SELECT {_COLUMNS} FROM rate_budgets WHERE account = :a"), {"a": account}
    ).first()
    return _row(found) if found is not None else None


def create_budget(conn: Connection, row: BudgetRow) -> bool:
    """Insert the account's first row; False when another process inserted it first."""
    values = {f.name: getattr(row, f.name) for f in fields(BudgetRow)}
    inserted = conn.execute(
        sa.text(
            f"INSERT INTO rate_budgets ({_COLUMNS}, updated_at) VALUES "
            f"({', '.join(':' + f.name for f in fields(BudgetRow))}, :updated_at) "
            "ON CONFLICT (account) DO NOTHING"
        ),
        {**values, "updated_at": utc_now()},
    )
    return inserted.rowcount == 1


def swap_budget(conn: Connection, new: BudgetRow, *, seen_version: int) -> bool:
    """Write `new` (version `seen_version` + 1) only if the row is still at `seen_version`: one
    conditional statement, so of two processes changing the same version only one wins and
    the other reads again."""
    updated = conn.execute(
        sa.text(
            f"UPDATE rate_budgets SET {', '.join(f'{c} = :{c}' for c in _STATE)}, "
            "version = :seen + 1, updated_at = :updated_at "
            "WHERE account = :account AND version = :seen"
        ),
        {
            **{c: getattr(new, c) for c in _STATE},
            "account": new.account,
            "seen": seen_version,
            "updated_at": utc_now(),
        },
    )
    return updated.rowcount == 1
