"""The stored state rows of one integration, for tests that compare two ways of reading them."""

from __future__ import annotations

import sqlalchemy as sa


def state_rows(store, integration_id: str) -> dict[str, tuple]:
    """external_id → (reported, desired, version, content_hash)."""
    with store.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT external_id, reported, desired, version, content_hash FROM device_states "
                "WHERE integration_id = :i"
            ),
            {"i": integration_id},
        ).all()
    return {r[0]: tuple(r[1:]) for r in rows}
