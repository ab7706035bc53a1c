"""Dead-lettering for the sync streams: a record that fails becomes (or updates) its dead letter,
and a record that syncs fine resolves its open one. Streams call these two functions; the rules
(dedupe, attempts, backoff, quarantine) live in store/dead_letters.py."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.clock import utc_now
from sync_pipelines.errors import ConfigError
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.observability.redaction import redact, redact_text
from sync_pipelines.store.dead_letters import (
    DeadLetterPolicy,
    FailedRecord,
    record_dead_letters,
    resolve_dead_letters_for,
)
from sync_pipelines.store.integrations import Integration
from sync_pipelines.sync.integration_config import integration_settings
from sync_pipelines.sync.session import IntegrationSession

_log = get_logger("sync.dead_letters")


def dead_letter_policy(integration: Integration) -> DeadLetterPolicy:
    """The integration's retry policy (settings `dead_letter_max_attempts`, `dead_letter_backoff_s`,
    `dead_letter_backoff_max_s`)."""
    try:  # typed first: an unknown or malformed setting is named before the policy reads it
        return DeadLetterPolicy.from_settings(integration_settings(integration).stored())
    except ValueError as exc:
        raise ConfigError(integration.integration_id, str(exc)) from exc


def dead_letter(
    session: IntegrationSession,
    records: Sequence[FailedRecord],
    conn: Connection | None = None,
) -> None:
    """Store failed records as dead letters, in `conn` (a stream's own fenced transaction) or in a
    transaction of their own; redacted like every other row: a payload's secret-named keys and an
    error's secret-shaped text are masked."""
    if not records:
        return
    integ = session.integration
    safe = [
        replace(r, error_message=redact_text(r.error_message), payload=redact(r.payload))
        for r in records
    ]
    with nullcontext(conn) if conn is not None else session.store.transaction() as tx:
        written = record_dead_letters(
            tx,
            organization_id=integ.organization_id,
            integration_id=integ.integration_id,
            provider=integ.provider,
            records=safe,
            policy=dead_letter_policy(integ),
            run_id=session.run.run_id,
            now=utc_now(),
        )
    _log.warning(
        "records_dead_lettered",
        stream=records[0].stream,
        count=written,
        external_ids=[r.external_id for r in records[:20]],
    )


def resolve_synced(
    session: IntegrationSession, conn: Connection, stream: str, keys: Sequence[str]
) -> int:
    """Inside the transaction that stored records: resolve their open dead letters (`keys`: the
    records' dedupe keys — device ids, desired change ids)."""
    integ = session.integration
    resolved = resolve_dead_letters_for(
        conn,
        integ.organization_id,
        integ.integration_id,
        stream,
        keys,
        run_id=session.run.run_id,
        now=utc_now(),
    )
    if resolved:
        _log.info("dead_letters_resolved_by_sync", stream=stream, count=resolved)
    return resolved


def payload_key(payload: Any) -> str:
    """The dedupe key of a record with no id of its own: a digest of what it was."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
