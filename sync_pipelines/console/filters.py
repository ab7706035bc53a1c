"""The activity filter as it travels in a URL: parsed and validated from query parameters, and
written back to them, so every view of the console is a link that can be shared."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta

from sync_pipelines.observability.activity import DIRECTIONS, STATUSES

PROVIDERS = ("golioth", "aws_iot", "azure_iot", "mqtt")
#: relative time ranges (`range=24h`): the link stays "the last 24 h" when shared
RANGES = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
}
MAX_TEXT = 200


class FilterError(ValueError):
    """A query parameter the console cannot use; the message names it."""


class ScopeError(PermissionError):
    """An operator scoped to one organization asked for another."""


@dataclass(frozen=True, slots=True)
class ActivityFilter:
    organization: str | None = None
    integration: str | None = None
    provider: str | None = None
    status: str | None = None
    direction: str | None = None
    activity_type: str | None = None
    range: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    #: a request id, run id, device id or webhook event id
    q: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> ActivityFilter:
        def text(name: str) -> str | None:
            value = (params.get(name) or "").strip()
            if len(value) > MAX_TEXT:
                raise FilterError(f"{name} is longer than {MAX_TEXT} characters")
            return value or None

        def choice(name: str, allowed: tuple[str, ...]) -> str | None:
            value = text(name)
            if value is not None and value not in allowed:
                raise FilterError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
            return value

        return cls(
            organization=text("organization"),
            integration=text("integration"),
            provider=choice("provider", PROVIDERS),
            status=choice("status", STATUSES),
            direction=choice("direction", DIRECTIONS),
            activity_type=text("activity_type"),
            range=choice("range", tuple(RANGES)),
            since=_time(text("since"), "since"),
            until=_time(text("until"), "until"),
            q=text("q"),
        )

    def window(self, now: datetime) -> tuple[datetime | None, datetime | None]:
        """[start, end) of the rows wanted: `range` counts back from now; `since` overrides its start."""
        start = self.since or (now - RANGES[self.range] if self.range else None)
        return start, self.until

    def scoped_to(self, organization_id: str | None) -> ActivityFilter:
        """The filter an operator may run: a scoped operator's organization is imposed, and
        asking for another one is refused (editing the URL shows nothing more)."""
        return replace(self, organization=scoped_organization(self.organization, organization_id))

    def to_params(self) -> dict[str, str]:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = value.isoformat() if isinstance(value, datetime) else str(value)
        return out


def scoped_organization(asked: str | None, organization_id: str | None) -> str | None:
    """The organization an operator scoped to `organization_id` (None: every one) reads when it
    asks for `asked`: its own is imposed, and asking for another one is refused."""
    if organization_id is None:
        return asked
    if asked not in (None, organization_id):
        raise ScopeError(
            f"this operator is scoped to organization {organization_id!r} and cannot read "
            f"organization {asked!r}"
        )
    return organization_id


def _time(value: str | None, name: str) -> datetime | None:
    """ISO 8601; without a zone (a datetime-local input) it is UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise FilterError(
            f"{name} must be an ISO 8601 time (2026-11-22T15:00Z); got {value!r}"
        ) from exc
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: after the row (created_at, id), newest first."""

    created_at: datetime
    id: str

    def encode(self) -> str:
        raw = f"{self.created_at.astimezone(UTC).isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str | None) -> Cursor | None:
        if not value:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            at, sep, row_id = raw.partition("|")
            created_at = datetime.fromisoformat(at)
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise FilterError("the page cursor `after` is not one this console wrote") from exc
        if not sep or not row_id or created_at.tzinfo is None:
            raise FilterError("the page cursor `after` is not one this console wrote")
        return cls(created_at, row_id)
