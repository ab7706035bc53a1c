"""An alert path whose own check fails (see alert_path_stub.py): the health report must say so
and carry on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection


def alert_path_health(conn: Connection, now: datetime) -> dict[str, Any]:
    raise RuntimeError("alert channel config unreadable")
