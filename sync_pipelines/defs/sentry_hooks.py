"""Sentry for op failures the integration session does not see: ops that open none (retention,
reports, roll-ups, the organization sync's listing step) and failures before a session opens
(an unknown integration). A failure hook on every job reports the op's exception with the job,
op, step and run id.

It goes through `sentry.capture_failure`, so it is a no-op without `SENTRY_DSN`, the event is
scrubbed and tagged with the error taxonomy like every other, and an exception the integration
session (or any other layer) already reported is not sent a second time.
"""

import dagster as dg

from sync_pipelines.observability import sentry


@dg.failure_hook(name="report_op_failure_to_sentry")
def report_op_failure_to_sentry(context: dg.HookContext) -> None:
    exc = context.op_exception
    if exc is None:  # Dagster captured no exception for the step: nothing to send
        return
    sentry.capture_failure(
        exc,
        job=context.job_name,
        op=context.op.name,
        step=context.step_key,
        run_id=context.run_id,
    )


#: for a job's `hooks=`
SENTRY_HOOKS = {report_op_failure_to_sentry}
