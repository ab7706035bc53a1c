"""The error taxonomy, in one place: what went wrong, and whether trying again can help.

Categories (SPEC §5): auth, rate_limited, transient, permanent, validation, conflict, config.
Retry layers and the activity log branch on `category` / `retryable`, never on messages.
"""

from __future__ import annotations

import httpx

AUTH = "auth"
RATE_LIMITED = "rate_limited"
TRANSIENT = "transient"
PERMANENT = "permanent"
VALIDATION = "validation"
CONFLICT = "conflict"
CONFIG = "config"

RETRYABLE_CATEGORIES = frozenset({RATE_LIMITED, TRANSIENT})


class SyncError(Exception):
    """Base of every error this product raises on purpose."""

    category = PERMANENT

    @property
    def retryable(self) -> bool:
        return self.category in RETRYABLE_CATEGORIES


class ConfigError(SyncError):
    """An integration is configured wrongly (unknown provider, missing setting or secret)."""

    category = CONFIG

    def __init__(self, integration_id: str | None, problem: str) -> None:
        self.integration_id = integration_id
        super().__init__(f"integration {integration_id!r}: {problem}")


class ProviderError(SyncError):
    """A provider call failed. Carries what the on-call engineer needs to find the call."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        endpoint: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
        retry_after_s: float | None = None,
        integration_id: str | None = None,
    ) -> None:
        self.provider = provider
        self.integration_id = integration_id
        self.endpoint = endpoint
        self.status_code = status_code
        self.request_id = request_id
        self.retry_after_s = retry_after_s
        where = f" {endpoint}" if endpoint else ""
        status = f" -> HTTP {status_code}" if status_code else ""
        rid = f" (request_id={request_id})" if request_id else ""
        super().__init__(f"{provider}{where}{status}: {message}{rid}")


class AuthError(ProviderError):
    category = AUTH


class RateLimitedError(ProviderError):
    category = RATE_LIMITED


class TransientError(ProviderError):
    category = TRANSIENT


class PermanentError(ProviderError):
    category = PERMANENT


class MalformedResponseError(ProviderError):
    """The provider answered, but not with what its API documents (bad JSON, wrong shape)."""

    category = VALIDATION


class ConflictError(ProviderError):
    category = CONFLICT


def error_class_for_status(status_code: int) -> type[ProviderError]:
    if status_code in (401, 403):
        return AuthError
    if status_code == 429:
        return RateLimitedError
    if status_code in (409, 412):
        return ConflictError
    if status_code >= 500 or status_code in (408,):
        return TransientError
    return PermanentError


def category_of(exc: BaseException) -> str:
    """The taxonomy category of any exception, ours or a library's."""
    if isinstance(exc, SyncError):
        return exc.category
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return CONFIG  # the URL we were given is wrong: trying again cannot help
    if isinstance(exc, httpx.TransportError):  # timeouts, refused or dropped connections
        return TRANSIENT
    if _is_store_connection_loss(exc):  # the database went away: trying again can help
        return TRANSIENT
    if isinstance(exc, ValueError | KeyError | TypeError):
        return VALIDATION
    return PERMANENT


def _is_store_connection_loss(exc: BaseException) -> bool:
    import sqlalchemy.exc  # late: errors.py is imported by code that never touches the store

    return isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError) or (
        isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated
    )


def sync_error_of(exc: BaseException) -> SyncError | None:
    """The taxonomy error behind `exc`: itself, or the nearest one it was raised from."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, SyncError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
