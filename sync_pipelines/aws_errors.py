"""AWS error codes and botocore exceptions → the error taxonomy (errors.py), in one place.

Both the recording boto3 client (activity rows' `error_type`) and the AWS IoT provider (the
exception it raises) classify through here, so a throttle is `rate_limited` in both. AWS
says what went wrong in the error *code* (header `x-amzn-ErrorType` or body `code`/`__type`),
not only the status: the control plane throttles with HTTP **400** + `ThrottlingException`
(PROVIDERS.md §2.4), so the code wins over the status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import (
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.parsers import ResponseParserError

from sync_pipelines.errors import (
    AuthError,
    ConflictError,
    MalformedResponseError,
    PermanentError,
    ProviderError,
    RateLimitedError,
    TransientError,
    error_class_for_status,
)
from sync_pipelines.observability.retrying import parse_retry_after

_CLASS_BY_CODE: dict[str, type[ProviderError]] = {
    **dict.fromkeys(
        (
            "UnauthorizedException",
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "IncompleteSignatureException",
            "SignatureDoesNotMatch",
            "AccessDeniedException",
            "AccessDenied",
            "ForbiddenException",
            "ExpiredTokenException",
            "InvalidClientTokenId",
            "MissingAuthenticationTokenException",
        ),
        AuthError,
    ),
    **dict.fromkeys(
        (
            "ThrottlingException",
            "Throttling",
            "TooManyRequestsException",
            "RequestLimitExceeded",
            "ProvisionedThroughputExceededException",
        ),
        RateLimitedError,
    ),
    **dict.fromkeys(
        (
            "ServiceUnavailableException",
            "ServiceUnavailable",
            "InternalFailureException",
            "InternalFailure",
            "InternalServerException",
            "InternalException",
            "RequestTimeout",
            "RequestTimeoutException",
        ),
        TransientError,
    ),
    **dict.fromkeys(("ConflictException", "VersionConflictException"), ConflictError),
}

#: codes meaning "this pagination token is no good" (tampered, expired, from other filters)
BAD_TOKEN_CODES = frozenset(
    {"InvalidRequestException", "InvalidToken", "InvalidNextTokenException"}
)


def error_class(status_code: int | None, error_code: str | None) -> type[ProviderError]:
    """The taxonomy class of an AWS error response: by code when known, else by status."""
    if error_code and error_code in _CLASS_BY_CODE:
        return _CLASS_BY_CODE[error_code]
    if status_code is None:
        return PermanentError
    return error_class_for_status(status_code)


def exception_class(exc: BaseException) -> type[ProviderError] | None:
    """The taxonomy class of a botocore exception that carries no HTTP response (None: not one
    of ours — a ClientError has a response and goes through `error_class`)."""
    if isinstance(exc, BotoConnectionError | HTTPClientError):  # refused, timed out, cut off
        return TransientError
    if isinstance(exc, ResponseParserError):
        return MalformedResponseError
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return AuthError
    return None


def retry_after_s(headers: Mapping[str, Any]) -> float | None:
    """How long AWS asks us to wait: `x-amz-retry-after` (milliseconds, what botocore's
    standard retry mode reads), else a plain `Retry-After` (seconds or an HTTP-date)."""
    lowered = {str(k).lower(): v for k, v in headers.items()}
    amz = lowered.get("x-amz-retry-after")
    if amz is not None:
        try:
            return max(0.0, float(amz) / 1000.0)
        except (TypeError, ValueError):
            pass
    plain = lowered.get("retry-after")
    return parse_retry_after(str(plain)) if plain is not None else None
