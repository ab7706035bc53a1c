"""The error taxonomy, in one place: what went wrong, and whether trying again can help.

Categories (SPEC §5): auth, rate_limited, transient, permanent, validation, conflict, config.
Retry layers and the activity log branch on `category` / `retryable`, never on messages.
"""

from __future__ import annotations

import httpx

from sync_pipelines.outbound import OutboundRefused

AUTH = "auth"
RATE_LIMITED = "rate_limited"
TRANSIENT = "transient"
PERMANENT = "permanent"
VALIDATION = "validation"
CONFLICT = "conflict"
CONFIG = "config"
#: another sync of the same integration and stream holds its lease (sync/stream_lease.py)
LEASE_HELD = "lease_held"
#: this sync lost its lease to a newer one: a stale writer, stopped before it could commit
FENCED = "fenced"

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


class LeaseHeldError(SyncError):
    """Another sync of this integration and stream is running: only one may write at a time.
    Not retried: the holder is doing the work, and a retry would only queue behind it."""

    category = LEASE_HELD

    def __init__(
        self,
        integration_id: str,
        stream: str,
        *,
        holder_run_id: str | None,
        since: object,
        expires_at: object,
        waited_s: float,
    ) -> None:
        self.integration_id = integration_id
        self.stream = stream
        self.holder_run_id = holder_run_id
        super().__init__(
            f"integration {integration_id!r}, stream {stream!r}: another sync holds the lease "
            f"(run {holder_run_id}, since {since}); waited {waited_s:.0f} s. Let that run "
            f"finish, or, if its process died, run again after its lease expires at {expires_at}"
        )


class FencedError(SyncError):
    """This sync's lease was taken over (it stalled past the lease's expiry and a newer sync
    took the stream): it must not write, and stops at its next commit."""

    category = FENCED

    def __init__(self, integration_id: str, stream: str, *, epoch: int) -> None:
        self.integration_id = integration_id
        self.stream = stream
        self.epoch = epoch
        super().__init__(
            f"integration {integration_id!r}, stream {stream!r}: this sync lost its lease "
            f"(epoch {epoch}) to a newer sync and wrote nothing more; the newer one carries on"
        )


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
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL | OutboundRefused):
        return CONFIG  # the URL we were given is wrong or forbidden: trying again cannot help
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
