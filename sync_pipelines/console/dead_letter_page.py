"""The dead letters of one integration in the console: a keyset page of them on the integration's
page (newest first, filtered by status — by default every letter not resolved), one letter whole
on its own page (payload and error redacted, its replay history), and what the write operator's
buttons may do to it. The actions themselves are sync/operator_actions.py's, as the CLI's are."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.console.filters import FilterError
from sync_pipelines.observability.redaction import redact, redact_text
from sync_pipelines.store.activity import dead_letter_rows
from sync_pipelines.store.dead_letters import (
    NOT_RESOLVED,
    STATUSES,
    UNRESOLVED,
    DeadLetter,
    dead_letter_page,
    find_dead_letter,
)
from sync_pipelines.store.integrations import Integration
from sync_pipelines.sync.replay import REPLAYABLE_STREAMS

#: query parameters of the section (the integration page's own `after`/`limit` page its timeline)
STATUS_PARAM = "dl_status"
AFTER_PARAM = "dl_after"
LIMIT_PARAM = "dl_limit"
DEFAULT_PAGE_SIZE = 20
#: how far back a letter's replay history is read
HISTORY_DAYS = 90


class DeadLetterNotFound(LookupError):
    """No dead letter of that id in the integration the operator may see."""


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which letters the section lists: `dl_status` (repeatable or comma-separated; `all`)."""

    statuses: tuple[str, ...] = NOT_RESOLVED

    @classmethod
    def from_params(cls, params: Any) -> DeadLetterFilter:
        asked = [
            s.strip()
            for value in params.getlist(STATUS_PARAM)
            for s in value.split(",")
            if s.strip()
        ]
        if not asked:
            return cls()
        if "all" in asked:
            return cls(STATUSES)
        unknown = sorted(set(asked) - set(STATUSES))
        if unknown:
            raise FilterError(
                f"{STATUS_PARAM} must be some of {', '.join(STATUSES)} or all; got {unknown[0]!r}"
            )
        return cls(tuple(s for s in STATUSES if s in asked))

    @property
    def is_default(self) -> bool:
        return set(self.statuses) == set(NOT_RESOLVED)

    def to_params(self) -> dict[str, str]:
        return {} if self.is_default else {STATUS_PARAM: ",".join(self.statuses)}


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    letters: list[DeadLetter]
    #: the id the next page starts after; None on the last page
    next_cursor: str | None


def letter_cursor(value: str | None) -> str | None:
    """`dl_after`: a letter id this console wrote (a UUID)."""
    if not value:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise FilterError(f"{AFTER_PARAM} is not a dead letter id: {value[:40]!r}") from exc


def page_size(value: str | None, maximum: int) -> int:
    if not value:
        return DEFAULT_PAGE_SIZE
    size = int(value) if value.isdigit() else 0
    if not 1 <= size <= maximum:
        raise FilterError(
            f"{LIMIT_PARAM} must be a whole number from 1 to {maximum}; got {value!r}"
        )
    return size


def integration_dead_letters(
    conn: Connection,
    integration: Integration,
    flt: DeadLetterFilter,
    *,
    after: str | None,
    limit: int,
) -> DeadLetterPage:
    found = dead_letter_page(
        conn,
        integration.organization_id,
        integration.integration_id,
        statuses=flt.statuses,
        before_id=after,
        limit=limit + 1,
    )
    more = len(found) > limit
    found = found[:limit]
    return DeadLetterPage(found, found[-1].id if more and found else None)


def find_visible_letter(
    conn: Connection, integration_id: str, letter_id: str, organization_id: str | None
) -> DeadLetter:
    """The letter of that integration, within `organization_id` when given: another
    organization's letter (or another integration's) is not found, whatever the URL says."""
    try:
        uuid.UUID(letter_id)
    except ValueError:
        raise DeadLetterNotFound(f"no dead letter {letter_id[:80]!r}") from None
    letter = find_dead_letter(conn, integration_id, letter_id, organization_id)
    if letter is None:
        raise DeadLetterNotFound(f"no dead letter {letter_id!r} of integration {integration_id!r}")
    return letter


def letter_json(letter: DeadLetter, *, now: datetime) -> dict[str, Any]:
    """A letter as the section lists it (no payload); redacted."""
    return redact(
        {
            "id": letter.id,
            "organization_id": letter.organization_id,
            "integration_id": letter.integration_id,
            "status": letter.status,
            "stream": letter.stream,
            "external_id": letter.external_id,
            "error_type": letter.error_type,
            "error_message": redact_text(letter.error_message or ""),
            "attempts": letter.attempts,
            "max_attempts": letter.max_attempts,
            "request_id": letter.request_id,
            "run_id": letter.run_id,
            "first_failed_at": _iso(letter.first_failed_at),
            "last_failed_at": _iso(letter.last_failed_at),
            "next_attempt_at": _iso(letter.next_attempt_at),
            "due": letter.status in UNRESOLVED
            and letter.next_attempt_at is not None
            and letter.next_attempt_at <= now,
            "resolved_at": _iso(letter.resolved_at),
            "resolved_by_run_id": letter.resolved_by_run_id,
            "quarantined_at": _iso(letter.quarantined_at),
            "can_replay": letter.status in NOT_RESOLVED and letter.stream in REPLAYABLE_STREAMS,
            "can_quarantine": letter.status in UNRESOLVED,
        }
    )


def letter_detail(conn: Connection, letter: DeadLetter, *, now: datetime) -> dict[str, Any]:
    """One letter whole: the listed fields, its payload (redacted: a secret the provider sent
    back, a token in a URL, a sensitive key is masked), what failed inside the stream, and its
    replay history (replays and operators' actions), newest first."""
    history = dead_letter_rows(
        conn,
        letter.organization_id,
        letter.integration_id,
        letter.id,
        external_id=letter.external_id,
        request_id=letter.request_id,
        since=min(letter.first_failed_at, now - timedelta(days=HISTORY_DAYS)),
    )
    return {
        **letter_json(letter, now=now),
        "provider": letter.provider,
        "dedupe_key": redact_text(letter.dedupe_key),
        "source_id": letter.source_id,
        "updated_at": _iso(letter.updated_at),
        "payload": redact(letter.payload),
        "history": [_history_entry(row) for row in history],
    }


def _history_entry(row: Mapping[str, Any]) -> dict[str, Any]:
    metadata = row["metadata"]
    return redact(
        {
            "at": _iso(row["created_at"]),
            "action": metadata.get("action") or "replay",
            "outcome": metadata.get("outcome"),
            "by": metadata.get("by") or row["step_key"],
            "actor": metadata.get("actor"),
            "reason": metadata.get("reason"),
            "run_id": row["run_id"],
            "error_type": row["error_type"],
            "error_message": redact_text(row["error_message"] or "") or None,
        }
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
