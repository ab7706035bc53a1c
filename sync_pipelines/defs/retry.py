"""Step-level retries: what Dagster does when a sync step fails after the clients' own retries.

Each provider call is already retried by the integration's `RetryPolicy` (seconds, inside the
step). A step that still fails with a *retryable* error (the provider stayed throttled or
down past that budget) is worth running again later: `SYNC_RETRY_POLICY` re-runs it up to 3
times with exponential backoff and jitter, and it resumes from the committed cursor, so
nothing already stored is fetched twice. A step that failed for a reason time does not fix —
auth, permanent, validation, conflict, config — must not burn three more runs against the
provider: `fail_fast_unless_retryable` turns such an error into a `dg.Failure` with
`allow_retries=False`, which Dagster fails at once whatever the policy.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from sync_pipelines.errors import sync_error_of
from sync_pipelines.observability.redaction import redact_text

#: ~10 s, ~30 s, ~70 s (Dagster's EXPONENTIAL is (2^n - 1) * delay), each ± delay
SYNC_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3,
    delay=10,
    backoff=dg.Backoff.EXPONENTIAL,
    jitter=dg.Jitter.PLUS_MINUS,
)


@contextmanager
def fail_fast_unless_retryable() -> Iterator[None]:
    """Wrap a step's body: a non-retryable SyncError becomes `dg.Failure(allow_retries=False)`;
    retryable ones and anything unclassified (a lost database connection) are left to the
    step's retry policy."""
    try:
        yield
    except dg.Failure:
        raise
    except Exception as exc:
        error = sync_error_of(exc)
        if error is None or error.retryable:
            raise
        raise dg.Failure(
            description=redact_text(f"{error.category} error, not retried: {error}"),
            metadata={"error_category": error.category, "error_type": type(error).__name__},
            allow_retries=False,
        ) from exc
